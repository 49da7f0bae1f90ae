"""Model format ``npz-logreg``: logistic regression on the per-channel mean colour, in a ``.npz`` file.

The file (written by :func:`save_model`) holds ``dermadv_format`` (= :data:`FORMAT_TAG`, the sniff
check), ``classes`` (K names), ``coef`` (K x 3), ``intercept`` (K) and ``input_size`` (height, width).
The model resizes an image to ``input_size``, takes the mean of each RGB channel in 0..1 and returns
``softmax(coef @ means + intercept)``; it is differentiable, so gradient attacks work on it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import ModelError
from dermadv.models.base import Classifier, Metadata
from dermadv.models.formats import register_format
from dermadv.models.registry import as_classes

FORMAT_TAG = "dermadv-example-plugin/channel-mean-logreg/1"
KEYS = ("dermadv_format", "classes", "coef", "intercept", "input_size")


def save_model(
    path: str | Path,
    classes: Sequence[str],
    coef: np.ndarray,
    intercept: np.ndarray,
    input_size: tuple[int, int] = (64, 64),
) -> Path:
    """Write a model file; ``coef`` is K x 3 (or 1 x 3 for two classes, as scikit-learn gives it)."""
    coef = np.asarray(coef, np.float64)
    intercept = np.asarray(intercept, np.float64).ravel()
    if coef.shape == (1, 3) and len(classes) == 2:  # binary: P(class 1) = sigmoid(w.x + b)
        coef, intercept = np.vstack([np.zeros(3), coef]), np.array([0.0, intercept[0]])
    if coef.shape != (len(classes), 3) or intercept.shape != (len(classes),):
        raise ValueError(f"coef {coef.shape} / intercept {intercept.shape} do not fit {len(classes)} classes")
    path = Path(path)
    with path.open("wb") as fh:  # np.savez would append .npz to a name without it
        np.savez(
            fh,
            dermadv_format=np.array(FORMAT_TAG),
            classes=np.array(list(classes)),
            coef=coef,
            intercept=intercept,
            input_size=np.array(input_size, np.int64),
        )
    return path


def sniff(path: Path) -> bool:
    """A .npz archive whose ``dermadv_format`` entry is :data:`FORMAT_TAG`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return "dermadv_format" in data.files and str(data["dermadv_format"]) == FORMAT_TAG
    except (zipfile.BadZipFile, ValueError, OSError):
        return False


class ChannelMeanClassifier(Classifier):
    """softmax(coef @ mean RGB in 0..1 + intercept), white-box."""

    white_box = True

    def __init__(
        self,
        classes: Sequence[str],
        coef: np.ndarray,
        intercept: np.ndarray,
        input_size: tuple[int, int],
        name: str,
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        self.classes = tuple(classes)
        self.coef = np.asarray(coef, np.float64)
        self.intercept = np.asarray(intercept, np.float64)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.name = name
        self.batch_size = batch_size
        self.set_groups()

    def _predict(self, images: np.ndarray, metadata: list[Metadata] | None) -> np.ndarray:
        means = images.reshape(len(images), -1, 3).mean(axis=1) / 255.0
        z = means @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def torch_forward(self, x: Any, metadata: Sequence[Metadata] | None = None) -> Any:
        import torch

        coef = torch.as_tensor(self.coef, dtype=x.dtype, device=x.device)
        intercept = torch.as_tensor(self.intercept, dtype=x.dtype, device=x.device)
        return (x.mean(dim=(2, 3)) / 255.0) @ coef.T + intercept

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["format"] = "npz-logreg"
        d["coef"] = self.coef.round(6).tolist()
        d["intercept"] = self.intercept.round(6).tolist()
        return d


@register_format(
    "npz-logreg",
    suffixes=(".npz",),
    sniff=sniff,
    description="logistic regression on the mean RGB colour (dermadv-example-plugin)",
    label="channel-mean logistic regression",
    white_box=True,
)
@dataclass(frozen=True)
class NpzLogregFormat:
    """Options: ``classes`` renames the classes (same count, same order); ``batch_size``."""

    classes: str | None = None
    batch_size: int = 64

    def load(self, source: Path, device: str | None = None) -> ChannelMeanClassifier:
        path = Path(source)
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in KEYS if k not in data.files]
                if missing:
                    raise ModelError(f"{path}: not an npz-logreg model file (no {', '.join(missing)})")
                stored = [str(c) for c in data["classes"]]
                coef, intercept = data["coef"], data["intercept"]
                size = tuple(int(v) for v in data["input_size"])
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise ModelError(f"{path}: not a readable .npz file ({exc})") from exc
        names = as_classes(self.classes) or tuple(stored)
        if len(names) != len(stored) or coef.shape != (len(stored), 3):
            raise ModelError(f"{path}: {len(names)} class names for a model with {coef.shape[0]} outputs")
        if self.batch_size < 1:
            raise ModelError(f"{path}: batch_size must be a positive integer, got {self.batch_size}")
        return ChannelMeanClassifier(names, coef, intercept, (size[0], size[1]), path.stem, self.batch_size)
