"""Deterministic black-box models shared by tests/*/test_attacks.py."""

from __future__ import annotations

import numpy as np

from dermadv.models.base import Classifier

SIZE = (64, 64)


class ColourRatioModel(Classifier):
    """Deterministic black box: P(mel) = sigmoid(k * (log(mean R / mean B) - t)).

    A colour-balance change moves log(R/B) by at most log(1.1 / 0.9) = 0.2, so a threshold ``t``
    just below an image's own log-ratio makes the model easy to fool, a low one makes it impossible.
    With ``bkl`` a third class takes a fixed share ``other`` of the probability.
    """

    name = "colour-ratio"
    input_size = SIZE

    def __init__(
        self, t: float, k: float = 50.0, classes: tuple[str, ...] = ("nv", "mel"), other: float = 0.0
    ) -> None:
        super().__init__()
        self.t, self.k, self.classes, self.other = t, k, classes, other

    @staticmethod
    def log_ratio(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64)
        return np.log(x[..., 0].mean(axis=(1, 2)) / x[..., 2].mean(axis=(1, 2)))

    def _predict(self, images: np.ndarray, metadata) -> np.ndarray:
        p_mel = (1 - self.other) / (1 + np.exp(-self.k * (self.log_ratio(images) - self.t)))
        cols = {"mel": p_mel, "nv": 1 - self.other - p_mel, "bkl": np.full(len(images), self.other)}
        return np.stack([cols[c] for c in self.classes], axis=1)
