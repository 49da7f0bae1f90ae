"""Perturbation ``vignette``: radial darkening towards the corners, as a dermatoscope's optics give it.

Parameters ``(strength, radius)``. For the pixel in row i, column j of an H x W image, its distance
from the image centre as a fraction of the half-diagonal is::

    r = sqrt((i + 0.5 - H/2)**2 + (j + 0.5 - W/2)**2) / sqrt((H/2)**2 + (W/2)**2)

(0 at the centre, just under 1 at the corner pixels), and every channel of that pixel is multiplied by::

    gain = 1 - strength * clip((r - radius) / (1 - radius), 0, 1) ** 2

so the disc of relative radius ``radius`` is untouched and the darkening grows smoothly to
``strength`` at the corners. Arithmetic in float64, then round-half-to-even and clip to 0..255 (the
gain is in [1 - strength, 1], so clipping never changes a value). All P candidates are computed in
one array operation, and the P x H x W x 3 uint8 images returned are what the model is shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dermadv.perturb.base import PERTURBATIONS, Perturbation, check_image

#: The largest radius searched: the darkening must start inside the image.
MAX_RADIUS = 0.95


def vignette_gain(shape: tuple[int, ...], strength: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """P x H x W float64 gains for an image of ``shape`` (H, W, ...) and P (strength, radius) pairs."""
    h, w = int(shape[0]), int(shape[1])
    dy = np.arange(h, dtype=np.float64) + 0.5 - h / 2
    dx = np.arange(w, dtype=np.float64) + 0.5 - w / 2
    r = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2) / np.sqrt((h / 2) ** 2 + (w / 2) ** 2)
    s = np.asarray(strength, np.float64)[:, None, None]
    rho = np.asarray(radius, np.float64)[:, None, None]
    falloff = np.clip((r[None] - rho) / (1.0 - rho), 0.0, 1.0) ** 2
    return 1.0 - s * falloff


@PERTURBATIONS.register("vignette")
class Vignette(Perturbation):
    """Params ``strength`` in [0, max_strength] and ``radius`` in [min_radius, 0.95]."""

    name = "vignette"
    param_names = ("strength", "radius")

    def __init__(self, max_strength: float = 0.5, min_radius: float = 0.3) -> None:
        if not 0.0 < float(max_strength) <= 1.0:
            raise ValueError(f"Vignette: max_strength must be in (0, 1], got {max_strength!r}")
        if not 0.0 <= float(min_radius) < MAX_RADIUS:
            raise ValueError(f"Vignette: min_radius must be in [0, {MAX_RADIUS}), got {min_radius!r}")
        self.max_strength = float(max_strength)
        self.min_radius = float(min_radius)

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        return [(0.0, self.max_strength), (self.min_radius, MAX_RADIUS)]

    def apply(self, image: np.ndarray, params: np.ndarray, device: Any = None) -> np.ndarray:
        image = check_image(image)
        p = self.check_params(params)
        if (p[:, 1] >= 1.0).any():
            raise ValueError(f"Vignette: radius must be < 1, got {p[:, 1].max()!r}")
        gain = vignette_gain(image.shape, p[:, 0], p[:, 1])
        out = np.rint(image[None].astype(np.float64) * gain[..., None])  # rint: round half to even
        return np.clip(out, 0, 255).astype(np.uint8)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": list(self.param_names),
            "max_strength": self.max_strength,
            "min_radius": self.min_radius,
        }
