"""Colour constancy in front of a model: Shades of Gray and its special cases.

Illuminant estimate (Finlayson & Trezzi 2004), per image and channel k, from pixel values x in 0..255::

    e_k = ( mean over pixels of x_k ** p ) ** (1 / p)        (p = inf: max over pixels)

p = 1 is Gray World, p = inf max-RGB (white patch), p = 6 the Shades of Gray setting used for
dermoscopy (Barata et al. 2015). With ``sigma > 0`` the channel is first smoothed with a Gaussian of
that many pixels (general Gray World, van de Weijer et al. 2007). The image is then corrected so that
the estimated illuminant becomes the fixed grey ``(target, target, target)``::

    out_k = round_half_even( clip( x_k * target / e_k , 0, 255 ) )

The target is a constant, not a function of the image, on purpose: with any image-dependent
brightness normalisation the output would move under a per-channel gain.

What holds under the study's colour perturbation y_k = trunc(min(c_k x_k, 255)):

- Without clipping (c_k x_k < 256 for every pixel) y_k = c_k x_k - f with 0 <= f < 1, so (Minkowski's
  inequality, p >= 1) c_k e_k - 1 < e_k(y) <= c_k e_k and the corrected value, before rounding, moves by
  less than ``target * max(x_max_k, e_k) / (e_k * (c_k e_k - 1))`` grey levels, plus 1 for rounding
  (:func:`gain_invariance_bound`). Exact invariance holds only for real-valued gains on real-valued
  images; uint8 truncation leaves this small residual, which an attack can still search over.
- Where pixels clip (c_k x_k >= 256) the gain no longer scales the channel, the estimate is not
  c_k e_k, and nothing is cancelled: there is no bound.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import ModelError
from dermadv.models.base import Classifier, Metadata
from dermadv.models.defences import DEFENCES
from dermadv.models.defences.base import Defence
from dermadv.perturb.base import check_images


def _check(p: float, sigma: float, target: float) -> tuple[float, float, float]:
    p, sigma, target = float(p), float(sigma), float(target)
    if not (p >= 1 or math.isinf(p)) or math.isnan(p):
        raise ModelError(
            f"color-constancy: p must be >= 1 (1 Gray World, 6 Shades of Gray, inf max-RGB), got {p}"
        )
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ModelError(f"color-constancy: sigma must be >= 0 pixels, got {sigma}")
    if not (math.isfinite(target) and 0 < target <= 255):
        raise ModelError(f"color-constancy: target must be in (0, 255], got {target}")
    return p, sigma, target


def illuminant(images: NDArray[np.uint8], p: float = 6.0, sigma: float = 0.0) -> NDArray[np.float64]:
    """Illuminant estimates e (N x 3, grey levels) of a uint8 N x H x W x 3 batch (see the module doc)."""
    batch = check_images(images)
    p, sigma, _ = _check(p, sigma, 255.0)
    x = batch.astype(np.float64)
    if sigma > 0:
        from scipy.ndimage import gaussian_filter

        x = gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect")
    flat = x.reshape(len(x), -1, 3)
    if math.isinf(p):
        out: NDArray[np.float64] = flat.max(axis=1)
        return out
    if p == 1:
        return flat.mean(axis=1)
    scale = np.maximum(flat.max(axis=1, keepdims=True), 1e-12)  # avoid overflow of x ** p
    return np.asarray((np.mean((flat / scale) ** p, axis=1)) ** (1 / p) * scale[:, 0, :], dtype=np.float64)


def shades_of_gray(
    images: NDArray[np.uint8], p: float = 6.0, sigma: float = 0.0, target: float = 160.0
) -> NDArray[np.uint8]:
    """Colour-corrected uint8 images: each channel scaled so its illuminant estimate becomes ``target``.

    A channel that is entirely black (e_k = 0) is left unchanged.
    """
    batch = check_images(images)
    p, sigma, target = _check(p, sigma, target)
    e = illuminant(batch, p, sigma)
    gain = np.where(e > 0, target / np.where(e > 0, e, 1.0), 1.0)
    out = np.rint(np.clip(batch.astype(np.float64) * gain[:, None, None, :], 0, 255)).astype(np.uint8)
    return out


def gain_invariance_bound(
    image: NDArray[np.uint8], gains: Any, p: float = 6.0, sigma: float = 0.0, target: float = 160.0
) -> float | None:
    """Largest change (grey levels) of :func:`shades_of_gray` output that the gain ``gains`` applied
    with the study's arithmetic (trunc(min(x c, 255))) can cause, or None where pixels clip (then there
    is no bound: the gain does not scale the channel)."""
    batch = check_images(image)
    c = np.asarray(gains, dtype=np.float64).reshape(3)
    _, _, target = _check(p, sigma, target)
    x_max = batch.reshape(-1, 3).max(axis=0).astype(np.float64)
    if (c * x_max >= 256).any():
        return None
    e = illuminant(batch[:1], p, sigma)[0]
    if (c * e <= 1).any():
        return None
    return float((target * np.maximum(x_max, e) / (e * (c * e - 1))).max() + 1.0)


METHODS = {1.0: "Gray World", math.inf: "max-RGB"}


@DEFENCES.register("color-constancy", builtin=True)
class ColorConstancy(Defence):
    """Shades of Gray colour constancy (Minkowski norm ``p``; 1 Gray World, inf max-RGB; ``sigma`` > 0:
    general Gray World) mapping the illuminant to the grey ``target``, then the wrapped model."""

    defence = "color-constancy"

    def __init__(
        self, model: Classifier, *, p: float = 6.0, sigma: float = 0.0, target: float = 160.0
    ) -> None:
        super().__init__(model)
        self.p, self.sigma, self.target = _check(p, sigma, target)

    @property
    def method(self) -> str:
        base = METHODS.get(self.p, f"Shades of Gray (p={self.p:g})")
        return f"general Gray World ({base}, Gaussian sigma {self.sigma:g} px)" if self.sigma > 0 else base

    def settings(self) -> dict[str, Any]:
        return {"p": "inf" if math.isinf(self.p) else self.p, "sigma": self.sigma, "target": self.target}

    def correct(self, images: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """What the wrapped model is shown."""
        return shades_of_gray(images, self.p, self.sigma, self.target)

    def _defend(self, images: NDArray[np.uint8], metadata: list[Metadata] | None) -> NDArray[np.float64]:
        return self.score(self.correct(images), metadata)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["color_constancy"] = {
            "method": self.method,
            "estimate": "e_k = mean(x_k^p)^(1/p) per channel (max for p = inf)",
            "correction": f"out_k = round(clip(x_k * {self.target:g} / e_k, 0, 255))",
            "invariance": "a per-channel gain cancels up to uint8 truncation (gain_invariance_bound) while "
            "no pixel clips; clipped pixels break it",
        }
        return d
