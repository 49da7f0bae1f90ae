"""Worst-of-k random search (Engstrom et al. 2019's random baseline): k draws over the bounds, the
fittest kept. Draws are uniform or low-discrepancy (scipy.stats.qmc: scrambled Sobol, Halton, Latin
hypercube), which cover the range more evenly than uniform draws for the same k."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.registry import SEARCHES
from dermadv.attacks.searches.base import Search, positive_int

SAMPLERS: tuple[str, ...] = ("sobol", "halton", "lhs", "uniform")


def unit_samples(sampler: str, n: int, dim: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``n`` points in [0, 1)^dim from ``sampler`` (one of :data:`SAMPLERS`), seeded by ``rng``."""
    if sampler == "uniform":
        return rng.uniform(size=(n, dim))
    from scipy.stats import qmc

    engines = {"sobol": qmc.Sobol, "halton": qmc.Halton, "lhs": qmc.LatinHypercube}
    if sampler not in engines:
        raise ValueError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
    engine = engines[sampler](dim, rng=rng)
    with warnings.catch_warnings():  # Sobol warns when n is not a power of 2: the balance is still good
        warnings.simplefilter("ignore", UserWarning)
        out: NDArray[np.float64] = engine.random(n)
    return out


@SEARCHES.register("random", builtin=True)
class RandomSearch(Search):
    """``k`` draws from ``sampler``, ``batch`` at a time (0: all at once; the attack scores them in
    chunks and stops at the first that meets its criterion). Stops with ``"exhausted"``."""

    name = "random"

    def __init__(
        self,
        bounds: Sequence[tuple[float, float]],
        *,
        k: int = 1000,
        sampler: str = "sobol",
        batch: int = 0,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(bounds, seed)
        self.k = positive_int(k, "random: k")
        self.sampler = sampler
        self.batch = positive_int(batch, "random: batch", minimum=0)
        self.points = unit_samples(sampler, self.k, self.dim, self.rng)
        self._next = 0

    @property
    def size(self) -> int | None:
        return self.k if self.batch == 0 else None

    def _ask(self) -> NDArray[np.float64]:
        stop = self.k if self.batch == 0 else min(self.k, self._next + self.batch)
        return self.points[self._next : stop]

    def _told(self, unit: NDArray[np.float64], energies: NDArray[np.float64], extras: Any) -> None:
        self._next += len(unit)
        if self._next >= self.k:
            self.stop("exhausted")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "sampler": self.sampler}
