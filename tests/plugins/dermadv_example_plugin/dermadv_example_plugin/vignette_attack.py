"""Attack ``vignette``: the :mod:`~dermadv_example_plugin.vignette` perturbation searched by dermadv's
differential evolution (:class:`~dermadv.attacks.evolutionary.EvolutionaryAttack`).

Its options are the perturbation's bounds plus the search options every evolutionary attack takes,
each an explicit keyword argument (the registry lists them; it refuses ``**kwargs``)::

    dermadv attack --model m.pt --data DIR --attacks vignette -a vignette.max_strength=0.3 --out RUN

The same perturbation can also be searched by the built-in ``evolve`` attack
(``-a evolve.perturbation=vignette``); a dedicated attack gives it its own name in results and
its own options on the command line.
"""

from __future__ import annotations

from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.attacks.registry import ATTACKS
from dermadv_example_plugin.vignette import Vignette


@ATTACKS.register("vignette")
class VignetteAttack(EvolutionaryAttack):
    """Darken the corners (``strength`` <= ``max_strength`` from relative radius >= ``min_radius``)
    until the model changes its mind. ``params`` of a result: ``{"strength": ..., "radius": ...}``."""

    name = "vignette"

    def __init__(
        self,
        max_strength: float = 0.5,
        min_radius: float = 0.3,
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
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            Vignette(max_strength, min_radius),
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
        )
