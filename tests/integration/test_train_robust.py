"""Robust training options (issue 12) on real images: translation over the rotation attack's range,
worst-of-k augmentation, training behind colour constancy; resumable as plain training is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_support import run_cli
from dermadv.errors import DermadvError
from train_support import assert_same_weights, train_args

#: on top of the small run's settings (colour jitter included)
ROBUST = ["--robust-affine", "--worst-of-k", "3", "--color-constancy", "6"]


def test_robust_training_records_its_settings_and_resumes_exactly(
    tmp_path: Path, isic2019_dir: Path, split40: Path
) -> None:
    torch.set_num_threads(1)
    ref = tmp_path / "ref"
    out = json.loads(run_cli(train_args(isic2019_dir, split40, ref, 2, *ROBUST, "--json")))
    assert out["epochs_run"] == 2
    settings = json.loads((ref / "train.json").read_text())["settings"]
    assert settings["worst_of_k"] == 3 and settings["color_constancy"] == 6.0
    assert settings["translate_px"] == pytest.approx(50 * 48 / 299)
    assert settings["augmentation"]["color_constancy"]["p"] == 6.0
    run = tmp_path / "resumed"
    run_cli(train_args(isic2019_dir, split40, run, 1, *ROBUST))
    out = json.loads(run_cli(train_args(isic2019_dir, split40, run, 2, *ROBUST, "--json")))
    assert out["resumed_from"] == {"epoch": 1, "batch": 0}
    assert_same_weights(run / "last.pt", ref / "last.pt")
    with pytest.raises(DermadvError, match=r"cannot resume.*worst_of_k: 3 -> 5"):
        run_cli(train_args(isic2019_dir, split40, run, 3, *ROBUST[:1], "--worst-of-k", "5", *ROBUST[3:]))
