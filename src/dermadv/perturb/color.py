"""Colour balance: each RGB channel multiplied by its own factor, as a camera white balance would.

Arithmetic (matches the study's numpy code ``np.clip(img * c, 0, 255).astype(np.uint8)``): the
product is computed in float64, clipped to [0, 255] and TRUNCATED to an integer (``astype(uint8)``
floors non-negative values), not rounded. So c = 1.0 is the identity and c < 1 never brightens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dermadv.perturb.base import Perturbation, check_image, check_images


def color_balance(images: np.ndarray, factors: Any) -> np.ndarray:
    """Multiply channel k of every image by ``factors[..., k]``; float64, clip to 255, truncate.

    ``images`` is uint8 N x H x W x 3 (or H x W x 3); ``factors`` is a length-3 vector (same for all
    images) or N x 3 (one per image). Returns uint8 N x H x W x 3.
    """
    import torch

    batch = check_images(images)
    c = np.asarray(factors, dtype=np.float64)
    if c.ndim == 1:
        c = np.broadcast_to(c, (len(batch), 3))
    if c.shape != (len(batch), 3):
        raise ValueError(f"factors: expected 3 or {len(batch)} x 3 values, got shape {np.shape(factors)}")
    x = torch.from_numpy(np.array(batch, dtype=np.uint8)).to(torch.float64)  # copy: may be a read-only view
    return _scale(x, c)


def _scale(x: Any, c: np.ndarray) -> np.ndarray:
    import torch

    ct = torch.from_numpy(np.array(c, dtype=np.float64)).view(-1, 1, 1, 3)
    return (x * ct).clamp_(0, 255).floor_().to(torch.uint8).numpy()


class ColorBalance(Perturbation):
    """Params (c_r, c_g, c_b), each in [1 - delta, 1 + delta]; pixel x -> trunc(min(x * c, 255)).

    The study used delta = 0.1 (each channel scaled by 0.9..1.1).
    """

    name = "color"
    param_names = ("c_r", "c_g", "c_b")

    def __init__(self, delta: float = 0.1, chunk: int = 64) -> None:
        if not (0 < float(delta) < 1):
            raise ValueError(f"ColorBalance: delta must be in (0, 1), got {delta!r}")
        self.delta = float(delta)
        self.chunk = int(chunk)

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        return [(1.0 - self.delta, 1.0 + self.delta)] * 3

    def apply(self, image: np.ndarray, params: np.ndarray) -> np.ndarray:
        import torch

        image = check_image(image)
        p = self.check_params(params)
        x = torch.from_numpy(np.array(image, dtype=np.float64))[None]
        out = np.empty((len(p), *image.shape), dtype=np.uint8)
        for s in range(0, len(p), self.chunk):  # bounded float64 memory for big populations
            part = p[s : s + self.chunk]
            out[s : s + len(part)] = _scale(x, part)
        return out

    def describe_params(
        self, params: np.ndarray, image_shape: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        p = self.check_params(params)[0]
        return {"c": [float(v) for v in p]}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": list(self.param_names), "delta": self.delta,
                "arithmetic": "float64 multiply, clip to [0, 255], truncate (numpy astype(uint8))"}
