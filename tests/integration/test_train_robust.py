"""Robust training options (issue 12) on real images: translation over the rotation attack's range,
worst-of-k augmentation, training behind colour constancy; resumable as plain training is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_support import run_cli
from dermadv.errors import DermadvError

ARGS = [
    "--arch",
    "resnet18",
    "--weights",
    "none",
    "--image-size",
    "48",
    "--batch-size",
    "16",
    "--no-progress",
]
ROBUST = ["--robust-affine", "--worst-of-k", "3", "--color-constancy", "6", "--color-jitter"]


@pytest.fixture(scope="module")
def split40(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    from dermadv.data import Dataset, load_dataset, make_split, select_samples

    ds = load_dataset(isic2019_dir, progress=False)
    sub = select_samples(ds, classes=("mel", "nv"), limit=40)
    path = tmp_path_factory.mktemp("split") / "split40.csv"
    make_split(Dataset(root=ds.root, layout=ds.layout, samples=sub), val_fraction=0.3, seed=0).write(path)
    return path


def _args(data: Path, split: Path, out: Path, epochs: int, *extra: str) -> list[str]:
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
        *ARGS,
        *extra,
    ]


def test_robust_training_records_its_settings_and_resumes_exactly(
    tmp_path: Path, isic2019_dir: Path, split40: Path
) -> None:
    torch.set_num_threads(1)
    ref = tmp_path / "ref"
    out = json.loads(run_cli(_args(isic2019_dir, split40, ref, 2, *ROBUST, "--json")))
    assert out["epochs_run"] == 2
    settings = json.loads((ref / "train.json").read_text())["settings"]
    assert settings["worst_of_k"] == 3 and settings["color_constancy"] == 6.0
    assert settings["translate_px"] == pytest.approx(50 * 48 / 299)
    assert settings["augmentation"]["color_constancy"]["p"] == 6.0
    run = tmp_path / "resumed"
    run_cli(_args(isic2019_dir, split40, run, 1, *ROBUST))
    out = json.loads(run_cli(_args(isic2019_dir, split40, run, 2, *ROBUST, "--json")))
    assert out["resumed_from"] == {"epoch": 1, "batch": 0}
    a = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(ref / "last.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{k} differs")
    with pytest.raises(DermadvError, match=r"cannot resume.*worst_of_k: 3 -> 5"):
        run_cli(_args(isic2019_dir, split40, run, 3, *ROBUST[:1], "--worst-of-k", "5", *ROBUST[3:]))
