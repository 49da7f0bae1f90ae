"""Rotation/translation attack: angle in [0, 360) degrees and a shift, found by DE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.attacks.registry import ATTACKS
from dermadv.perturb.affine import RotationTranslation


@ATTACKS.register("rotation", builtin=True, study=5)
class RotationAttack(EvolutionaryAttack):
    """The study's rotation attack: any angle, shift within 50 px of a 299 px image (scaled to the
    model's input size), black border, bilinear.

    Search, budget, stopping and criterion options: see :class:`EvolutionaryAttack`.
    ``params`` of a result: ``{"angle_deg": .., "dx_px": .., "dy_px": .., ...}``.
    """

    name = "rotation"

    def __init__(
        self,
        max_shift: float = 50.0,
        reference_size: float = 299.0,
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
            RotationTranslation(max_shift, reference_size),
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
