"""Few-pixel attack (Su et al.'s one-pixel attack with d pixels): positions and colours found by DE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.attacks.registry import ATTACKS
from dermadv.perturb.pixels import FewPixels


@ATTACKS.register("pixel", builtin=True, study=3)
class PixelAttack(EvolutionaryAttack):
    """The study's 3-pixel attack (``d=3``): each pixel (x, y, r, g, b), D = 5 d parameters.

    Search, budget, stopping and criterion options: see :class:`EvolutionaryAttack`.
    ``params`` of a result: ``{"pixels": [{"x", "y", "r", "g", "b"}, ...], ...}`` (integers written).
    """

    name = "pixel"

    def __init__(
        self,
        d: int = 3,
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
            FewPixels(d),
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
