"""Grid search (Engstrom et al. 2019, "Exploring the landscape of spatial robustness"): every point of
a regular grid over the bounds, e.g. rotation x translation (31 x 5 x 5 in the paper) or colour gains.

Grid values on each axis are ``numpy.linspace(low, high, n)`` as in the paper (both ends included;
for odd n the middle -- no shift, gain 1 -- is a grid point), except on the ``periodic`` axes (e.g.
``periodic="0"`` for the rotation angle in [0, 360]), where the upper end is left out since it equals
the lower one. One point per axis is the middle of its range. ``order`` fixes which points come first:

- ``"lexicographic"``: C order, the first parameter varying slowest;
- ``"coarse"`` (default): coarse to fine -- each axis's values are ranked ends first, then the middle,
  then the middles of the halves and so on (breadth-first bisection); a point's rank is the largest of
  its axes' ranks, and points are sorted by rank, then lexicographically. The first queries span the
  whole range, the extremes first, so an attack that stops at its first success needs few of them;
- ``"shuffled"``: a random permutation (seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.registry import SEARCHES
from dermadv.attacks.searches.base import Search, positive_int

ORDERS: tuple[str, ...] = ("coarse", "lexicographic", "shuffled")


def parse_points(points: Any, dim: int) -> list[int]:
    """``5`` or ``"31,5,5"`` (one count per parameter) -> a list of ``dim`` counts >= 1."""
    items: list[Any]
    if isinstance(points, str):
        items = [p for p in points.replace(" ", "").split(",") if p]
    elif isinstance(points, (int, np.integer)):
        items = [int(points)]
    else:
        items = list(points)
    try:
        counts = [positive_int(float(p), "grid: points") for p in items]
    except (TypeError, ValueError):
        raise ValueError(f"grid: points must be a count or one count per parameter, got {points!r}") from None
    if len(counts) == 1:
        counts *= dim
    if len(counts) != dim:
        raise ValueError(f"grid: points {points!r} gives {len(counts)} counts for {dim} parameters")
    return counts


def bisection_rank(n: int, closed: bool = True) -> NDArray[np.intp]:
    """rank[i] of axis value i of n when visited ends first (only the lower end of a periodic axis,
    ``closed=False``), then by breadth-first bisection: for n = 5, indices 0, 4, 2, 1, 3."""
    if n == 1:
        return np.zeros(1, dtype=np.intp)
    visit = [0, n - 1] if closed else [0]
    spans = [(0, n - 1)] if closed else [(0, n)]
    while spans:
        nxt = []
        for a, b in spans:
            if b - a > 1:
                m = (a + b) // 2
                visit.append(m)
                nxt += [(a, m), (m, b)]
        spans = nxt
    rank = np.empty(n, dtype=np.intp)
    rank[np.asarray(visit)] = np.arange(n)
    return rank


def axis_values(n: int, periodic: bool) -> NDArray[np.float64]:
    """n values in [0, 1]: linspace with both ends, or without the upper end on a periodic axis."""
    if n == 1:
        return np.array([0.5])
    return np.linspace(0.0, 1.0, n, endpoint=not periodic)


def grid_points(
    counts: Sequence[int], order: str, rng: np.random.Generator, periodic: Sequence[int] = ()
) -> NDArray[np.float64]:
    """All grid points in the unit cube (prod(counts) x D), in ``order``."""
    axes = [axis_values(n, d in periodic) for d, n in enumerate(counts)]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in counts], indexing="ij"), -1).reshape(-1, len(counts))
    if order == "coarse":
        ranks = np.stack(
            [bisection_rank(n, d not in periodic)[index[:, d]] for d, n in enumerate(counts)], axis=1
        )
        index = index[np.argsort(ranks.max(axis=1), kind="stable")]
    elif order == "shuffled":
        index = index[rng.permutation(len(index))]
    return np.stack([axes[d][index[:, d]] for d in range(len(counts))], axis=1)


@SEARCHES.register("grid", builtin=True)
class GridSearch(Search):
    """Every grid point once, ``batch`` at a time (0: all at once; the attack scores them in chunks
    and stops at the first that meets its criterion). Stops with ``"exhausted"``."""

    name = "grid"

    def __init__(
        self,
        bounds: Sequence[tuple[float, float]],
        *,
        points: str = "5",
        order: str = "coarse",
        periodic: str = "",
        batch: int = 0,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(bounds, seed)
        if order not in ORDERS:
            raise ValueError(f"grid: order {order!r} is not one of {', '.join(ORDERS)}")
        self.counts = parse_points(points, self.dim)
        self.order = order
        try:
            self.periodic = sorted({int(v) for v in str(periodic).replace(" ", "").split(",") if v})
        except ValueError:
            raise ValueError(
                f"grid: periodic must list parameter indices, e.g. '0', got {periodic!r}"
            ) from None
        if any(not 0 <= d < self.dim for d in self.periodic):
            raise ValueError(f"grid: periodic {periodic!r} names a parameter outside 0..{self.dim - 1}")
        self.batch = positive_int(batch, "grid: batch", minimum=0)
        self.points = grid_points(self.counts, order, self.rng, self.periodic)
        self._next = 0

    @property
    def size(self) -> int | None:
        return len(self.points) if self.batch == 0 else None

    def _ask(self) -> NDArray[np.float64]:
        stop = len(self.points) if self.batch == 0 else min(len(self.points), self._next + self.batch)
        return self.points[self._next : stop]

    def _told(self, unit: NDArray[np.float64], energies: NDArray[np.float64], extras: Any) -> None:
        self._next += len(unit)
        if self._next >= len(self.points):
            self.stop("exhausted")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "points": self.counts,
            "order": self.order,
            "periodic": self.periodic,
            "total": len(self.points),
        }
