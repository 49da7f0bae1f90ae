"""Rotation about the image centre plus translation, bilinear, exposed border black.

Convention: a positive angle turns the picture counter-clockwise as displayed (like PIL's
``Image.rotate`` and ``np.rot90``); ``dx`` moves it right and ``dy`` down, in pixels. The centre is
the middle of the pixel grid, ((W - 1) / 2, (H - 1) / 2), so 90/180/270 degree turns of a square
image are exact permutations of pixels (``np.rot90``).

Each output pixel samples the source at the inverse-mapped point by bilinear interpolation
(``torch.nn.functional.grid_sample``, zeros outside the image, so pixels near the exposed border
blend towards black); the result is rounded half-to-even and clipped to 0..255. Sampling
coordinates are computed in float64 per row and column; interpolation runs in float32, batched over
the population.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb.base import (
    PERTURBATIONS,
    Perturbation,
    check_image,
    check_images,
    check_tensor_images,
    rows_for,
)

if TYPE_CHECKING:
    import torch


def _per_image(value: Any, n: int, what: str) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{what}: expected a number or {n} values (one per image), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return arr


def _snap(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Make cos/sin of multiples of 90 degrees exactly 0 or +-1 (cos(pi/2) is 6e-17 in floats)."""
    v = v.copy()
    v[np.abs(v) < 1e-12] = 0.0
    v[np.abs(np.abs(v) - 1) < 1e-12] = np.sign(v[np.abs(np.abs(v) - 1) < 1e-12])
    return v


