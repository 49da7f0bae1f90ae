"""Colour balance: each RGB channel multiplied by its own factor, as a camera white balance would.

Arithmetic (matches the study's numpy code ``np.clip(img * c, 0, 255).astype(np.uint8)``): the
product is computed in float64, clipped to [0, 255] and TRUNCATED to an integer (``astype(uint8)``
floors non-negative values), not rounded. So c = 1.0 is the identity and c < 1 never brightens.
The map is applied through a 256-entry lookup table per channel computed with exactly that
arithmetic, so a whole population costs one gather per channel.
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


def color_tables(factors: NDArray[np.float64]) -> NDArray[np.uint8]:
    """P x 3 x 256 uint8: ``trunc(clip(v * c_k, 0, 255))`` for every pixel value v, in float64."""
    v = np.arange(256, dtype=np.float64)
    c = np.asarray(factors, dtype=np.float64)[:, :, None]
    tables: NDArray[np.uint8] = np.clip(v[None, None, :] * c, 0, 255).astype(np.uint8)
    return tables


def color_balance(images: NDArray[np.uint8], factors: Any) -> NDArray[np.uint8]:
    """Multiply channel k of every image by ``factors[..., k]``; float64, clip to 255, truncate.

    ``images`` is uint8 N x H x W x 3 (or H x W x 3); ``factors`` is a length-3 vector (same for all
    images) or N x 3 (one per image). Returns uint8 N x H x W x 3.
    """
    batch = check_images(images)
    return apply_tables(batch, color_tables(per_image_channels(factors, len(batch), "factors")))


@PERTURBATIONS.register("color", builtin=True)
class ColorBalance(TablePerturbation):
    """Params (c_r, c_g, c_b), each in [1 - delta, 1 + delta]; pixel x -> trunc(min(x * c, 255)).

    The study used delta = 0.1 (each channel scaled by 0.9..1.1).
    """

    name = "color"
    param_names = ("c_r", "c_g", "c_b")
    identity = (1.0, 1.0, 1.0)
    source = "Du-Harpur et al. 2021 (camera white balance; the study's colour attack)"

    def __init__(self, delta: float = 0.1) -> None:
        if not (0 < float(delta) < 1):
            raise ValueError(f"ColorBalance: delta must be in (0, 1), got {delta!r}")
        self.delta = float(delta)

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        return [(1.0 - self.delta, 1.0 + self.delta)] * 3

    def tables(self, params: NDArray[np.float64]) -> NDArray[np.uint8]:
        return color_tables(params)

    def describe_params(
        self, params: NDArray[np.float64], image_shape: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        p = self.check_params(params)[0]
        return {"c": [float(v) for v in p]}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": list(self.param_names),
            "delta": self.delta,
            "arithmetic": "float64 multiply, clip to [0, 255], truncate (numpy astype(uint8))",
        }
