"""Sensor noise (ImageNet-C / SAM-C noise category): Gaussian, shot (Poisson) and impulse (salt and pepper).

Each draw comes from ``numpy.random.default_rng(seed)`` with the integer parameter ``seed``, one
generator per image, so a parameter vector is exactly one image (ImageNet-C draws from numpy's global
state instead; the distributions are the same, the draws are not). Noise is drawn and added on the
CPU in numpy (``device`` is ignored: drawing dominates and must not depend on the device).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb._ops import Transform, batch_and_params, round_clip, seed
from dermadv.perturb.base import PERTURBATIONS, Param, check_severity
from dermadv.perturb.photometric import IMAGENET_C, SAM_C

#: the largest seed a parameter space offers (any non-negative integer works)
MAX_SEED = 2**31 - 1


def seed_param() -> Param:
    return Param("seed", 0.0, float(MAX_SEED), None, integer=True)


class _Noise(Transform):
    """Shared: parameters (magnitude, seed); published severity constants; per-image generators."""

    HIGH: float = 1.0
    SEVERITY: tuple[float, ...] = ()

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param(self.param_names[0], 0.0, self.HIGH, 0.0), seed_param())

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[self.SEVERITY[check_severity(level) - 1], 0.0]])

    def _noisy(
        self, image: NDArray[np.uint8], magnitude: float, rng: np.random.Generator
    ) -> NDArray[np.uint8]:
        raise NotImplementedError

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        batch, p = batch_and_params(self, images, params)
        if (p[:, 0] < 0).any():
            raise ValueError(f"{self.name}: {self.param_names[0]} must be >= 0, got {p[p[:, 0] < 0, 0][0]}")
        out = np.empty(batch.shape, dtype=np.uint8)
        for i in range(len(batch)):
            if p[i, 0] == 0:
                out[i] = batch[i]
            else:
                out[i] = self._noisy(batch[i], float(p[i, 0]), np.random.default_rng(seed(p[i, 1])))
        return out


@PERTURBATIONS.register("gaussian_noise", builtin=True)
class GaussianNoise(_Noise):
    """Additive Gaussian noise: out = clip(rint(v + 255 sigma z), 0, 255), z ~ N(0, 1) per channel value.

    ``z = default_rng(seed).standard_normal((H, W, 3), dtype=float32)``; the sum is float32 with
    ``255 * sigma`` rounded to float32 first; round half to even (ImageNet-C truncates with np.uint8).
    Parameters: ``sigma`` (fraction of the 0..255 range) in [0, 0.38], identity 0; ``seed``.
    Severities: published ImageNet-C constants sigma = 0.08, 0.12, 0.18, 0.26, 0.38 (used by SAM-C);
    ImageNet-P / SAM-P sequence: sigma = 0.03, a new seed per frame.
    """

    name = "gaussian_noise"
    param_names = ("sigma", "seed")
    HIGH = 0.38
    SEVERITY = (0.08, 0.12, 0.18, 0.26, 0.38)
    source = IMAGENET_C + "; " + SAM_C

    def _noisy(
        self, image: NDArray[np.uint8], magnitude: float, rng: np.random.Generator
    ) -> NDArray[np.uint8]:
        z = rng.standard_normal(image.shape, dtype=np.float32)
        return round_clip(image.astype(np.float32) + np.float32(255.0 * magnitude) * z)


@PERTURBATIONS.register("shot_noise", builtin=True)
class ShotNoise(_Noise):
    """Photon (Poisson) noise: out = clip(rint(255 k Poisson(v / (255 k))), 0, 255).

    ``k`` is the inverse photon count per unit intensity (ImageNet-C's c = 1/k: variance of v/255 is
    k v/255); ``Poisson`` = ``default_rng(seed).poisson`` on the float64 rates. Parameters: ``k`` in
    [0, 1/3], identity 0 (no noise); ``seed``. Severities: published ImageNet-C c = 60, 25, 12, 5, 3,
    i.e. k = 1/60 ... 1/3 (used by SAM-C); ImageNet-P / SAM-P sequence: c = 300 (k = 1/300).
    """

    name = "shot_noise"
    param_names = ("k", "seed")
    HIGH = 1.0 / 3.0
    SEVERITY = (1 / 60, 1 / 25, 1 / 12, 1 / 5, 1 / 3)
    source = IMAGENET_C + "; " + SAM_C

    def _noisy(
        self, image: NDArray[np.uint8], magnitude: float, rng: np.random.Generator
    ) -> NDArray[np.uint8]:
        photons = rng.poisson(image.astype(np.float64) / (255.0 * magnitude))
        return round_clip(photons * (255.0 * magnitude))


@PERTURBATIONS.register("impulse_noise", builtin=True)
class ImpulseNoise(_Noise):
    """Salt-and-pepper noise on individual channel values (as skimage ``random_noise(mode='s&p')``,
    which ImageNet-C calls): with u = ``default_rng(seed).random((H, W, 3))`` (float64), a value
    becomes 0 where u < amount / 2, 255 where amount / 2 <= u < amount, else stays.

    Parameters: ``amount`` (fraction of values replaced) in [0, 0.27], identity 0; ``seed``.
    Severities: published ImageNet-C amount = 0.03, 0.06, 0.09, 0.17, 0.27 (used by SAM-C).
    """

    name = "impulse_noise"
    param_names = ("amount", "seed")
    HIGH = 0.27
    SEVERITY = (0.03, 0.06, 0.09, 0.17, 0.27)
    source = IMAGENET_C + "; " + SAM_C

    def _noisy(
        self, image: NDArray[np.uint8], magnitude: float, rng: np.random.Generator
    ) -> NDArray[np.uint8]:
        u = rng.random(image.shape)
        out = image.copy()
        out[u < magnitude] = 255
        out[u < magnitude / 2] = 0
        return out


__all__ = ["GaussianNoise", "ImpulseNoise", "MAX_SEED", "ShotNoise", "seed_param"]