def _theta(
    h: int, w: int, angle: NDArray[np.float64], dx: NDArray[np.float64], dy: NDArray[np.float64]
) -> NDArray[np.float64]:
    """N x 2 x 3 inverse affine maps in grid_sample's normalised coordinates (align_corners=False).

    With align_corners=False a normalised coordinate g is (g * W / 2) pixels from the centre, so the
    inverse map ``src = R(-angle) (out - centre - shift) + centre`` becomes this matrix.
    """
    theta = np.deg2rad(angle)
    cos, sin = _snap(np.cos(theta)), _snap(np.sin(theta))
    m = np.empty((len(angle), 2, 3), dtype=np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, -sin * h / w, (-dx * cos + dy * sin) * 2 / w
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = sin * w / h, cos, (-dx * sin - dy * cos) * 2 / h
    return m


def _grid(h: int, w: int, m: NDArray[np.float64], device: Any) -> torch.Tensor:
    """grid_sample coordinates N x H x W x 2 of the affine maps ``m`` (N x 2 x 3).

    Separable: row and column terms are computed in float64, only their sum is float32.
    """
    import torch

    gx = (2 * np.arange(w) + 1) / w - 1  # normalised pixel centres, align_corners=False
    gy = (2 * np.arange(h) + 1) / h - 1
    n = len(m)
    # all four separable terms in one float64 -> float32 conversion and one transfer
    terms = np.empty((2, n, h + w), dtype=np.float64)
    for k in (0, 1):
        terms[k, :, :h] = m[:, k, 1, None] * gy  # row term, N x H
        terms[k, :, h:] = m[:, k, 0, None] * gx + m[:, k, 2, None]  # column term, N x W
    t = torch.from_numpy(terms).float().to(device)
    grid = torch.empty((n, h, w, 2), dtype=torch.float32, device=device)
    for k in (0, 1):  # the float32 sum written straight into the grid (no temporaries, no stack)
        torch.add(t[k, :, :h, None], t[k, :, None, h:], out=grid[..., k])
    return grid


def _rotate_tensor(
    x: torch.Tensor,
    angle: NDArray[np.float64],
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    out: NDArray[np.uint8] | None = None,
) -> NDArray[np.uint8]:
    """float32 torch 1-or-N x 3 x H x W (0..255) -> rotated/shifted uint8 numpy N x H x W x 3.

    Rounding (half to even) and clipping run in place on the contiguous N x 3 x H x W result;
    only the uint8 image is transposed to N x H x W x 3, written into ``out`` when given.
    """
    import torch

    n, (h, w) = len(angle), x.shape[2:]
    u8 = _rotate_device(x, angle, dx, dy).cpu()
    if out is None:
        out = np.empty((n, h, w, 3), dtype=np.uint8)
    torch.from_numpy(out).copy_(u8)
    return out


def _rotate_device(
    x: torch.Tensor, angle: NDArray[np.float64], dx: NDArray[np.float64], dy: NDArray[np.float64]
) -> torch.Tensor:
    """float32 1-or-N x 3 x H x W (0..255) -> rotated/shifted uint8 N x H x W x 3 on x's device
    (rounded half to even and clipped in place; the N x H x W x 3 result is a permuted view)."""
    import torch
    import torch.nn.functional as F

    n, (h, w) = len(angle), x.shape[2:]
    grid = _grid(h, w, _theta(h, w, angle, dx, dy), x.device)
    y = F.grid_sample(
        x.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def rotate(
    images: NDArray[np.uint8],
    angle_deg: Any,
    dx: Any = 0.0,
    dy: Any = 0.0,
    *,
    chunk: int = 64,
    device: Any = None,
) -> NDArray[np.uint8]:
    """Rotate uint8 N x H x W x 3 images by ``angle_deg`` (counter-clockwise) about the centre, then
    shift by (dx, dy) pixels; black fill, bilinear. Angles and shifts: one number or one per image.
    ``device``: torch device to compute on (default CPU); the result is uint8 numpy either way.
    """
    import torch

    batch = check_images(images)
    n = len(batch)
    angle = _per_image(angle_deg, n, "angle_deg")
    sx, sy = _per_image(dx, n, "dx"), _per_image(dy, n, "dy")
    out = np.empty(batch.shape, dtype=np.uint8)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = torch.from_numpy(np.array(batch[s:e], dtype=np.uint8)).to(device or "cpu")
        x = x.permute(0, 3, 1, 2).float()
        _rotate_tensor(x, angle[s:e], sx[s:e], sy[s:e], out=out[s:e])
    return out


@PERTURBATIONS.register("rotation", builtin=True)
class RotationTranslation(Perturbation):
    """Params (angle_deg in [0, 360], dx, dy in [-max_shift, max_shift] scaled to the image).

    The study allowed shifts of up to 50 px on a 299 px image; the bound scales with the image:
    ``max_shift * W / reference_size`` horizontally and ``max_shift * H / reference_size`` vertically.
    """

    name = "rotation"
    param_names = ("angle_deg", "dx", "dy")
    identity = (0.0, 0.0, 0.0)
    source = "Du-Harpur et al. 2021 (rotation 0-360 degrees, shift up to 50 px at 299 px)"

    def __init__(self, max_shift: float = 50.0, reference_size: float = 299.0, chunk: int = 64) -> None:
        if not float(max_shift) > 0:  # a zero range would leave the search nothing to vary (empty bounds)
            raise ValueError(f"RotationTranslation: max_shift must be > 0 pixels, got {max_shift!r}")
        if not float(reference_size) > 0:
            raise ValueError(f"RotationTranslation: reference_size must be > 0, got {reference_size!r}")
        self.max_shift = float(max_shift)
        self.reference_size = float(reference_size)
        self.chunk = int(chunk)

    def max_shift_px(self, image_shape: tuple[int, ...]) -> tuple[float, float]:
        """(horizontal, vertical) shift bound in pixels for an image of shape (H, W, ...)."""
        h, w = image_shape[0], image_shape[1]
        return self.max_shift * w / self.reference_size, self.max_shift * h / self.reference_size

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        mx, my = self.max_shift_px(image_shape)
        return [(0.0, 360.0), (-mx, mx), (-my, my)]

    def apply(
        self, image: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        image = check_image(image)
        p = self.check_params(params)
        import torch

        src = torch.from_numpy(np.array(image, dtype=np.float32)).to(device or "cpu").permute(2, 0, 1)[None]
        out = np.empty((len(p), *image.shape), dtype=np.uint8)
        for s in range(0, len(p), self.chunk):
            q = p[s : s + self.chunk]
            _rotate_tensor(src, q[:, 0], q[:, 1], q[:, 2], out=out[s : s + len(q)])
        return out

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        batch = check_images(images)
        p = self.check_params(params)
        if len(p) == 1:
            p = np.broadcast_to(p, (len(batch), 3))
        return rotate(batch, p[:, 0], p[:, 1], p[:, 2], chunk=self.chunk, device=device)

    device_native = True  # grid_sample on the device (a GPU's float32 may differ by one grey level)

    def transform_tensor(self, images: torch.Tensor, params: NDArray[np.float64]) -> torch.Tensor:
        import torch

        x = check_tensor_images(images, self.name)
        p = rows_for(x, self.check_params(params), self.name)
        src = x.permute(0, 3, 1, 2).float()
        parts = []
        for s in range(0, len(p), self.chunk):
            q = p[s : s + self.chunk]
            part = src if len(x) == 1 else src[s : s + len(q)]
            parts.append(_rotate_device(part, q[:, 0], q[:, 1], q[:, 2]).contiguous())
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def describe_params(
        self, params: NDArray[np.float64], image_shape: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        p = self.check_params(params)[0]
        return {"angle_deg": float(p[0]), "dx_px": float(p[1]), "dy_px": float(p[2])}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": list(self.param_names),
            "max_shift": self.max_shift,
            "reference_size": self.reference_size,
            "interpolation": "bilinear, black fill, round half to even",
        }
