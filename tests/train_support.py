"""Training through the CLI on real images, shared by the training test files: the small fast
settings, the command line, and the weight comparison of resumed runs."""

from __future__ import annotations

from pathlib import Path

import torch

#: a small, fast run: resnet18 from scratch at 48 px, batches of 16, colour jitter on
TRAIN_ARGS = [
    "--arch",
    "resnet18",
    "--weights",
    "none",
    "--image-size",
    "48",
    "--batch-size",
    "16",
    "--color-jitter",
    "--no-progress",
]


def train_args(data: Path, split: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    """``dermadv train`` on ``data`` with ``split`` into ``out`` for ``epochs``, plus ``extra``."""
    return [
        "train",
        "--data",
        str(data),
        "--split",
        str(split),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        *TRAIN_ARGS,
        *extra,
    ]


def assert_same_weights(a: Path, b: Path) -> None:
    """The two checkpoints hold the same tensors (up to float rounding)."""
    sa, sb = torch.load(a, weights_only=True)["state_dict"], torch.load(b, weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6, msg=f"{k} differs")
