"""Helpers for the model tests: a tiny CNN, model functions importable as module:function, sklesion facts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class TinyCNN(nn.Module):
    """Two conv layers and a linear head: normalised N x 3 x H x W -> N x k logits."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(16, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_cnn(seed: int = 0, k: int = 2) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(k).eval()


def mean_colour_probs(images: np.ndarray) -> np.ndarray:
    """A transparent 'model': P(mel) rises as the image gets darker. uint8 N x H x W x 3 -> N x 2."""
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3
    dark = 1.0 - images.reshape(len(images), -1).mean(axis=1) / 255.0
    return np.stack([dark, 1.0 - dark], axis=1)


mean_colour_probs.classes = ("mel", "nv")  # type: ignore[attr-defined]
mean_colour_probs.input_size = (48, 48)  # type: ignore[attr-defined]


def with_metadata(images: np.ndarray, metadata=None) -> np.ndarray:  # noqa: ANN001
    """P(mel) = age / 100 when metadata is given, 0.5 otherwise (shows metadata reaches the function)."""
    p = np.full(len(images), 0.5)
    if metadata is not None:
        p = np.array([(m or {}).get("age", 50.0) / 100.0 for m in metadata])
    return np.stack([p, 1 - p], axis=1)


def nan_probs(images: np.ndarray) -> np.ndarray:
    return np.full((len(images), 2), np.nan)


def three_columns(images: np.ndarray) -> np.ndarray:
    return np.full((len(images), 3), 1 / 3)


def logits_not_probs(images: np.ndarray) -> np.ndarray:
    return np.tile([[2.0, -1.0]], (len(images), 1))


def raises(images: np.ndarray) -> np.ndarray:
    raise RuntimeError("boom")


def encode_age(metadata, n: int) -> np.ndarray:  # noqa: ANN001
    """Metadata encoder for a Keras model with a 1-vector input: age / 100 (0.5 when unknown)."""
    metadata = metadata or [None] * n
    return np.array([[((m or {}).get("age") or 50.0) / 100.0] for m in metadata], dtype=np.float32)


#: The seven HAM10000 classes of the sklesion model, in its output order.
SKLESION_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def tiny_model(device: str = "cpu", batch_size: int = 4) -> Any:
    """A real white-box torch classifier (fixed random weights) on 32 px inputs."""
    from dermadv.models.base import TorchModuleClassifier

    return TorchModuleClassifier(
        tiny_cnn(seed=0),
        ["mel", "nv"],
        (32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        name="tiny",
        device=device,
        batch_size=batch_size,
    )
