"""Individual typology angle (ITA) of the skin around a lesion: an *estimate* of constitutive skin colour.

ITA = arctan((L* - 50) / b*) * 180 / pi, from the CIELAB lightness L* and yellow-blue coordinate b* of
skin (Chardon, Cretois & Hourseau 1991, Int J Cosmet Sci 13:191-208). Categories, as extended by Del Bino
et al. 2006 (Pigment Cell Res 19:606-614) with "dark", each interval open below and closed above::

    very light  ITA > 55        tan    10 < ITA <= 28
    light       41 < ITA <= 55  brown -30 < ITA <= 10
    intermediate 28 < ITA <= 41 dark   ITA <= -30

Colour: 8-bit values are decoded as sRGB (IEC 61966-2-1 transfer function), converted to CIE XYZ with the
sRGB primaries and D65 white, then to CIE 1976 L*a*b* relative to D65 (X_n, Y_n, Z_n) = (0.95047, 1,
1.08883). A dermoscope photograph is not a calibrated colorimeter (unknown white balance, LED spectrum,
polarisation, gel), so the angle is an estimate of where the skin falls, for stratifying results, never
a measurement: the result says so (``estimate: True``) and a caller labels the category as estimated.

Which pixels count as skin (``method`` in the result repeats this):

1. a ring around the centre, where dermoscopic images show the skin surrounding a centred lesion: the
   normalised elliptical radius r = sqrt(((y - cy) / (H / 2))^2 + ((x - cx) / (W / 2))^2) within
   [``inner``, ``outer``] (default [0.6, 0.95]). r < 0.6 holds the lesion; r > 0.95 the rim of the
   dermoscope's field of view and the dark vignette corners (r > 1);
2. minus a ``lesion_mask`` where the caller has one (True = lesion);
3. minus pixels that are not skin-coloured in that ring: near-black (L* < 5: vignette), more than 20 L*
   units darker or lighter than the ring's median L* (hair, pigment reaching the ring, ruler marks, glare)
   and clipped highlights (every channel >= 250).

The estimate is the ITA of the median L* and the median b* of the remaining pixels (medians, robust to
what the rules miss). Fewer than ``min_pixels`` skin pixels, or a median b* <= 0 (not skin-coloured),
give ``ita = nan`` and category ``"undetermined"`` with a reason.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: ITA categories, lightest first, with the lower bound of each (exclusive); "dark" has none.
ITA_CATEGORIES: tuple[tuple[str, float], ...] = (
    ("very light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -math.inf),
)
UNDETERMINED = "undetermined"

#: sRGB (linear) -> XYZ, D65 (IEC 61966-2-1; the matrix as tabulated by Lindbloom).
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
#: D65 reference white (2 degree observer).
D65_WHITE = (0.95047, 1.0, 1.08883)
_EPS = (6.0 / 29.0) ** 3  # CIE 1976: below it, the cube root is replaced by a line

_DARK_L = 5.0
_L_BAND = 20.0
_CLIPPED = 250


def srgb_to_lab(rgb: ArrayLike) -> NDArray[np.float64]:
    """CIELAB (D65) of 8-bit sRGB values: ``(..., 3)`` uint8-range numbers -> ``(..., 3)`` L*, a*, b*."""
    c = np.asarray(rgb, dtype=np.float64)
    if c.ndim < 1 or c.shape[-1] != 3:
        raise ValueError(f"srgb_to_lab needs RGB triples in the last axis, got shape {c.shape}")
    if not np.isfinite(c).all() or (c < 0).any() or (c > 255).any():
        raise ValueError("srgb_to_lab needs 8-bit values in [0, 255]")
    c = c / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / np.asarray(D65_WHITE)
    f = np.where(xyz > _EPS, np.cbrt(xyz), xyz / (3.0 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    lab: NDArray[np.float64] = np.empty(f.shape, dtype=np.float64)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def ita_degrees(l_star: float, b_star: float) -> float:
    """ITA = arctan((L* - 50) / b*) in degrees; b* must be > 0 (skin is on the yellow side)."""
    if not (math.isfinite(l_star) and math.isfinite(b_star)) or b_star <= 0:
        raise ValueError(f"ITA needs finite L* and b* > 0, got L*={l_star!r}, b*={b_star!r}")
    return math.degrees(math.atan((l_star - 50.0) / b_star))


def ita_category(ita: float) -> str:
    """The Chardon / Del Bino category of an ITA in degrees (``"undetermined"`` for NaN)."""
    if math.isnan(ita):
        return UNDETERMINED
    for name, lower in ITA_CATEGORIES:
        if ita > lower:
            return name
    return ITA_CATEGORIES[-1][0]  # ITA = -inf


def _ring(h: int, w: int, inner: float, outer: float) -> NDArray[np.bool_]:
    y = (np.arange(h) + 0.5 - h / 2.0) / (h / 2.0)
    x = (np.arange(w) + 0.5 - w / 2.0) / (w / 2.0)
    r = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    return (r >= inner) & (r <= outer)


def _check_image(
    image: ArrayLike, lesion_mask: ArrayLike | None
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(
            f"estimate_ita needs an HxWx3 uint8 RGB image, got shape {img.shape} dtype {img.dtype}"
        )
    if lesion_mask is None:
        return img, np.zeros(img.shape[:2], dtype=bool)
    mask = np.asarray(lesion_mask)
    if mask.shape != img.shape[:2]:
        raise ValueError(f"lesion_mask must be {img.shape[:2]} (the image's HxW), got {mask.shape}")
    return img, mask.astype(bool)


def _undetermined(reason: str, n: int, method: str) -> dict[str, Any]:
    return {
        "ita": math.nan,
        "category": UNDETERMINED,
        "estimate": True,
        "skin_pixels": n,
        "L_star": math.nan,
        "b_star": math.nan,
        "reason": reason,
        "method": method,
    }


def estimate_ita(
    image: ArrayLike,
    lesion_mask: ArrayLike | None = None,
    inner: float = 0.6,
    outer: float = 0.95,
    min_pixels: int = 100,
) -> dict[str, Any]:
    """Estimate the ITA of the skin surrounding the lesion of an HxWx3 uint8 RGB dermoscopic image.

    Returns ``{"ita", "category", "estimate": True, "skin_pixels", "L_star", "b_star", "reason",
    "method"}``; ``reason`` is None unless the category is ``"undetermined"``. See the module docstring
    for the skin mask and the colour conversion.
    """
    if not 0.0 <= inner < outer:
        raise ValueError(f"need 0 <= inner < outer, got inner={inner!r}, outer={outer!r}")
    img, lesion = _check_image(image, lesion_mask)
    method = (
        f"ITA of median L*, median b* (CIELAB D65 from sRGB) over the skin ring {inner:g} <= r <= {outer:g} "
        f"minus lesion mask, L* < {_DARK_L:g}, L* beyond +-{_L_BAND:g} of the ring median, clipped pixels"
    )
    region = _ring(img.shape[0], img.shape[1], inner, outer) & ~lesion
    pixels = img[region]
    lab = srgb_to_lab(pixels)
    lit = lab[:, 0] >= _DARK_L
    if lit.sum() < min_pixels:
        return _undetermined(
            f"only {int(lit.sum())} non-black pixels in the skin ring", int(lit.sum()), method
        )
    median_l = float(np.median(lab[lit, 0]))
    keep = lit & (np.abs(lab[:, 0] - median_l) <= _L_BAND) & ~(pixels.min(axis=1) >= _CLIPPED)
    n = int(keep.sum())
    if n < min_pixels:
        return _undetermined(f"only {n} skin pixels (need {min_pixels})", n, method)
    l_star, b_star = float(np.median(lab[keep, 0])), float(np.median(lab[keep, 2]))
    if b_star <= 0:
        out = _undetermined(f"median b* = {b_star:.2f} <= 0: the ring is not skin-coloured", n, method)
        out.update(L_star=l_star, b_star=b_star)
        return out
    ita = ita_degrees(l_star, b_star)
    return {
        "ita": ita,
        "category": ita_category(ita),
        "estimate": True,
        "skin_pixels": n,
        "L_star": l_star,
        "b_star": b_star,
        "reason": None,
        "method": method,
    }
