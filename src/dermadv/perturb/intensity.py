"""Additive intensity shift per RGB channel (the systematic +-5, 10, 50 sweep of the study).

Arithmetic: ``clip(x + s, 0, 255)`` per channel, then round-half-to-even for non-integer offsets
(integer offsets, the usual case, are exact integer arithmetic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb.base import (
    PERTURBATIONS,
    Perturbation,
    apply_tables,
    apply_tables_tensor,
    check_image,
    check_images,
    check_tensor_images,
    per_image_channels,
    rows_for,
)

if TYPE_CHECKING:
    import torch


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
class ChannelShift(Perturbation):
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

    def apply(
        self, image: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        image = check_image(image)
        p = self.check_params(params)
        return apply_tables(image[None], shift_tables(p))

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        batch = check_images(images)
        p = self.check_params(params)
        return apply_tables(batch, shift_tables(np.broadcast_to(p, (len(batch), 3)) if len(p) == 1 else p))

    device_native = True  # the same tables, gathered on the device: identical bytes

    def transform_tensor(self, images: torch.Tensor, params: NDArray[np.float64]) -> torch.Tensor:
        x = check_tensor_images(images, self.name)
        return apply_tables_tensor(x, shift_tables(rows_for(x, self.check_params(params), self.name)))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": list(self.param_names), "max_shift": self.max_shift}
