"""Sparse-RS (Croce et al. 2022, "Sparse-RS: a versatile framework for query-efficient sparse black-box
adversarial attacks", AAAI), the L0 / few-pixel variant, over any perturbation whose parameters come in
blocks (a pixel of :class:`~dermadv.perturb.pixels.FewPixels` is the block (x, y, r, g, b)).

A block is ``positional`` coordinates (drawn uniformly within the bounds: where the pixel goes) then
value coordinates (drawn from the two ends of their range, the vertices of the colour cube, as
Sparse-RS does). The search starts from one random point; each step proposes to redraw a fraction
alpha(t) of the blocks (at least one) and accepts the proposal when its energy is lower or equal.
alpha follows Sparse-RS's schedule: ``p_init`` halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and
8000 of every 10000 iterations (scaled to ``iterations``). One candidate per ask: images are batched
across, not within, searches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.registry import SEARCHES
from dermadv.attacks.searches.base import Search, positive_int

#: iterations (per 10000) at which Sparse-RS halves the fraction of blocks redrawn
HALVINGS: tuple[int, ...] = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@SEARCHES.register("sparse_rs", builtin=True)
class SparseRSSearch(Search):
    """Random search over blocks of ``block`` parameters (the first ``positional`` of each uniform,
    the rest at an end of their range); ``iterations`` proposals after the start."""

    name = "sparse_rs"

    def __init__(
        self,
        bounds: Sequence[tuple[float, float]],
        *,
        iterations: int = 10000,
        p_init: float = 0.8,
        block: int = 5,
        positional: int = 2,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(bounds, seed)
        self.iterations = positive_int(iterations, "sparse_rs: iterations")
        self.block = positive_int(block, "sparse_rs: block")
        self.positional = positive_int(positional, "sparse_rs: positional", minimum=0)
        if self.dim % self.block or self.positional > self.block:
            raise ValueError(
                f"sparse_rs: {self.dim} parameters do not split into blocks of {self.block} with "
                f"{self.positional} positional coordinates (pixels: block=5, positional=2)"
            )
        if not 0.0 < float(p_init) <= 1.0:
            raise ValueError(f"sparse_rs: p_init must be in (0, 1], got {p_init!r}")
        self.p_init = float(p_init)
        self.blocks = self.dim // self.block
        self._current: NDArray[np.float64] | None = None
        self._current_e = float("inf")

    @property
    def size(self) -> int | None:
        return 1

    def fraction(self, it: int) -> float:
        """alpha(t): the fraction of blocks redrawn at iteration ``it`` (Sparse-RS's schedule)."""
        t = 10000 * it / self.iterations
        return float(self.p_init / 2 ** sum(t > h for h in HALVINGS))

    def _draw_blocks(self, n: int) -> NDArray[np.float64]:
        """``n`` fresh blocks (n x block) in the unit cube."""
        out = np.empty((n, self.block))
        out[:, : self.positional] = self.rng.uniform(size=(n, self.positional))
        out[:, self.positional :] = self.rng.integers(0, 2, size=(n, self.block - self.positional))
        return out

    def _ask(self) -> NDArray[np.float64]:
        if self._current is None:
            return self._draw_blocks(self.blocks).reshape(1, -1)
        k = max(1, round(self.fraction(self.generation - 1) * self.blocks))
        which = self.rng.choice(self.blocks, size=min(k, self.blocks), replace=False)
        cand = self._current.reshape(self.blocks, self.block).copy()
        cand[which] = self._draw_blocks(len(which))
        return cand.reshape(1, -1)

    def _told(self, unit: NDArray[np.float64], energies: NDArray[np.float64], extras: Any) -> None:
        if self._current is None or energies[0] <= self._current_e:
            self._current, self._current_e = unit[0].copy(), float(energies[0])
        if self.generation > self.iterations:
            self.stop("maxiter")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "iterations": self.iterations,
            "p_init": self.p_init,
            "block": self.block,
            "positional": self.positional,
        }
