"""Additive intensity shift per RGB channel (the systematic +-5, 10, 50 sweep of the study).

Arithmetic: ``clip(x + s, 0, 255)`` per channel, then round-half-to-even for non-integer offsets
(integer offsets, the usual case, are exact integer arithmetic).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb.base import (
    PERTURBATIONS,
    TablePerturbation,
    apply_tables,
    check_images,
    per_image_channels,
)


def shift_tables(offsets: NDArray[np.float64]) -> NDArray[np.uint8]:
    """P x 3 x 256 uint8: ``clip(round_half_even(v + s_k), 0, 255)`` for every pixel value v."""
    v = np.arange(256, dtype=np.float64)
    s = np.asarray(offsets, dtype=np.float64)[:, :, None]
    tables: NDArray[np.uint8] = np.clip(np.round(v[None, None, :] + s), 0, 255).astype(np.uint8)
    return tables


def shift_channels(images: NDArray[np.uint8], offsets: Any) -> NDArray[np.uint8]:
    """Add ``offsets`` (3 values, or N x 3) to the RGB channels of uint8 images; clip to 0..255."""
    batch = check_images(images)
    return apply_tables(batch, shift_tables(per_image_channels(offsets, len(batch), "offsets")))


@PERTURBATIONS.register("shift", builtin=True)
class ChannelShift(TablePerturbation):
    """Params (s_r, s_g, s_b) in [-max_shift, max_shift] pixel units, added to each channel."""

    name = "shift"
    param_names = ("s_r", "s_g", "s_b")
    identity = (0.0, 0.0, 0.0)
    source = "Du-Harpur et al. 2021, Supplementary Figure 1 (additive channel shifts)"

    def __init__(self, max_shift: float = 50.0) -> None:
        if not float(max_shift) > 0:
            raise ValueError(f"ChannelShift: max_shift must be > 0, got {max_shift!r}")
        self.max_shift = float(max_shift)

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        return [(-self.max_shift, self.max_shift)] * 3

    def tables(self, params: NDArray[np.float64]) -> NDArray[np.uint8]:
        return shift_tables(params)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": list(self.param_names), "max_shift": self.max_shift}
