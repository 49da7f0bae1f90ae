"""Point-wise photometric transforms: hue, brightness (multiplicative and HSV value shift), contrast
(torchvision's and ImageNet-C's), and a linear illumination ramp.

``hue``, ``brightness`` and ``contrast`` are the sweep corruptions of ``dermadv perturb`` (``hue:F``,
``brightness:F``, ``contrast:F``) as Perturbations, computed with exactly the same library calls so
their bytes are unchanged. ``brightness_up``/``brightness_down`` (SAM-C) and ``hsv_brightness``
(SAM-P's brightness sequence) are ImageNet-C's brightness: a shift of the HSV value channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb._ops import (
    TensorTransform,
    by_unique_rows,
    param_tensor,
    round_clip_tensor,
)
from dermadv.perturb.base import (
    PERTURBATIONS,
    Param,
    TablePerturbation,
    check_severity,
)

if TYPE_CHECKING:
    import torch

IMAGENET_C = "Hendrycks & Dietterich 2019, ImageNet-C (hendrycks/robustness, make_imagenet_c.py)"
SAM_C = "Maron et al. 2021, Eur J Cancer 155:191-199, SAM-C (DBO-DKFZ/SCP-Robustness-Benchmark)"


class _TorchvisionScalar(TensorTransform):
    """A torchvision uint8 function with one scalar argument, run once per distinct value on every
    image having it (the function is per-pixel or per-image, so batching does not change a byte).

    On the CPU (``device`` None or "cpu") the bytes are the sweep's; on another device the same
    torchvision call runs there (the device path; its float kernels may round a value one grey level
    differently)."""

    def _call(self, t: Any, value: float) -> Any:
        raise NotImplementedError

    def _identity_value(self) -> float | None:
        return None

    def _tensor(self, x: Any, p: NDArray[np.float64]) -> Any:
        def call(src: Any, row: NDArray[np.float64]) -> Any:
            value = float(row[0])
            if value == self._identity_value():
                return None  # returned unchanged, without calling torchvision
            return self._call(src.permute(0, 3, 1, 2), value).permute(0, 2, 3, 1)

        return by_unique_rows(x, p, call)


@PERTURBATIONS.register("hue", builtin=True)
class Hue(_TorchvisionScalar):
    """Hue rotation by ``factor`` of the colour circle: ``torchvision.transforms.functional.adjust_hue``
    on the uint8 tensor (RGB -> HSV in float, h = (h + factor) mod 1, back, truncated to uint8).

    Parameter ``factor`` in [-0.5, 0.5], identity 0 (returned unchanged without calling torchvision).
    Severity s: ``factor = 0.1 s`` (default: the upper edge of the severity range). Bit-identical to
    the sweep's ``hue:F`` on the CPU (torchvision returns factor 0 unchanged too).
    """

    name = "hue"
    param_names = ("factor",)
    source = "torchvision adjust_hue; the dermadv sweep's hue:F"

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("factor", -0.5, 0.5, 0.0, unit="turn"),)

    def _identity_value(self) -> float | None:
        return 0.0

    def _call(self, t: Any, value: float) -> Any:
        from torchvision.transforms import functional as F

        return F.adjust_hue(t, value)


@PERTURBATIONS.register("contrast", builtin=True)
class Contrast(_TorchvisionScalar):
    """Contrast blend with the image's mean grey: ``torchvision adjust_contrast`` on the uint8 tensor.

    torchvision's arithmetic: grey = uint8(0.2989 R + 0.587 G + 0.114 B) (truncated), m = mean(grey)
    over the image, out = uint8(clamp(factor * x + (1 - factor) * m, 0, 255)) (truncated). Parameter
    ``factor`` in [0.5, 1.5], identity 1 (unchanged, torchvision not called). Severity s: factor =
    1 + 0.1 s. Bit-identical to the sweep's ``contrast:F``. For ImageNet-C's contrast (per-channel
    means, rounded) see ``contrast_c``.
    """

    name = "contrast"
    param_names = ("factor",)
    source = "torchvision adjust_contrast; the dermadv sweep's contrast:F"

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("factor", 0.5, 1.5, 1.0),)

    def _identity_value(self) -> float | None:
        return 1.0

    def _call(self, t: Any, value: float) -> Any:
        from torchvision.transforms import functional as F

        return F.adjust_contrast(t, value)


def brightness_tables(factors: NDArray[np.float64]) -> NDArray[np.uint8]:
    """P x 3 x 256: ``clip(rint(float32(v) * float32(f)), 0, 255)``, the sweep's float32 arithmetic."""
    v = np.arange(256, dtype=np.float32)
    f = np.asarray(factors, dtype=np.float64).reshape(-1).astype(np.float32)
    t = np.clip(np.rint(v[None, :] * f[:, None]), 0, 255).astype(np.uint8)
    return np.repeat(t[:, None, :], 3, axis=1)


