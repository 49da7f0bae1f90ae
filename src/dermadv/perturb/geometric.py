"""Geometric transforms: perspective tilt and scale (ImageNet-P / SAM-P), elastic deformation (SAM-C).

Each computes, per output pixel, the source point in float64, then samples the image there by
bilinear ``torch.nn.functional.grid_sample`` (align_corners=False) in float32 on ``device``; rounded
half to even, clipped to 0..255. The centre is the middle of the pixel grid ((W-1)/2, (H-1)/2).
Rotation and translation are the existing ``rotation`` perturbation (:mod:`dermadv.perturb.affine`).

All three are device-native (``transform`` and ``transform_tensor`` run one tensor core, the latter on
the tensor's own device): the CPU's bytes on the CPU; on a GPU float32 ``grid_sample`` may round a
value one grey level differently. ``elastic_transform``'s random fields are drawn and smoothed on the
host (numpy / scipy) and uploaded as the float32 sampling grid; the images stay on the device.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb._ops import (
    TensorTransform,
    gaussian_kernel1d,
    keep_rows,
    param_tensor,
    reflect_filter_matrix,
    scale,
    seed,
    u8_nhwc,
)
from dermadv.perturb.base import PERTURBATIONS, Param, check_severity
from dermadv.perturb.blur import IMAGENET_SIZE
from dermadv.perturb.noise import seed_param
from dermadv.perturb.photometric import IMAGENET_C, SAM_C

if TYPE_CHECKING:
    import torch

IMAGENET_P = "Hendrycks & Dietterich 2019, ImageNet-P (hendrycks/robustness, make_imagenet_p.py)"
SAM_P = "Maron et al. 2021, Eur J Cancer 155:191-199, SAM-P (DBO-DKFZ/SCP-Robustness-Benchmark)"


def sample_tensor(x: torch.Tensor, src_x: torch.Tensor, src_y: torch.Tensor, padding: str) -> torch.Tensor:
    """Bilinear samples of a uint8 N x H x W x 3 tensor (N = 1 shared by every grid, or N = P) at the
    float64 P x H x W pixel coordinates ``src_x``, ``src_y``, outside handled by ``padding``
    (grid_sample's zeros / border / reflection). The float32 grid is computed where the coordinates
    are, then moved to x's device: uint8 P x H x W x 3 there."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[1:3]
    grid = torch.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], dim=-1).float()
    xf = x.permute(0, 3, 1, 2).float()
    if len(xf) == 1 and len(grid) > 1:
        xf = xf.expand(len(grid), -1, -1, -1)
    y = F.grid_sample(xf, grid.to(x.device), mode="bilinear", padding_mode=padding, align_corners=False)
    return u8_nhwc(y)


