"""Few-pixel perturbation: set d pixels to arbitrary colours (the one-pixel attack of Su et al.).

Each pixel is (x, y, r, g, b) with x the column and y the row. Real-valued parameters from the
search are FLOORED: x in [0, W) -> 0..W-1, y in [0, H) -> 0..H-1, colours in [0, 256) -> 0..255
(values at the upper bound are clipped to the last valid integer). Pixels are written in order,
so if two land on the same position the later one wins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb.base import PERTURBATIONS, Perturbation, check_image, check_tensor_images, rows_for


@PERTURBATIONS.register("pixel", builtin=True)
class FewPixels(Perturbation):
    """Params (x1, y1, r1, g1, b1, ..., xd, yd, rd, gd, bd): d pixels replaced by colours."""

    name = "pixel"
    clinical = False  # a search space for the attack, not a variation a dermatoscope produces

    def __init__(self, d: int = 3) -> None:
        if int(d) != d or d < 1:
            raise ValueError(f"FewPixels: d (number of pixels) must be a positive integer, got {d!r}")
        self.d = int(d)
        self.param_names = tuple(f"{k}{i}" for i in range(1, self.d + 1) for k in ("x", "y", "r", "g", "b"))

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        h, w = image_shape[0], image_shape[1]
        return [(0.0, float(w)), (0.0, float(h)), (0.0, 256.0), (0.0, 256.0), (0.0, 256.0)] * self.d

    def integer_params(self, params: NDArray[np.float64], image_shape: tuple[int, ...]) -> NDArray[np.int64]:
        """P x d x 5 int64 (x, y, r, g, b) actually written, after flooring and clipping."""
        h, w = image_shape[0], image_shape[1]
        p = np.floor(self.check_params(params)).astype(np.int64).reshape(-1, self.d, 5)
        hi = np.array([w - 1, h - 1, 255, 255, 255])
        return np.clip(p, 0, hi)

    def apply(
        self, image: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        import torch

        image = check_image(image)
        q = torch.from_numpy(self.integer_params(params, image.shape))
        n = q.shape[0]
        out = torch.from_numpy(np.array(image, dtype=np.uint8)).unsqueeze(0).repeat(n, 1, 1, 1)
        rows = torch.arange(n)
        for k in range(self.d):  # in order: a later pixel overwrites an earlier one at the same spot
            out[rows, q[:, k, 1], q[:, k, 0]] = q[:, k, 2:].to(torch.uint8)
        return out.numpy()

    device_native = True  # the same integer writes on the device: identical bytes

    def transform_tensor(self, images: Any, params: NDArray[np.float64]) -> Any:
        import torch

        x = check_tensor_images(images, self.name)
        p = rows_for(x, self.check_params(params), self.name)
        q = torch.from_numpy(self.integer_params(p, tuple(x.shape[1:]))).to(x.device)
        n = q.shape[0]
        out = x.expand(n, -1, -1, -1).clone() if len(x) == 1 else x.clone()
        rows = torch.arange(n, device=x.device)
        for k in range(self.d):  # in order: a later pixel overwrites an earlier one at the same spot
            out[rows, q[:, k, 1], q[:, k, 0]] = q[:, k, 2:].to(torch.uint8)
        return out

    def describe_params(
        self, params: NDArray[np.float64], image_shape: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        """The pixels actually written (integers); pass ``image_shape`` to clip positions to it."""
        q = self.integer_params(params, image_shape or (1 << 30, 1 << 30))[0]
        return {"pixels": [dict(zip(("x", "y", "r", "g", "b"), map(int, row), strict=True)) for row in q]}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": list(self.param_names),
            "d": self.d,
            "rounding": "floor, clipped to the image and 0..255",
        }