@PERTURBATIONS.register("brightness", builtin=True)
class Brightness(TablePerturbation):
    """Multiplicative brightness: every channel value v -> clip(rint(v * factor), 0, 255).

    Arithmetic (the sweep's ``brightness:F``): float32 product, round half to even (``np.rint``), clip.
    E.g. 101 * 0.9 = 90.9 -> 91; 200 * 1.5 = 300 -> 255. Applied through a 256-entry table per image.
    Parameter ``factor`` in [0.5, 1.5], identity 1. Severity s: factor = 1 + 0.1 s.
    """

    name = "brightness"
    param_names = ("factor",)
    source = "ImageNet-C / MedMNIST-C style intensity scaling; the dermadv sweep's brightness:F"

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("factor", 0.5, 1.5, 1.0),)

    def tables(self, params: NDArray[np.float64]) -> NDArray[np.uint8]:
        return brightness_tables(params[:, 0])


@PERTURBATIONS.register("contrast_c", builtin=True)
class ContrastC(TensorTransform):
    """ImageNet-C contrast: each channel pulled towards its own image mean, ``(x - m_k) c + m_k``.

    Arithmetic in float64 pixel units (ImageNet-C works in [0, 1]; the same up to float rounding):
    m_k = mean of channel k over the image (an exact integer sum / count), result rounded half to even
    and clipped to 0..255 (ImageNet-C truncates with ``np.uint8``; we round). Parameter ``c`` in
    [0.05, 1], identity 1. Severities (published ImageNet-C constants): c = 0.4, 0.3, 0.2, 0.1, 0.05.
    SAM-C's ``contrast`` column. Device path native: float64 arithmetic whose channel sums are exact
    integers in any summation order, so its bytes equal the CPU's on any device.
    """

    name = "contrast_c"
    param_names = ("c",)
    source = IMAGENET_C + "; used by " + SAM_C
    SEVERITY_C: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1, 0.05)

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("c", 0.05, 1.0, 1.0),)

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[self.SEVERITY_C[check_severity(level) - 1]]])

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        xd = x.double()
        m = xd.sum(dim=(1, 2), keepdim=True) / (x.shape[1] * x.shape[2])  # N x 1 x 1 x 3
        c = param_tensor(p[:, 0], x)[:, None, None, None]
        return round_clip_tensor((xd - m) * c + m)


def hsv_value_shift_tensor(x: torch.Tensor, delta: NDArray[np.float64]) -> torch.Tensor:
    """HSV value shift (ImageNet-C brightness), closed form: with V = max(R, G, B) and
    V' = clip(V + 255 delta, 0, 255), hue and saturation kept means every channel is scaled by V' / V
    (a black pixel, V = 0, becomes the grey V'). Of a uint8 N x H x W x 3 tensor (N = 1 or len(delta))
    on its device: uint8 P x H x W x 3, P = len(delta); float64, rounded half to even, clipped, so the
    same bytes on every device."""
    import torch

    xd = x.double()
    d = param_tensor(delta, x)[:, None, None, None] * 255.0
    v = xd.amax(dim=3, keepdim=True)
    v_new = (v + d).clamp(0, 255)
    return round_clip_tensor(torch.where(v > 0, xd * (v_new / v.clamp(min=1)), v_new))


