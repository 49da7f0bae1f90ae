"""CMA-ES (Hansen's covariance matrix adaptation evolution strategy) through the maintained ``cma``
package (extra ``search``): ask/tell in the unit cube with cma's own bound handling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.registry import SEARCHES
from dermadv.attacks.searches.base import Search, positive_int
from dermadv.errors import require


@SEARCHES.register("cmaes", builtin=True, extra="search")
class CMAESSearch(Search):
    """CMA-ES from the centre of the bounds with step ``sigma`` (unit cube), ``popsize`` candidates
    per generation (0: cma's default 4 + 3 ln D), at most ``maxiter`` generations."""

    name = "cmaes"

    def __init__(
        self,
        bounds: Sequence[tuple[float, float]],
        *,
        sigma: float = 0.3,
        popsize: int = 0,
        maxiter: int = 100,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(bounds, seed)
        cma = require("cma", "search", "The cmaes search")
        if not float(sigma) > 0:
            raise ValueError(f"cmaes: sigma must be > 0, got {sigma!r}")
        self.sigma, self.popsize = float(sigma), positive_int(popsize, "cmaes: popsize", minimum=0)
        self.maxiter = positive_int(maxiter, "cmaes: maxiter")
        opts: dict[str, Any] = {
            "bounds": [0.0, 1.0],
            "seed": int(self.rng.integers(1, 2**31 - 1)),
            "verbose": -9,
            "maxiter": self.maxiter,
        }
        if self.popsize:
            opts["popsize"] = self.popsize
        self.es = cma.CMAEvolutionStrategy(np.full(self.dim, 0.5), self.sigma, opts)
        self._solutions: list[Any] = []

    @property
    def size(self) -> int | None:
        return int(self.es.popsize)

    def _ask(self) -> NDArray[np.float64]:
        self._solutions = self.es.ask()
        return np.asarray(self._solutions, dtype=np.float64)

    def _told(self, unit: NDArray[np.float64], energies: NDArray[np.float64], extras: Any) -> None:
        self.es.tell(self._solutions, [float(v) for v in energies])
        if self.generation >= self.maxiter:
            self.stop("maxiter")
        elif self.es.stop():
            self.stop("converged")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sigma": self.sigma, "popsize": self.size, "maxiter": self.maxiter}
