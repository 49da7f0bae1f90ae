"""Grid search (Engstrom et al. 2019, "Exploring the landscape of spatial robustness"): every point of
a regular grid over the bounds, e.g. rotation x translation (31 x 5 x 5 in the paper) or colour gains.

Grid values on each axis are the centres of ``n`` equal cells of [low, high]: low + (i + 0.5) (high -
low) / n, i = 0..n-1 (so a periodic angle in [0, 360) has no duplicate 0/360, and for odd n the middle
of the range -- no shift, gain 1 -- is a grid point). ``order`` fixes which points come first:

- ``"lexicographic"``: C order, the first parameter varying slowest;
- ``"coarse"`` (default): coarse to fine -- each axis's values are ranked middle first, then by
  bisection (the van der Corput order), a point's rank is the largest of its axes' ranks, and points
  are sorted by rank, then lexicographically. The first queries span the range, so an attack that
  stops at the first success needs few of them;
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


def bisection_rank(n: int) -> NDArray[np.intp]:
    """rank[i] of axis value i when n values are visited middle first, then by bisection."""
    rank = np.full(n, -1, dtype=np.intp)
    k, r = 0, 0
    while r < n:
        # van der Corput radical inverse of k in base 2, shifted by 1/2 so the middle comes first
        v, f, j = 0.0, 0.5, k
        while j:
            v += f * (j & 1)
            j >>= 1
            f /= 2
        i = int(((v + 0.5) % 1.0) * n)
        if rank[i] < 0:
            rank[i] = r
            r += 1
        k += 1
        if k > 64 * n:  # every index is reached long before; fill any left in order
            for i in np.flatnonzero(rank < 0).tolist():
                rank[i] = r
                r += 1
    return rank


def grid_points(counts: Sequence[int], order: str, rng: np.random.Generator) -> NDArray[np.float64]:
    """All grid points in the unit cube (prod(counts) x D), in ``order``."""
    axes = [(np.arange(n) + 0.5) / n for n in counts]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in counts], indexing="ij"), -1).reshape(-1, len(counts))
    if order == "coarse":
        ranks = np.stack([bisection_rank(n)[index[:, d]] for d, n in enumerate(counts)], axis=1)
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
        batch: int = 0,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(bounds, seed)
        if order not in ORDERS:
            raise ValueError(f"grid: order {order!r} is not one of {', '.join(ORDERS)}")
        self.counts = parse_points(points, self.dim)
        self.order = order
        self.batch = positive_int(batch, "grid: batch", minimum=0)
        self.points = grid_points(self.counts, order, self.rng)
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
        return {"name": self.name, "points": self.counts, "order": self.order, "total": len(self.points)}