@PERTURBATIONS.register("hsv_brightness", builtin=True)
class HSVBrightness(TensorTransform):
    """ImageNet-C / ImageNet-P brightness: add ``delta`` to the HSV value channel (V in [0, 1]).

    Closed form of skimage's rgb2hsv -> V + delta clipped to [0, 1] -> hsv2rgb (hue and saturation
    are unchanged, so RGB scales by V'/V): see :func:`hsv_value_shift_tensor`; float64, rounded half to even
    (ImageNet-C truncates with ``np.uint8``). Parameter ``delta`` in [-0.5, 0.5], identity 0.
    Severities: the published ImageNet-C brightness constants delta = 0.1, 0.2, 0.3, 0.4, 0.5; the
    SAM-P / ImageNet-P ``brightness`` sequence is delta = (i - 15) * 0.02, i = 0..30. Device path
    native (also ``brightness_up``/``brightness_down``): float64 point-wise arithmetic, the same bytes
    as the CPU's on any device.
    """

    name = "hsv_brightness"
    param_names = ("delta",)
    source = IMAGENET_C + "; ImageNet-P brightness sequence (make_imagenet_p.py)"
    LOW, HIGH = -0.5, 0.5
    SEVERITY_DELTA: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    SIGN = 1.0

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("delta", self.LOW, self.HIGH, 0.0),)

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[self.SIGN * self.SEVERITY_DELTA[check_severity(level) - 1]]])

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        return hsv_value_shift_tensor(x, p[:, 0])


@PERTURBATIONS.register("brightness_up", builtin=True)
class BrightnessUp(HSVBrightness):
    """SAM-C ``brightness_up``: HSV value + delta, delta in [0, 0.5], identity 0. Severities: the
    published ImageNet-C brightness constants delta = 0.1, 0.2, 0.3, 0.4, 0.5 (SAM-C's own constants
    are not published; we assume ImageNet-C's)."""

    name = "brightness_up"
    source = IMAGENET_C + " (constants); " + SAM_C + " (name)"
    LOW, HIGH = 0.0, 0.5


@PERTURBATIONS.register("brightness_down", builtin=True)
class BrightnessDown(HSVBrightness):
    """SAM-C ``brightness_down``: HSV value - |delta|, delta in [-0.5, 0], identity 0. Severities
    CHOSEN as the mirror of ImageNet-C's brightness: delta = -0.1, -0.2, -0.3, -0.4, -0.5 (SAM-C's
    constants are not published)."""

    name = "brightness_down"
    source = SAM_C + " (name); constants chosen: mirror of ImageNet-C brightness"
    LOW, HIGH = -0.5, 0.0
    SIGN = -1.0


@PERTURBATIONS.register("illumination_gradient", builtin=True)
class IlluminationGradient(TensorTransform):
    """A linear illumination ramp (uneven dermoscope / flash lighting), multiplicative.

    gain(x, y) = 1 + strength * t, t = ((y - cy) sin a + (x - cx) cos a) / t_max in [-1, 1], where
    (cx, cy) = ((W - 1) / 2, (H - 1) / 2), x = column, y = row (downwards), a = ``angle_deg`` (0: the
    right side brightest, 90: the bottom), t_max = |cos a| (W-1)/2 + |sin a| (H-1)/2 the largest
    |projection| over the pixel grid, so the brightest corner gains ``strength``.
    out = clip(rint(v * gain), 0, 255) per channel, float64. Parameters: ``angle_deg`` in [0, 360]
    (not a magnitude), ``strength`` in [0, 0.5], identity 0. Severity s: strength = 0.1 s at angle 0
    (chosen constants). Device path native: float64 point-wise arithmetic (the ramp's terms computed
    on the host), the same bytes as the CPU's on any device.
    """

    name = "illumination_gradient"
    param_names = ("angle_deg", "strength")
    source = "dermadv (chosen): linear multiplicative illumination ramp"

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("angle_deg", 0.0, 360.0, None, unit="deg"), Param("strength", 0.0, 0.5, 0.0))

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        h, w = x.shape[1:3]
        a = np.deg2rad(p[:, 0])
        cos, sin = np.cos(a), np.sin(a)
        xs = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
        ys = np.arange(h, dtype=np.float64) - (h - 1) / 2.0
        t_max = np.abs(cos) * xs[-1] + np.abs(sin) * ys[-1]
        t_max = np.where(t_max > 0, t_max, 1.0)
        gx = param_tensor(cos[:, None] * xs[None, :], x)  # P x W
        gy = param_tensor(sin[:, None] * ys[None, :], x)  # P x H
        s = param_tensor(p[:, 1], x)
        t = (gy[:, :, None] + gx[:, None, :]) / param_tensor(t_max, x)[:, None, None]
        gain = 1.0 + s[:, None, None] * t  # P x H x W
        return round_clip_tensor(x.double() * gain[..., None])


__all__ = [
    "Brightness",
    "BrightnessDown",
    "BrightnessUp",
    "Contrast",
    "ContrastC",
    "HSVBrightness",
    "Hue",
    "IlluminationGradient",
    "brightness_tables",
    "hsv_value_shift_tensor",
]