def tilt_homography(h: int, w: int, tilt_x_deg: float, tilt_y_deg: float) -> NDArray[np.float64]:
    """3 x 3 map from source to output pixels of a plane turned by ``tilt_x_deg`` about the
    horizontal axis and ``tilt_y_deg`` about the vertical axis, seen by a pinhole camera of focal
    length f = sqrt(W^2 + H^2) at distance f (ImageNet-P's ``P2 T RX RY P1``, except that the plane
    is at depth 0, so zero tilt is exactly the identity: ImageNet-P's P1 puts it at depth 1, a 0.2%
    shrink)."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    f = math.hypot(w, h)
    tx, ty = math.radians(tilt_x_deg), math.radians(tilt_y_deg)
    p1 = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 0], [0, 0, 1]], dtype=np.float64)
    rx = np.array(
        [[1, 0, 0, 0], [0, math.cos(tx), -math.sin(tx), 0], [0, math.sin(tx), math.cos(tx), 0], [0, 0, 0, 1]]
    )
    ry = np.array(
        [[math.cos(ty), 0, -math.sin(ty), 0], [0, 1, 0, 0], [math.sin(ty), 0, math.cos(ty), 0], [0, 0, 0, 1]]
    )
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=np.float64)
    p2 = np.array([[f, 0, cx, 0], [0, f, cy, 0], [0, 0, 1, 0]], dtype=np.float64)
    out: NDArray[np.float64] = p2 @ t @ rx @ ry @ p1
    out /= out[2, 2]
    return out


@PERTURBATIONS.register("tilt", builtin=True)
class Tilt(TensorTransform):
    """Perspective (3-D) tilt of the image plane (:func:`tilt_homography`); the exposed border is black
    (as cv2.warpPerspective's default). Output pixel p samples the source at H^-1 p (float64), bilinear.

    Parameters ``tilt_x_deg``, ``tilt_y_deg`` in [-15, 15] degrees (ImageNet-P's range), identity 0
    (returned unchanged). Severity s: both 3 s degrees (chosen). SAM-P / ImageNet-P sequence: both
    i - 15 degrees, i = 0..30.
    Device path native (float32 grid_sample on the tensor's device): the CPU's bytes on the CPU,
    within one grey level on a GPU.
    """

    name = "tilt"
    param_names = ("tilt_x_deg", "tilt_y_deg")
    source = IMAGENET_P + "; " + SAM_P

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (
            Param("tilt_x_deg", -15.0, 15.0, 0.0, unit="deg"),
            Param("tilt_y_deg", -15.0, 15.0, 0.0, unit="deg"),
        )

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        import torch

        h, w = x.shape[1:3]
        inv = np.stack([np.linalg.inv(tilt_homography(h, w, float(a), float(b))) for a, b in p])
        m = param_tensor(inv, x)  # P x 3 x 3, float64
        xs = torch.arange(w, dtype=torch.float64, device=x.device)[None, None, :]
        ys = torch.arange(h, dtype=torch.float64, device=x.device)[None, :, None]

        def row(k: int) -> torch.Tensor:
            return m[:, k, 0, None, None] * xs + m[:, k, 1, None, None] * ys + m[:, k, 2, None, None]

        den = row(2)
        return keep_rows(sample_tensor(x, row(0) / den, row(1) / den, "zeros"), x, (p == 0).all(axis=1))


@PERTURBATIONS.register("scale", builtin=True)
class Scale(TensorTransform):
    """Zoom about the centre by ``factor``: output pixel p samples the source at c + (p - c) / factor,
    bilinear, black outside (factor < 1 shrinks the picture inside a black frame, as torchvision
    affine in ImageNet-P). Parameter ``factor`` in [0.4, 1.6], identity 1 (returned unchanged).
    Severity s: factor = 1 + 0.12 s (chosen; zooming in). SAM-P / ImageNet-P sequence: factor =
    (40 + 2.5 i) / 100, i = 0..30 (0.40 .. 1.15).
    Device path native (float32 grid_sample on the tensor's device): the CPU's bytes on the CPU,
    within one grey level on a GPU.
    """

    name = "scale"
    param_names = ("factor",)
    source = IMAGENET_P + "; " + SAM_P

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("factor", 0.4, 1.6, 1.0),)

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        import torch

        if (p[:, 0] <= 0).any():
            raise ValueError(f"{self.name}: factor must be > 0, got {p[p[:, 0] <= 0, 0][0]}")
        n, (h, w) = len(p), x.shape[1:3]
        f = param_tensor(p[:, 0], x)[:, None, None]
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        xs = torch.arange(w, dtype=torch.float64, device=x.device)[None, None, :]
        ys = torch.arange(h, dtype=torch.float64, device=x.device)[None, :, None]
        src_x = (cx + (xs - cx) / f).expand(n, h, w)
        src_y = (cy + (ys - cy) / f).expand(n, h, w)
        return keep_rows(sample_tensor(x, src_x, src_y, "zeros"), x, p[:, 0] == 1)


@functools.lru_cache(maxsize=32)
def _smoothing_matrix(n: int, sigma: float) -> NDArray[np.float64]:
    return reflect_filter_matrix(n, gaussian_kernel1d(sigma, truncate=3.0))


def smooth(u: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """Gaussian filter of ``sigma`` with reflect boundaries and radius int(3 sigma + 0.5), i.e.
    ``scipy.ndimage.gaussian_filter(u, sigma, mode='reflect', truncate=3)``: scipy itself for short
    kernels, the same operator as two n x n matrix products for long ones (which scipy would apply
    in O(pixels x kernel length))."""
    if 6 * sigma + 1 <= 41:
        from scipy.ndimage import gaussian_filter

        out: NDArray[np.float64] = gaussian_filter(u, sigma, mode="reflect", truncate=3.0)
        return out
    h, w = u.shape
    return _smoothing_matrix(h, float(sigma)) @ u @ _smoothing_matrix(w, float(sigma)).T


def elastic_fields(
    h: int, w: int, alpha: float, sigma: float, affine: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Source pixel coordinates (x, y), each H x W float64, of ImageNet-C's elastic transform.

    Draws, in this order: the 3 x 2 affine jitter ``uniform(-affine, affine)`` of the points
    c + (s, s), c + (s, -s), c - (s, s) (c = (W // 2, H // 2), s = min(H, W) // 3), then the
    displacement noise ``uniform(-1, 1, (H, W))`` for x and for y, each smoothed by a Gaussian of
    ``sigma`` (reflect boundaries, radius int(3 sigma + 0.5), as skimage ``gaussian(..., truncate=3)``)
    and multiplied by ``alpha``. The output pixel q samples the source at A^-1 (q + d(q)), A the affine
    map of the jittered points: ImageNet-C's warpAffine followed by map_coordinates, composed into one
    bilinear resampling (ImageNet-C interpolates twice).
    """
    c = np.array([w // 2, h // 2], dtype=np.float64)
    s = float(min(h, w) // 3)
    pts1 = np.array([c + s, [c[0] + s, c[1] - s], c - s], dtype=np.float64)
    pts2 = pts1 + rng.uniform(-affine, affine, size=(3, 2))
    # A (2 x 3) with A @ [p, 1] = p' for the three point pairs
    a = np.linalg.solve(np.hstack([pts1, np.ones((3, 1))]), pts2).T
    inv = np.linalg.inv(np.vstack([a, [0, 0, 1]]))
    ux, uy = rng.uniform(-1, 1, size=(h, w)), rng.uniform(-1, 1, size=(h, w))
    dx, dy = alpha * smooth(ux, sigma), alpha * smooth(uy, sigma)
    qx = np.arange(w, dtype=np.float64)[None, :] + dx
    qy = np.arange(h, dtype=np.float64)[:, None] + dy
    return inv[0, 0] * qx + inv[0, 1] * qy + inv[0, 2], inv[1, 0] * qx + inv[1, 1] * qy + inv[1, 2]


@PERTURBATIONS.register("elastic_transform", builtin=True)
class ElasticTransform(TensorTransform):
    """Elastic deformation (ImageNet-C, after Simard et al. 2003): a random affine jitter plus a
    smooth random displacement field (:func:`elastic_fields`), bilinear, reflected at the border.

    Parameters (pixels, scaled by min(H, W) / 224): ``alpha`` (displacement gain) in [0, 488 s],
    identity 0; ``sigma`` (field smoothness) in [2.44 s, 170.8 s], not a magnitude; ``affine``
    (corner jitter) in [0, 48.8 s], identity 0; ``seed``. alpha = affine = 0 returns the image.
    Severities: the published ImageNet-C constants (alpha, sigma, affine) = 244 x (2, 0.7, 0.1),
    (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02) at 224 px (ImageNet-C
    writes 244 for 224; kept). They are not monotone in pixel change: severities 1-2 are dominated
    by the affine jitter (24 and 49 px), 3-5 by local warping.
    Device path native: the fields are drawn on the host and only the float32 grid is uploaded;
    the CPU's bytes on the CPU, within one grey level on a GPU (grid_sample).
    """

    name = "elastic_transform"
    param_names = ("alpha", "sigma", "affine", "seed")
    source = IMAGENET_C + "; " + SAM_C
    SEVERITY: tuple[tuple[float, float, float], ...] = tuple(
        (244 * a, 244 * s, 244 * f)
        for a, s, f in (
            (2, 0.7, 0.1),
            (2, 0.08, 0.2),
            (0.05, 0.01, 0.02),
            (0.07, 0.01, 0.02),
            (0.12, 0.01, 0.02),
        )
    )

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        s = scale(image_shape, IMAGENET_SIZE)
        return (
            Param("alpha", 0.0, 488.0 * s, 0.0, unit="px"),
            Param("sigma", 2.44 * s, 170.8 * s, None, unit="px"),
            Param("affine", 0.0, 48.8 * s, 0.0, unit="px"),
            seed_param(),
        )

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        a, sg, f = self.SEVERITY[check_severity(level) - 1]
        s = scale(image_shape, IMAGENET_SIZE)
        return np.array([[a * s, sg * s, f * s, 0.0]])

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        import torch

        h, w = x.shape[1:3]
        out = torch.empty((len(p), *x.shape[1:]), dtype=torch.uint8, device=x.device)
        for i in range(len(p)):
            src = x[:1] if len(x) == 1 else x[i : i + 1]
            alpha, sigma, affine = (float(v) for v in p[i, :3])
            if alpha == 0 and affine == 0:
                out[i] = src[0]
                continue
            if sigma <= 0:
                raise ValueError(f"{self.name}: sigma must be > 0, got {sigma}")
            sx, sy = elastic_fields(h, w, alpha, sigma, abs(affine), np.random.default_rng(seed(p[i, 3])))
            # the fields are host-drawn: the float32 grid is computed here and uploaded, not the image
            out[i] = sample_tensor(src, torch.from_numpy(sx)[None], torch.from_numpy(sy)[None], "reflection")[
                0
            ]
        return out


__all__ = [
    "ElasticTransform",
    "Scale",
    "Tilt",
    "elastic_fields",
    "sample_tensor",
    "tilt_homography",
]
