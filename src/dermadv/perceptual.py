"""How visible is an attack: perceptual distance between an original image and its adversarial version.

The study's premise is a change a dermatologist would not notice. Three numbers per adversarial image,
computed with scikit-image (:func:`skimage.color.deltaE_ciede2000` on CIELAB from
:func:`skimage.color.rgb2lab`, and :func:`skimage.metrics.structural_similarity`):

- ``delta_e_mean``: mean CIEDE2000 colour difference over the pixels (sRGB, D65);
- ``delta_e_p95``: its 95th percentile (a local, visible patch shows here before it moves the mean);
- ``ssim``: structural similarity of the two RGB images (1 = identical), data range 255.

:data:`JND_DELTA_E` = 2.3 is the just-noticeable colour difference (Sharma 2003, for CIELAB ΔE*ab;
used here as the conventional threshold for CIEDE2000 too): an attack whose mean ΔE is below it is
counted as "below the visibility threshold". It is a screening line, not a reader study.

The campaign store records the three numbers in every row that saved an adversarial image
(:mod:`dermadv.campaign.store`); :func:`row_distance` gives them for rows of older runs too, computed
from the saved PNGs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Just-noticeable difference in mean CIEDE2000 ΔE (Sharma 2003): below it, "not visible".
JND_DELTA_E = 2.3
#: The result-store columns this module fills.
PERCEPTUAL_KEYS: tuple[str, ...] = ("delta_e_mean", "delta_e_p95", "ssim")


def _rgb(image: Any, what: str) -> NDArray[np.uint8]:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected a uint8 H x W x 3 image, got {arr.dtype} {arr.shape}")
    return arr


def delta_e_map(original: Any, adversarial: Any) -> NDArray[np.float64]:
    """Per-pixel CIEDE2000 colour difference (H x W) between two uint8 RGB images of one size."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    a, b = _rgb(original, "original"), _rgb(adversarial, "adversarial")
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    return np.asarray(deltaE_ciede2000(rgb2lab(a), rgb2lab(b)), dtype=np.float64)


def perceptual_distance(original: Any, adversarial: Any) -> dict[str, float]:
    """``delta_e_mean``, ``delta_e_p95`` (CIEDE2000) and ``ssim`` between two uint8 RGB images."""
    from skimage.metrics import structural_similarity

    de = delta_e_map(original, adversarial)
    a, b = np.asarray(original), np.asarray(adversarial)
    win = min(7, *a.shape[:2])
    win -= 1 - win % 2  # odd, at most the image side
    ssim = (
        1.0
        if np.array_equal(a, b)
        else structural_similarity(a, b, channel_axis=2, data_range=255, win_size=max(win, 3))
    )
    return {
        "delta_e_mean": float(de.mean()),
        "delta_e_p95": float(np.percentile(de, 95)),
        "ssim": float(ssim),
    }


def below_jnd(distance: Mapping[str, Any] | None, threshold: float = JND_DELTA_E) -> bool | None:
    """Whether a row's mean ΔE is below ``threshold`` (None: not known)."""
    if not distance or distance.get("delta_e_mean") is None:
        return None
    return float(distance["delta_e_mean"]) < threshold


def _load(path: Path) -> NDArray[np.uint8]:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def row_distance(run_dir: str | Path, row: Mapping[str, Any]) -> dict[str, float] | None:
    """A result row's perceptual distance: as stored, else computed from its saved PNGs (older runs),
    else None (no adversarial image saved)."""
    if all(row.get(k) is not None for k in PERCEPTUAL_KEYS):
        return {k: float(row[k]) for k in PERCEPTUAL_KEYS}
    if not row.get("original_path") or not row.get("adversarial_path"):
        return None
    orig, adv = Path(run_dir) / row["original_path"], Path(run_dir) / row["adversarial_path"]
    if not orig.is_file() or not adv.is_file():
        return None
    a, b = _load(orig), _load(adv)
    return perceptual_distance(a, b) if a.shape == b.shape else None
