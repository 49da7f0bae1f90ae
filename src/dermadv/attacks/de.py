"""Batched differential evolution: scipy's ``best1bin`` with ``updating='deferred'``, ask/tell style.

This is a re-implementation of ``scipy.optimize.differential_evolution(strategy='best1bin',
updating='deferred', polish=False)`` in which the search never calls the objective itself: it
*asks* for a whole generation of candidates and is *told* their energies, so an attack can score a
population -- or the populations of several images -- in one forward pass of the model. With
the same ``numpy.random.Generator`` it draws the same random numbers in the same order as scipy
1.17, so populations and results are bit-identical to scipy's (tests/unit/test_attacks.py checks this).

Semantics (all as scipy unless said otherwise):

- Parameters live in the unit cube internally; ``x = mid + (u - 0.5) * width`` maps them to bounds.
- ``popsize`` is scipy's *multiplier*: the population holds ``max(5, popsize * D)`` candidates for D
  parameters. The study's default popsize=20 gives 60 candidates for the 3 colour-balance or the 3
  rotation parameters, and 300 for the 3-pixel attack (D = 15). (The one-pixel-attack code of Su et
  al./Hyperparticle instead passed ``popsize // D`` so its "popsize" was the total; use
  ``popsize=max(1, total // D)`` to reproduce that.)
- ``init``: "latinhypercube" (default, one sample per stratum per parameter) or "random".
- ``mutation=(0.5, 1)``: dithering, a new scale F ~ U[0.5, 1) drawn once per generation; a single
  number gives a constant F. Mutant: ``best + F * (r0 - r1)``, with r0 != r1 distinct from the
  candidate. ``recombination`` (CR, default 1.0): binomial crossover, one parameter always taken
  from the mutant. Components that leave [0, 1] are redrawn uniformly in [0, 1).
- Deferred updating: all trials of a generation are made first, scored together, then each replaces
  its parent if its energy is lower *or equal*; the best member is swapped to index 0.
- Generations: ``maxiter`` counts generations *after* the initial population, as scipy does: at most
  ``(maxiter + 1) * population`` evaluations. ``generation`` is the number of completed generations
  (0 if the search stopped on its initial population). The study's own callback counted one more
  (it allowed 21 generations for maxiter=20); pass ``maxiter=21`` to reproduce that.
- Convergence: scipy stops when ``std(energies) <= atol + tol * |mean(energies)|``. The defaults
  here, tol=0 and atol=-1, switch that test off, as the one-pixel-attack code did (``atol=-1``);
  set tol=0.01, atol=0 for scipy's defaults.
- Early stop: the caller may :meth:`DESearch.stop` a search at any time, e.g. when a criterion is
  met; attacks check after the initial population as well as after each generation (scipy's
  callback is only called after a generation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.registry import SEARCHES

INITS: tuple[str, ...] = ("latinhypercube", "random")


@dataclass(frozen=True)
class DEOptions:
    """Settings of one differential-evolution search (see the module docstring for semantics)."""

    popsize: int = 20
    maxiter: int = 20
    mutation: float | tuple[float, float] = (0.5, 1.0)
    recombination: float = 1.0
    init: str = "latinhypercube"
    tol: float = 0.0
    atol: float = -1.0

    def __post_init__(self) -> None:
        if int(self.popsize) != self.popsize or self.popsize < 1:
            raise ValueError(f"popsize must be a positive integer (a multiplier of D), got {self.popsize!r}")
        if int(self.maxiter) != self.maxiter or self.maxiter < 0:
            raise ValueError(f"maxiter must be an integer >= 0 (generations), got {self.maxiter!r}")
        m = np.atleast_1d(np.asarray(self.mutation, dtype=np.float64))
        # normalise: one number -> constant F, two -> dithering range (min, max)
        object.__setattr__(self, "mutation", float(m[0]) if m.size == 1 else (float(m[0]), float(m[-1])))
        if m.size not in (1, 2) or not np.all((m >= 0) & (m <= 2)):
            raise ValueError(
                f"mutation must be a number or a (min, max) pair within [0, 2], got {self.mutation!r}"
            )
        if not 0.0 <= float(self.recombination) <= 1.0:
            raise ValueError(f"recombination must be in [0, 1], got {self.recombination!r}")
        if self.init not in INITS:
            raise ValueError(f"init {self.init!r} is not one of {', '.join(INITS)}")

    def population_size(self, dim: int) -> int:
        """Candidates per generation for D = ``dim`` parameters: max(5, popsize * D), as scipy."""
        return max(5, int(self.popsize) * max(1, dim))

    def scipy_kwargs(self) -> dict[str, Any]:
        """These options as ``scipy.optimize.differential_evolution`` keyword arguments (best1bin,
        deferred updating, no polishing): the same search run by scipy, as the study ran it."""
        return {
            "popsize": self.popsize,
            "maxiter": self.maxiter,
            "mutation": self.mutation,
            "recombination": self.recombination,
            "init": self.init,
            "tol": self.tol,
            "atol": self.atol,
            "updating": "deferred",
            "polish": False,
        }

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["mutation"] = list(self.mutation) if isinstance(self.mutation, tuple) else self.mutation
        d.update(strategy="best1bin", updating="deferred", polish=False)
        return d


def check_bounds(bounds: Sequence[tuple[float, float]]) -> NDArray[np.float64]:
    """Bounds as a D x 2 float array with low < high, or a ValueError naming the bad one."""
    arr = np.asarray(bounds, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise ValueError(f"bounds must be a non-empty sequence of (low, high) pairs, got shape {arr.shape}")
    for i, (lo, hi) in enumerate(arr):
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds[{i}] = ({lo}, {hi}): need finite low < high")
    return arr


class DESearch:
    """The state of one best1bin/deferred search, driven by :meth:`ask` and :meth:`tell`.

    ``tell`` may carry ``extras`` (one row per candidate, e.g. the model's probabilities), kept in
    step with the population so the caller can read them for the best member without re-scoring.
    """

    def __init__(
        self,
        bounds: Sequence[tuple[float, float]],
        options: DEOptions | None = None,
        rng: np.random.Generator | int | None = 0,
    ) -> None:
        self.bounds = check_bounds(bounds)
        self.options = options or DEOptions()
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.dim = len(self.bounds)
        self.size = self.options.population_size(self.dim)
        self._mid: NDArray[np.float64] = 0.5 * (self.bounds[:, 0] + self.bounds[:, 1])
        self._width: NDArray[np.float64] = np.fabs(self.bounds[:, 0] - self.bounds[:, 1])
        m = self.options.mutation
        self._dither: list[float] | None = sorted(m) if isinstance(m, (tuple, list)) else None
        self._scale = float("nan") if isinstance(m, (tuple, list)) else float(m)
        self._index = np.arange(self.size)  # shuffled in place for sampling, as scipy does
        self.population = self._initial_population()
        self.energies = np.full(self.size, np.inf)
        self.extras: NDArray[Any] | None = None
        self.generation = 0
        self.nfev = 0
        self.stop_reason: str | None = None
        self._trial: NDArray[np.float64] | None = None
        self._initialised = False

    # ----- public state -------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    @property
    def best_x(self) -> NDArray[np.float64]:
        """Best parameter vector found so far (scaled to the bounds)."""
        return self.scale(self.population[0])

    @property
    def best_energy(self) -> float:
        return float(self.energies[0])

    @property
    def best_extra(self) -> Any:
        return None if self.extras is None else self.extras[0]

    def scale(self, unit: NDArray[np.float64]) -> NDArray[np.float64]:
        """Unit-cube coordinates -> parameters (scipy's formula, so values are bit-identical)."""
        return self._mid + (unit - 0.5) * self._width

    def stop(self, reason: str, force: bool = False) -> None:
        """End the search (e.g. the criterion's threshold was reached); ``force`` replaces the reason
        of a search that has just ended for another reason (e.g. threshold reached at maxiter)."""
        if force or not self.done:
            self.stop_reason = reason

    def converged(self) -> bool:
        """scipy's test: std(energies) <= atol + tol * |mean(energies)|."""
        if np.any(np.isinf(self.energies)):
            return False
        e = self.energies
        return bool(np.std(e) <= self.options.atol + self.options.tol * np.abs(np.mean(e)))

    # ----- ask / tell ---------------------------------------------------------------------------
    def ask(self) -> NDArray[np.float64]:
        """Candidates to score next (P x D, in parameter units): the initial population, then trials."""
        if self.done:
            raise RuntimeError(f"the search has stopped ({self.stop_reason}); nothing to ask")
        if not self._initialised:
            return self.scale(self.population)
        if self._trial is None:
            self._trial = self._make_trials()
        return self.scale(self._trial)

    def ask_unit(self) -> NDArray[np.float64]:
        """The candidates of :meth:`ask` in unit-cube coordinates (for searches built on this one)."""
        self.ask()
        return self._trial if self._initialised and self._trial is not None else self.population

    def seed_population(self, unit: Any, energies: Any, extras: Any = None) -> None:
        """Use already-scored candidates (unit cube, ``size`` x D) as the initial population, instead of
        scoring the Latin hypercube one: the next :meth:`ask` makes the first generation's trials."""
        u = np.asarray(unit, dtype=np.float64)
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        if self._initialised:
            raise RuntimeError("seed_population() after the initial population was told")
        if u.shape != (self.size, self.dim) or e.shape != (self.size,):
            raise ValueError(f"seed_population: expected {self.size} x {self.dim} candidates and energies")
        self.population, self.energies, self._initialised = u.copy(), e.copy(), True
        self.extras = None if extras is None else np.asarray(extras).copy()
        self.nfev += self.size
        self._promote_lowest()
        if self.options.maxiter == 0:
            self.stop("maxiter")

    def tell(self, energies: Any, extras: Any = None) -> None:
        """Energies (and optional extras) of the candidates from the last :meth:`ask`."""
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        if e.shape != (self.size,):
            raise ValueError(f"expected {self.size} energies, got {e.shape[0]}")
        if np.isnan(e).any():
            raise ValueError("energies contain NaN")
        x = None if extras is None else np.asarray(extras)
        if x is not None and len(x) != self.size:
            raise ValueError(f"expected {self.size} rows of extras, got {len(x)}")
        self.nfev += self.size
        if not self._initialised:
            self.energies, self.extras, self._initialised = e.copy(), x, True
        else:
            if self._trial is None:
                raise RuntimeError("tell() without a preceding ask()")
            accept = e <= self.energies
            self.population = np.where(accept[:, None], self._trial, self.population)
            self.energies = np.where(accept, e, self.energies)
            if x is not None and self.extras is not None:
                mask = accept.reshape((-1,) + (1,) * (x.ndim - 1))
                self.extras = np.where(mask, x, self.extras)
            self._trial = None
            self.generation += 1
        self._promote_lowest()
        if self.generation >= self.options.maxiter:
            self.stop("maxiter")
        elif self.generation > 0 and self.converged():
            self.stop("converged")

    # ----- internals ----------------------------------------------------------------------------
    def _initial_population(self) -> NDArray[np.float64]:
        shape = (self.size, self.dim)
        if self.options.init == "random":
            return self.rng.uniform(size=shape)
        seg = 1.0 / self.size
        offsets = np.linspace(0.0, 1.0, self.size, endpoint=False)[:, None]
        samples = seg * self.rng.uniform(size=shape) + offsets
        pop = np.zeros_like(samples)
        for j in range(self.dim):
            order = self.rng.permutation(range(self.size))
            pop[:, j] = samples[order, j]
        return pop

    def _promote_lowest(self) -> None:
        best = int(np.argmin(self.energies))
        for arr in (self.population, self.energies, self.extras):
            if arr is not None:
                arr[[0, best]] = arr[[best, 0]]

    def _select_samples(self, candidate: int, count: int) -> NDArray[np.intp]:
        self.rng.shuffle(self._index)
        idxs: NDArray[np.intp] = self._index[: count + 1]
        chosen: NDArray[np.intp] = idxs[idxs != candidate][:count]
        return chosen

    def _make_trials(self) -> NDArray[np.float64]:
        rng, pop = self.rng, self.population
        if self._dither is not None:
            self._scale = rng.uniform(self._dither[0], self._dither[1])
        samples = np.array([self._select_samples(c, 5) for c in range(self.size)])
        r0, r1 = samples[:, 0], samples[:, 1]
        mutant = pop[0] + self._scale * (pop[r0] - pop[r1])
        fill = rng.integers(self.dim, size=self.size)
        cross = rng.uniform(size=(self.size, self.dim)) < self.options.recombination
        cross[np.arange(self.size), fill] = True
        trial = np.where(cross, mutant, pop)
        out = (trial > 1) | (trial < 0)
        if n := int(np.count_nonzero(out)):
            trial[out] = rng.uniform(size=n)
        return trial


@SEARCHES.register("de", builtin=True)
def de_search(
    bounds: Sequence[tuple[float, float]],
    *,
    popsize: int = 20,
    maxiter: int = 20,
    mutation: float | tuple[float, float] = (0.5, 1.0),
    recombination: float = 1.0,
    init: str = "latinhypercube",
    tol: float = 0.0,
    atol: float = -1.0,
    seed: int | np.random.Generator | None = 0,
) -> DESearch:
    """The registered search "de": a :class:`DESearch` over ``bounds`` with :class:`DEOptions`
    (``SEARCHES.create("de", bounds=[(0, 1)] * 3, popsize="5")``)."""
    if isinstance(mutation, list):
        mutation = tuple(mutation)
    return DESearch(bounds, DEOptions(popsize, maxiter, mutation, recombination, init, tol, atol), seed)


@dataclass
class DEResult:
    """Outcome of :func:`differential_evolution`."""

    x: NDArray[np.float64]
    fun: float
    generations: int
    nfev: int
    stop_reason: str
    population: NDArray[np.float64]
    energies: NDArray[np.float64]


def differential_evolution(
    func: Callable[[NDArray[np.float64]], Any],
    bounds: Sequence[tuple[float, float]],
    *,
    seed: int | np.random.Generator | None = 0,
    stop: Callable[[NDArray[np.float64], NDArray[np.float64]], bool] | None = None,
    options: DEOptions | None = None,
    **option_values: Any,
) -> DEResult:
    """Minimise a *vectorised* ``func`` (P x D candidates -> P energies) over ``bounds``.

    ``stop(population, energies)`` may end the search early. Options are :class:`DEOptions` fields.
    """
    opts = options or DEOptions(**option_values)
    search = DESearch(bounds, opts, seed)
    while not search.done:
        cand = search.ask()
        search.tell(np.asarray(func(cand), dtype=np.float64))
        if stop is not None and not search.done and stop(search.scale(search.population), search.energies):
            search.stop("callback")
    return DEResult(
        search.best_x,
        search.best_energy,
        search.generation,
        search.nfev,
        str(search.stop_reason),
        search.scale(search.population),
        search.energies.copy(),
    )
