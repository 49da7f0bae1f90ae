"""Colour-balance attack: each RGB channel scaled by c_k in [1 - delta, 1 + delta], found by DE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.attacks.registry import ATTACKS
from dermadv.perturb.color import ColorBalance


@ATTACKS.register("color", builtin=True, study=4)
class ColorAttack(EvolutionaryAttack):
    """The study's colour attack: c in [0.9, 1.1]^3 (``delta=0.1``), clipped at 255, truncated.

    Search, budget, stopping and criterion options: see :class:`EvolutionaryAttack`.
    ``params`` of a result: ``{"c": [c_r, c_g, c_b], ...}``.
    """

    name = "color"

    def __init__(
        self,
        delta: float = 0.1,
        *,
        popsize: int = 20,
        maxiter: int = 20,
        mutation: float | tuple[float, float] = (0.5, 1.0),
        recombination: float = 1.0,
        init: str = "latinhypercube",
        tol: float = 0.0,
        atol: float = -1.0,
        threshold: float = 0.9,
        fitness: str = "auto",
        batch_score: bool = True,
        batch_size: int | str | None = None,
        search: str = "de",
        search_options: str | Mapping[str, Any] = "",
        chunk: int = 0,
        max_queries: int = 0,
        stop: str = "threshold",
        criterion: str = "group",
        device_path: str = "auto",
    ) -> None:
        super().__init__(
            ColorBalance(delta),
            popsize=popsize,
            maxiter=maxiter,
            mutation=mutation,
            recombination=recombination,
            init=init,
            tol=tol,
            atol=atol,
            threshold=threshold,
            fitness=fitness,
            batch_score=batch_score,
            batch_size=batch_size,
            search=search,
            search_options=search_options,
            chunk=chunk,
            max_queries=max_queries,
            stop=stop,
            criterion=criterion,
            device_path=device_path,
        )
