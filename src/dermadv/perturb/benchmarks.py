"""The SAM-C and SAM-P benchmarks (Maron et al. 2021) as points and sequences of registered transforms.

SAM-C: 14 corruptions x 5 severities, :func:`sam_c_point` gives the transform and its 1 x D parameter
row. SAM-P: 10 perturbation sequences of 31 frames (after ImageNet-P), :func:`sam_p_sequence` gives
the transform, its n_frames x D parameter rows and what each frame is compared with (``"first"``:
every frame with frame 0, ImageNet-P's rule for noise; ``"previous"``: each frame with the one before).

The SAM benchmark publishes its images, not its generating code, so the constants are ImageNet-C's /
ImageNet-P's (Hendrycks & Dietterich 2019) where those define the corruption, and dermadv's choices
where SAM adds its own (``black_corner``, ``char``, ``brightness_down``, SAM-P's ``char`` and
``translate`` over 31 frames); each transform's docstring says which. Pixel constants are scaled
from ImageNet's 224 px to the image's ``min(H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb._ops import scale
from dermadv.perturb.base import PERTURBATIONS, Perturbation, check_severity
from dermadv.robustness.published import SAM_C_CORRUPTIONS, SAM_P_SEQUENCES

#: SAM-C's corruptions and SAM-P's sequences, in the column order of the published result CSVs
#: (Baseline_SAM-C.csv, Baseline_SAM-P.csv): one list, kept with the published metrics
SAM_C: tuple[str, ...] = SAM_C_CORRUPTIONS
SAM_P: tuple[str, ...] = SAM_P_SEQUENCES

#: benchmark column -> registered perturbation, where the names differ
SAM_C_TRANSFORM: dict[str, str] = {"contrast": "contrast_c"}
SAM_P_TRANSFORM: dict[str, str] = {
    "brightness": "hsv_brightness",
    "translate": "rotation",
    "rotate": "rotation",
}

#: SAM-P sequences whose frames are all compared with the first (ImageNet-P's noise rule)
SAM_P_FIRST: frozenset[str] = frozenset({"gaussian_noise", "shot_noise"})

IMAGENET_SIZE = 224.0


def _check(name: str, names: tuple[str, ...], what: str) -> str:
    if name not in names:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(names)}")
    return name


def sam_c_point(
    name: str, severity: int, image_shape: tuple[int, ...]
) -> tuple[Perturbation, NDArray[np.float64]]:
    """SAM-C corruption ``name`` at ``severity`` 1..5 for images of ``image_shape`` (H, W, 3): the
    registered transform and its 1 x D parameter row (its ``severity_params``)."""
    _check(name, SAM_C, "SAM-C corruption")
    level = check_severity(severity)
    pert: Perturbation = PERTURBATIONS.create(SAM_C_TRANSFORM.get(name, name))
    return pert, pert.severity_params(level, image_shape)


def _frames(n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Frame index i = 0..n-1 and its offset from the middle frame (i - 15 for 31 frames)."""
    i = np.arange(n, dtype=np.float64)
    return i, i - (n - 1) / 2.0


def _noise(magnitude: float) -> Callable[[int, float], NDArray[np.float64]]:
    def rows(n: int, s: float) -> NDArray[np.float64]:
        i, _ = _frames(n)  # frame 0 is the clean image, frame i >= 1 a fresh draw (seed i)
        return np.stack([np.where(i == 0, 0.0, magnitude), i], axis=1)

    return rows


def _motion(n: int, s: float) -> NDArray[np.float64]:
    i, _ = _frames(n)
    return np.stack([np.full(n, 10.0 * s), np.full(n, 3.0 * s), (i - (n - 1)) * 4.0], axis=1)


def _zoom(n: int, s: float) -> NDArray[np.float64]:
    i, _ = _frames(n)
    return np.stack([1.0 + 0.004 * i, np.full(n, 0.004)], axis=1)


def _char(n: int, s: float) -> NDArray[np.float64]:
    i, _ = _frames(n)
    return np.stack([i, np.full(n, 0.05), np.zeros(n)], axis=1)


def _brightness(n: int, s: float) -> NDArray[np.float64]:
    return (_frames(n)[1] * 0.02)[:, None]


def _translate(n: int, s: float) -> NDArray[np.float64]:
    t = _frames(n)[1]
    return np.stack([np.zeros(n), t * s, np.zeros(n)], axis=1)


def _rotate(n: int, s: float) -> NDArray[np.float64]:
    t = _frames(n)[1]
    return np.stack([t, np.zeros(n), np.zeros(n)], axis=1)


def _tilt(n: int, s: float) -> NDArray[np.float64]:
    t = _frames(n)[1]
    return np.stack([t, t], axis=1)


def _scale(n: int, s: float) -> NDArray[np.float64]:
    i, _ = _frames(n)
    return ((40.0 + 2.5 * i) / 100.0)[:, None]


#: SAM-P sequence -> frame rows (n_frames, scale to 224 px) -> n_frames x D parameters
_SEQUENCES: dict[str, Callable[[int, float], NDArray[np.float64]]] = {
    # ImageNet-P: sigma 0.03 (of the 0..255 range), a new draw per frame
    "gaussian_noise": _noise(0.03),
    # ImageNet-P: Poisson with c = 300 photons, k = 1/c
    "shot_noise": _noise(1.0 / 300.0),
    # ImageNet-P: radius 10, sigma 3 (224 px), angle (i - 30) * 4 degrees
    "motion_blur": _motion,
    # ImageNet-P: zooms 1 + 0.004 j, j <= i
    "zoom_blur": _zoom,
    # chosen: one more string per frame, size 0.05, one seed
    "char": _char,
    # ImageNet-P: HSV value + (i - 15) * 0.02
    "brightness": _brightness,
    # chosen for 31 frames: (i - 15) px at 224 px horizontally (ImageNet-P: i - 20 over 41 frames)
    "translate": _translate,
    # ImageNet-P: (i - 15) degrees
    "rotate": _rotate,
    # ImageNet-P: both axes (i - 15) degrees
    "tilt": _tilt,
    # ImageNet-P: (40 + 2.5 i) / 100
    "scale": _scale,
}


def sam_p_sequence(
    name: str, image_shape: tuple[int, ...], n_frames: int = 31
) -> tuple[Perturbation, NDArray[np.float64], str]:
    """SAM-P sequence ``name`` for images of ``image_shape``: (registered transform, n_frames x D
    parameter rows, reference), reference ``"first"`` (noise: each frame vs frame 0) or
    ``"previous"`` (each frame vs the one before). ``n_frames`` other than 31 keeps the per-frame step
    and centres the sequence on its middle frame."""
    _check(name, SAM_P, "SAM-P sequence")
    if int(n_frames) != n_frames or n_frames < 2:
        raise ValueError(f"n_frames must be an integer >= 2, got {n_frames!r}")
    pert: Perturbation = PERTURBATIONS.create(SAM_P_TRANSFORM.get(name, name))
    rows = _SEQUENCES[name](int(n_frames), scale(image_shape, IMAGENET_SIZE))
    return pert, pert.check_params(rows), "first" if name in SAM_P_FIRST else "previous"


__all__ = [
    "SAM_C",
    "SAM_C_TRANSFORM",
    "SAM_P",
    "SAM_P_FIRST",
    "SAM_P_TRANSFORM",
    "sam_c_point",
    "sam_p_sequence",
]
