"""Two-stage search: a cheap coarse stage (low-discrepancy draws or a grid), then refinement from its
best points -- differential evolution seeded with the fittest coarse points as its initial population
(no candidate is scored twice), or a local (1+1) evolution strategy from the fittest point with the
1/5th success rule (step multiplied by 1.5 after a success, by 1.5^(-1/4) after a failure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.de import DEOptions, DESearch
from dermadv.attacks.registry import SEARCHES
from dermadv.attacks.searches.base import Search, positive_int
from dermadv.attacks.searches.grid import GridSearch
from dermadv.attacks.searches.random import RandomSearch

COARSE: tuple[str, ...] = ("random", "grid")
REFINE: tuple[str, ...] = ("de", "local")


@SEARCHES.register("two_stage", builtin=True)
class TwoStageSearch(Search):
    """``coarse_k`` coarse candidates (0: twice the DE population), then ``refine``: "de" (``popsize``,
    ``maxiter`` generations, scipy semantics) or "local" (``iterations`` steps of size ``sigma`` in the
    unit cube)."""

    name = "two_stage"

    def __init__(
        self,
        bounds: Sequence[tuple[float, float]],
        *,
        coarse: str = "random",
        coarse_k: int = 0,
        refine: str = "de",
        popsize: int = 4,
        maxiter: int = 20,
        sigma: float = 0.1,
        iterations: int = 200,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(bounds, seed)
        if coarse not in COARSE:
            raise ValueError(f"two_stage: coarse {coarse!r} is not one of {', '.join(COARSE)}")
        if refine not in REFINE:
            raise ValueError(f"two_stage: refine {refine!r} is not one of {', '.join(REFINE)}")
        self.de_options = DEOptions(popsize=popsize, maxiter=maxiter)
        population = self.de_options.population_size(self.dim)
        self.coarse_k = positive_int(coarse_k, "two_stage: coarse_k", minimum=0) or 2 * population
        if refine == "de" and self.coarse_k < population:
            raise ValueError(f"two_stage: coarse_k {coarse_k} < the DE population {population}")
        self.coarse, self.refine = coarse, refine
        self.sigma0 = float(sigma)
        self.iterations = positive_int(iterations, "two_stage: iterations")
        if coarse == "grid":
            per_axis = max(1, round(self.coarse_k ** (1.0 / self.dim)))
            self.stage1: Search = GridSearch(self.bounds.tolist(), points=str(per_axis), seed=self.rng)
        else:
            self.stage1 = RandomSearch(self.bounds.tolist(), k=self.coarse_k, seed=self.rng)
        self._seen: list[tuple[NDArray[np.float64], NDArray[np.float64], Any]] = []
        self._de: DESearch | None = None
        self._local: NDArray[np.float64] | None = None
        self._local_e = float("inf")
        self._sigma = self.sigma0
        self._steps = 0

    @property
    def stage(self) -> int:
        return 1 if not self.stage1.done else 2

    def _ask(self) -> NDArray[np.float64]:
        if not self.stage1.done:
            return self.stage1.unit(self.stage1.ask())
        if self._de is not None:
            return self._de.ask_unit()
        assert self._local is not None
        step = self._local + self._sigma * self.rng.standard_normal(self.dim)
        return np.clip(step, 0.0, 1.0)[None]

    def _told(self, unit: NDArray[np.float64], energies: NDArray[np.float64], extras: Any) -> None:
        if not self.stage1.done:
            self.stage1.tell(energies, extras)
            self._seen.append((unit, energies, extras))
            if self.stage1.done:
                self._start_refinement()
            return
        if self._de is not None:
            self._de.tell(energies, extras)
            if self._de.done:
                self.stop(str(self._de.stop_reason))
            return
        if energies[0] <= self._local_e:
            self._local, self._local_e = unit[0].copy(), float(energies[0])
            self._sigma *= 1.5
        else:
            self._sigma *= 1.5**-0.25
        self._steps += 1
        if self._steps >= self.iterations:
            self.stop("maxiter")

    def _start_refinement(self) -> None:
        u = np.concatenate([s[0] for s in self._seen])
        e = np.concatenate([s[1] for s in self._seen])
        has_extras = all(s[2] is not None for s in self._seen)
        x = np.concatenate([np.asarray(s[2]) for s in self._seen]) if has_extras else None
        order = np.argsort(e, kind="stable")
        if self.refine == "local":
            self._local, self._local_e = u[order[0]].copy(), float(e[order[0]])
            return
        de = DESearch(self.bounds.tolist(), self.de_options, self.rng)
        top = order[: de.size]
        de.seed_population(u[top], e[top], None if x is None else x[top])
        self._de = de
        if de.done:
            self.stop(str(de.stop_reason))

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "coarse": self.coarse,
            "coarse_k": self.coarse_k,
            "refine": self.refine,
        }
        if self.refine == "de":
            d.update(popsize=self.de_options.popsize, maxiter=self.de_options.maxiter)
        else:
            d.update(sigma=self.sigma0, iterations=self.iterations)
        return d
