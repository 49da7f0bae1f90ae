"""An input low-pass (anti-aliasing) filter: a Gaussian blur before the wrapped model.

Each channel is convolved with a Gaussian of standard deviation ``sigma`` pixels (float64,
``scipy.ndimage.gaussian_filter``, mirrored borders), then rounded half-to-even and clipped to 0..255.
It removes the high frequencies a few-pixel attack writes; it leaves colour gains, channel shifts and
rotations untouched (they are low-frequency), which is what an adaptive attacker uses against it.
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


def gaussian_lowpass(images: NDArray[np.uint8], sigma: float) -> NDArray[np.uint8]:
    """uint8 N x H x W x 3 images blurred by a Gaussian of ``sigma`` pixels (0: unchanged)."""
    if sigma == 0:
        return images
    from scipy.ndimage import gaussian_filter

    x = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="mirror")
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


@DEFENCES.register("lowpass", builtin=True)
class LowPass(Defence):
    """Gaussian blur of ``sigma`` pixels (at the model's input size) in front of the model."""

    defence = "lowpass"

    def __init__(self, model: Classifier, *, sigma: float = 1.0) -> None:
        super().__init__(model)
        if not (math.isfinite(float(sigma)) and 0 < float(sigma) <= 20):
            raise ModelError(f"lowpass: sigma must be in (0, 20] pixels, got {sigma!r}")
        self.sigma = float(sigma)

    def settings(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def _defend(self, images: NDArray[np.uint8], metadata: list[Metadata] | None) -> NDArray[np.float64]:
        return self.score(gaussian_lowpass(images, self.sigma), metadata)
