"""Helpers for the extension-point tests: the example plugin's folder, a real model to save in its format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "tests" / "plugins" / "dermadv_example_plugin"
INPUT_SIZE = (64, 64)


def channel_means(paths: list[Path], size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """N x 3 mean RGB in 0..1 of each image resized to ``size`` (what the npz-logreg model computes)."""
    from dermadv.data.images import load_image, resize_uint8

    return np.stack([resize_uint8(load_image(p), size).reshape(-1, 3).mean(axis=0) / 255.0 for p in paths])


def fit_channel_mean_logreg(data_dir: Path, n: int = 40) -> dict:
    """A logistic regression melanoma vs naevus on the mean colour of ``n`` real ISIC images."""
    from sklearn.linear_model import LogisticRegression

    from dermadv.data import select_samples

    samples = select_samples(data_dir, classes=("mel", "nv"), limit=n)
    features = channel_means([s.path for s in samples])
    y = np.array([s.diagnosis == "mel" for s in samples], int)
    assert 0 < y.sum() < len(y), "need both classes"
    clf = LogisticRegression(C=100.0).fit(features, y)
    return {
        "classes": ["nv", "mel"],  # scikit-learn's order: label 0, label 1
        "coef": clf.coef_.tolist(),
        "intercept": clf.intercept_.tolist(),
        "samples": samples,
        "features": features,
        "probs": clf.predict_proba(features),
    }
