"""Blur (ImageNet-C / SAM-C blur category): Gaussian (the sweep's), defocus (disk), motion, zoom.

All but ``gaussian_blur`` compute in float32 torch on ``device`` (default CPU) and round half to even,
clipped to 0..255. Pixel constants of ImageNet-C are given at its 224 px size and scaled by
``min(H, W) / 224`` (``gaussian_blur``'s range is given at 299 px, the study's size).

All four are device-native: ``transform`` and ``transform_tensor`` run one tensor core, the latter on
the tensor's own device. Their float32 kernels (convolution, FFT, grid_sample) give the CPU's bytes on
the CPU and may round a value one grey level differently on a GPU.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb._ops import (
    TensorTransform,
    by_unique_rows,
    pad_edge,
    pad_reflect101,
    pixel_grid_norm,
    scale,
    u8_nhwc,
)
from dermadv.perturb.base import PERTURBATIONS, Param, check_severity
from dermadv.perturb.photometric import IMAGENET_C, SAM_C

if TYPE_CHECKING:
    import torch

#: ImageNet-C's image size: its pixel constants are scaled by min(H, W) / IMAGENET_SIZE
IMAGENET_SIZE = 224.0


@PERTURBATIONS.register("gaussian_blur", builtin=True)
class GaussianBlur(TensorTransform):
    """Gaussian blur, standard deviation ``sigma`` pixels: ``torchvision gaussian_blur`` on the uint8
    tensor with kernel size 2 ceil(3 sigma) + 1 and reflect padding (torchvision rounds its float
    result back to uint8). Bit-identical to the sweep's ``blur:SIGMA`` on the CPU (on another
    ``device`` torchvision's kernels there may round differently); sigma = 0 is the identity
    (returned unchanged). Range: sigma in [0, 6 * min(H, W) / 224]. Severities: ImageNet-C's published
    Gaussian-blur sigmas 1, 2, 3, 4, 6 at 224 px, scaled (ImageNet-C blurs with skimage, whose kernel
    is truncated at 4 sigma; the sweep's torchvision kernel at 3 sigma is kept).
    Device path native (torchvision's float convolution on the tensor's device): the CPU's bytes on
    the CPU, within one grey level on a GPU.
    """

    name = "gaussian_blur"
    param_names = ("sigma",)
    source = "torchvision gaussian_blur; the dermadv sweep's blur:SIGMA; severities " + IMAGENET_C
    SEVERITY: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("sigma", 0.0, 6.0 * scale(image_shape, IMAGENET_SIZE), 0.0, unit="px"),)

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[self.SEVERITY[check_severity(level) - 1] * scale(image_shape, IMAGENET_SIZE)]])

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        from torchvision.transforms import functional as F

        def blur(src: torch.Tensor, row: NDArray[np.float64]) -> torch.Tensor | None:
            sigma = float(row[0])
            if sigma == 0:
                return None
            if sigma < 0:
                raise ValueError(f"{self.name}: sigma must be >= 0, got {sigma}")
            k = 2 * math.ceil(3 * sigma) + 1
            out: torch.Tensor = F.gaussian_blur(src.permute(0, 3, 1, 2), [k, k], [sigma, sigma])
            return out.permute(0, 2, 3, 1)

        return by_unique_rows(x, p, blur)


def disk_kernel(radius: float, alias_sigma: float) -> NDArray[np.float64]:
    """ImageNet-C's anti-aliased disk: the indicator of x^2 + y^2 <= radius^2 on the integer grid
    -L..L (L = max(8, ceil(radius)), as ImageNet-C), normalised to sum 1, then smoothed by a
    normalised Gaussian of ``alias_sigma`` with 3 taps (5 when radius > 8), zero outside (the grid is
    widened so that no weight is lost; ImageNet-C's cv2.GaussianBlur reflects at the grid edge)."""
    half = max(8, math.ceil(radius))
    taps = 3 if radius <= 8 else 5
    t = np.arange(taps, dtype=np.float64) - taps // 2
    g = np.exp(-(t**2) / (2 * alias_sigma**2))
    g /= g.sum()
    lim = half + taps // 2
    ax = np.arange(-lim, lim + 1, dtype=np.float64)
    disk = (ax[:, None] ** 2 + ax[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    k = np.apply_along_axis(lambda r: np.convolve(r, g, mode="same"), 0, disk)
    out: NDArray[np.float64] = np.apply_along_axis(lambda r: np.convolve(r, g, mode="same"), 1, k)
    return out


def fft_filter(x: Any, kernel: NDArray[np.float64]) -> Any:
    """Convolve float32 N x C x H x W with a centred (2R+1)^2 kernel, reflect-101 borders, via FFT.

    The reflect-padded image (H + 2R) is zero-padded further to a fast FFT length; the circular
    wrap-around then only touches the padding, never the H x W result."""
    import torch
    from scipy.fft import next_fast_len

    r = kernel.shape[0] // 2
    xp = pad_reflect101(x, r, r)
    size = (next_fast_len(xp.shape[-2], real=True), next_fast_len(xp.shape[-1], real=True))
    k = np.zeros(size, dtype=np.float64)
    k[: 2 * r + 1, : 2 * r + 1] = kernel
    k = np.roll(k, (-r, -r), axis=(0, 1))  # centre tap at (0, 0)
    kf = torch.fft.rfft2(torch.from_numpy(k).float().to(x.device))
    y = torch.fft.irfft2(torch.fft.rfft2(xp, s=size) * kf, s=size)
    return y[..., r : r + x.shape[-2], r : r + x.shape[-1]]


@PERTURBATIONS.register("defocus_blur", builtin=True)
class DefocusBlur(TensorTransform):
    """Defocus: convolution with an anti-aliased disk (:func:`disk_kernel`), reflect-101 borders (as
    ImageNet-C's cv2.filter2D), computed by FFT in float32, rounded half to even.

    Parameters: ``radius`` px in [0, 10 * min(H, W) / 224], identity 0 (unchanged); ``alias_sigma`` in
    [0.1, 0.5] (the disk's anti-aliasing, not a magnitude). Severities: published ImageNet-C
    (radius, alias) = (3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5) at 224 px, radius scaled.
    Device path native (float32 FFT on the tensor's device): the CPU's bytes on the CPU, within one
    grey level on a GPU.
    """

    name = "defocus_blur"
    param_names = ("radius", "alias_sigma")
    source = IMAGENET_C + "; " + SAM_C
    SEVERITY: tuple[tuple[float, float], ...] = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        s = scale(image_shape, IMAGENET_SIZE)
        return (Param("radius", 0.0, 10.0 * s, 0.0, unit="px"), Param("alias_sigma", 0.1, 0.5))

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        r, a = self.SEVERITY[check_severity(level) - 1]
        return np.array([[r * scale(image_shape, IMAGENET_SIZE), a]])

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        def defocus(src: torch.Tensor, row: NDArray[np.float64]) -> torch.Tensor | None:
            if row[0] <= 0:
                return None
            if row[1] <= 0:
                raise ValueError(f"{self.name}: alias_sigma must be > 0, got {row[1]}")
            y = fft_filter(src.permute(0, 3, 1, 2).float(), disk_kernel(float(row[0]), float(row[1])))
            return u8_nhwc(y)

        return by_unique_rows(x, p, defocus)


def motion_taps(
    radius: float, sigma: float, angle_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """ImageMagick MotionBlurImage's kernel (what ImageNet-C calls through Wand): width =
    2 ceil(radius) + 1 one-sided taps i = 0..width-1 with weights exp(-i^2 / (2 sigma^2)), normalised,
    at offsets (round(i cos a), round(i sin a)) (x right, y down). Returns (weights, offsets width x 2)."""
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width, dtype=np.float64)
    w = np.exp(-(i**2) / (2 * sigma**2))
    a = math.radians(angle_deg)
    # ImageMagick: ceil(v - 0.5), i.e. halves round up
    off = np.stack([np.ceil(i * math.cos(a) - 0.5), np.ceil(i * math.sin(a) - 0.5)], axis=1).astype(np.int64)
    return w / w.sum(), off


@PERTURBATIONS.register("motion_blur", builtin=True)
class MotionBlur(TensorTransform):
    """Motion blur along a direction: out(x, y) = sum_i w_i v(x + dx_i, y + dy_i) with the taps of
    :func:`motion_taps` (ImageMagick's one-sided Gaussian line), edge pixels repeated outside the image
    (ImageMagick's default virtual pixels); float32, rounded half to even.

    Parameters: ``radius`` px in [0, 20 * min(H, W) / 224] (kernel length), ``sigma`` px in
    [0, 15 * min(H, W) / 224] (identity 0 for both: radius or sigma 0 returns the image), ``angle_deg``
    in [-180, 180] (0 = towards +x, 90 = towards +y). Severities: published ImageNet-C (radius, sigma)
    = (10, 3), (15, 5), (15, 8), (15, 12), (20, 15) at 224 px, scaled; ImageNet-C draws the angle
    uniformly in [-45, 45] per image, a severity point here uses angle 0 (chosen). ImageNet-P / SAM-P
    sequence: radius 10, sigma 3 (at 224 px), angle (i - 30) * 4 degrees, i = 0..30.
    Device path native (float32 shifted sums on the tensor's device): the CPU's bytes on the CPU,
    within one grey level on a GPU.
    """

    name = "motion_blur"
    param_names = ("radius", "sigma", "angle_deg")
    source = IMAGENET_C + " (ImageMagick MotionBlurImage); " + SAM_C
    SEVERITY: tuple[tuple[float, float], ...] = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        s = scale(image_shape, IMAGENET_SIZE)
        return (
            Param("radius", 0.0, 20.0 * s, 0.0, unit="px"),
            Param("sigma", 0.0, 15.0 * s, 0.0, unit="px"),
            Param("angle_deg", -180.0, 180.0, None, unit="deg"),
        )

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        r, sg = self.SEVERITY[check_severity(level) - 1]
        s = scale(image_shape, IMAGENET_SIZE)
        return np.array([[r * s, sg * s, 0.0]])

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        import torch

        h, w = x.shape[1:3]

        def motion(src: torch.Tensor, row: NDArray[np.float64]) -> torch.Tensor | None:
            if row[0] <= 0 or row[1] <= 0:
                return None
            weights, off = motion_taps(float(row[0]), float(row[1]), float(row[2]))
            py, px = int(np.abs(off[:, 1]).max()), int(np.abs(off[:, 0]).max())
            xp = pad_edge(src.permute(0, 3, 1, 2).float(), py, px)
            acc = torch.zeros((len(src), 3, h, w), dtype=torch.float32, device=xp.device)
            for wt, (dx, dy) in zip(weights, off, strict=True):  # taps, not pixels: <= 2 ceil(radius) + 1
                acc.add_(xp[..., py + dy : py + dy + h, px + dx : px + dx + w], alpha=float(wt))
            return u8_nhwc(acc)

        return by_unique_rows(x, p, motion)


def zoom_factors(max_zoom: float, step: float) -> NDArray[np.float64]:
    """1, 1 + step, ..., up to max_zoom (inclusive, 1e-9 tolerance): ImageNet-C's np.arange lists."""
    k = int(math.floor((max_zoom - 1.0) / step + 1e-9)) if max_zoom > 1 else 0
    out: NDArray[np.float64] = 1.0 + step * np.arange(k + 1, dtype=np.float64)
    return out


@PERTURBATIONS.register("zoom_blur", builtin=True)
class ZoomBlur(TensorTransform):
    """Zoom blur: the mean of the image and its centre zooms by each factor of :func:`zoom_factors`
    (``(x + sum_z zoom(x, z)) / (len(z) + 1)``, ImageNet-C's weighting; z = 1 is x itself).

    zoom(x, z) samples x at ``c + (p - c) / z`` about the centre c = ((W-1)/2, (H-1)/2) by bilinear
    ``grid_sample`` (border padding), in float32 (ImageNet-C crops and scipy-zooms, so its sub-pixel
    alignment differs slightly). Rounded half to even. Parameters: ``max_zoom`` in [1, 1.3], identity
    1; ``step`` in [0.004, 0.03] (not a magnitude). Severities: the zoom lists ImageNet-C actually
    uses, ``np.arange(1, 1.11, 0.01)`` .. ``np.arange(1, 1.31, 0.03)``, i.e. (max_zoom, step) = (1.11,
    0.01) (float arange includes 1.11: 12 factors), (1.15, 0.01), (1.20, 0.02), (1.24, 0.02), (1.30,
    0.03). The SAM-P / ImageNet-P
    sequence uses max_zoom = 1 + 0.004 i, step 0.004 (ImageNet-P averages the zooms without counting
    the original twice; here the ImageNet-C weighting is kept).
    Device path native (float32 grid_sample, grids computed on the device): the CPU's bytes on the
    CPU, within one grey level on a GPU.
    """

    name = "zoom_blur"
    param_names = ("max_zoom", "step")
    source = IMAGENET_C + "; " + SAM_C
    SEVERITY: tuple[tuple[float, float], ...] = (
        (1.11, 0.01),
        (1.15, 0.01),
        (1.20, 0.02),
        (1.24, 0.02),
        (1.30, 0.03),
    )

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("max_zoom", 1.0, 1.3, 1.0), Param("step", 0.004, 0.03))

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([self.SEVERITY[check_severity(level) - 1]], dtype=np.float64)

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        h, w = x.shape[1:3]
        dev = x.device
        # normalised pixel centres, float64 on the device: grid = float32(g / z), as numpy would round it
        gx = torch.from_numpy(pixel_grid_norm(w)).to(dev)
        gy = torch.from_numpy(pixel_grid_norm(h)).to(dev)
        out = torch.empty((len(p), *x.shape[1:]), dtype=torch.uint8, device=dev)
        shared = x[:1].permute(0, 3, 1, 2).float() if len(x) == 1 else None
        for i in range(len(p)):
            if p[i, 1] <= 0:
                raise ValueError(f"{self.name}: step must be > 0, got {p[i, 1]}")
            z = zoom_factors(float(p[i, 0]), float(p[i, 1]))[1:]  # z = 1 is the image itself
            j = 0 if len(x) == 1 else i
            if len(z) == 0:
                out[i] = x[j]
                continue
            zt = torch.from_numpy(z).to(dev)[:, None, None]
            grid = torch.empty((len(z), h, w, 2), dtype=torch.float32, device=dev)
            grid[..., 0] = (gx[None, None, :] / zt).float()
            grid[..., 1] = (gy[None, :, None] / zt).float()
            xi = shared if shared is not None else x[i : i + 1].permute(0, 3, 1, 2).float()
            zoomed = F.grid_sample(
                xi.expand(len(z), -1, -1, -1),
                grid,
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )
            mean = (2 * xi[0] + zoomed.sum(dim=0)) / (len(z) + 2)
            out[i] = u8_nhwc(mean[None])[0]
        return out


__all__ = [
    "DefocusBlur",
    "GaussianBlur",
    "IMAGENET_SIZE",
    "MotionBlur",
    "ZoomBlur",
    "disk_kernel",
    "fft_filter",
    "motion_taps",
    "zoom_factors",
]
