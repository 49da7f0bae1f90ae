"""Models with a known flip region and images of known colour, for robustness-run tests (no data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dermadv.data.dataset import Sample
from dermadv.models.callable_adapter import CallableClassifier

BASE = 200  # every test image is uniform (BASE, BASE, BASE)
GREEN_LIMIT = 210  # green_model calls melanoma while the mean green stays <= this


def green_model_fn(images: np.ndarray) -> np.ndarray:
    """Melanoma (0.9) while the mean green level is <= 210, else naevus: under colour gains on a uniform
    200-grey image, trunc(200 c_g) > 210 flips the call, i.e. c_g >= 1.055."""
    g = images[..., 1].reshape(len(images), -1).mean(axis=1)
    p_mel = np.where(g <= GREEN_LIMIT, 0.9, 0.1)
    return np.stack([p_mel, 1 - p_mel], axis=1)


def constant_fn(images: np.ndarray) -> np.ndarray:
    """Always melanoma: nothing ever flips."""
    return np.tile([0.8, 0.2], (len(images), 1))


def exact_fn(images: np.ndarray) -> np.ndarray:
    """Melanoma only for the exact unmodified uniform image: almost any change flips the call."""
    same = (images.reshape(len(images), -1) == BASE).all(axis=1)
    p_mel = np.where(same, 0.9, 0.1)
    return np.stack([p_mel, 1 - p_mel], axis=1)


def model(fn: object, size: int = 32, batch_size: int = 32) -> CallableClassifier:
    return CallableClassifier(
        fn, ("mel", "nv"), (size, size), name=getattr(fn, "__name__", "fn"), batch_size=batch_size
    )


def uniform_samples(folder: Path, n: int, size: int = 32, lesions: int | None = None) -> list[Sample]:
    """``n`` uniform grey PNGs (all melanomas), ``lesions`` lesion ids shared round-robin."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(np.full((size, size, 3), BASE, np.uint8)).save(path)
        lesion = f"les{i % lesions}" if lesions else None
        out.append(Sample(f"img{i:03d}", path, "mel", lesion_id=lesion))
    return out


def analytic_green_flip_probability(delta: float = 0.1) -> float:
    """P(trunc(BASE c_g) > GREEN_LIMIT) for c_g uniform on [1 - delta, 1 + delta]."""
    c_min = (GREEN_LIMIT + 1) / BASE  # the smallest gain whose product truncates above the limit
    return max(0.0, (1 + delta - c_min) / (2 * delta))
