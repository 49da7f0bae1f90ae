"""The systematic perturbation sweep on real ISIC images: the decoder change, resume, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dermadv.data import select_samples
from dermadv.data.images import load_image, resize_uint8
from dermadv.errors import DermadvError
from dermadv.perturb.points import SpecError, parse_one
from dermadv.perturb.sweep import run_sweep


@pytest.fixture(scope="module")
def samples(isic2019_dir: Path):
    """32 real images, 16 melanomas and 16 naevi (stratified, deterministic)."""
    s = select_samples(isic2019_dir, classes=("mel", "nv"), limit=32)
    assert {x.diagnosis for x in s} == {"mel", "nv"}
    return s


def brightness_model(samples):
    """A real white-box torch classifier whose melanoma logit falls with mean brightness: darker
    images are called melanoma, the threshold at the median of ``samples``. Its behaviour under
    shifts and rotations is predictable."""
    import torch

    means = [resize_uint8(load_image(s.path), (64, 64)).mean() / 255 for s in samples]
    centre = float(np.median(means))

    from dermadv.models.base import TorchModuleClassifier

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[-8.0, -8.0, -8.0], [0.0, 0.0, 0.0]]))
        net[2].bias.copy_(torch.tensor([24.0 * centre, 0.0]))  # melanoma iff mean intensity < centre
    return TorchModuleClassifier(
        net,
        ["mel", "nv"],
        (64, 64),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        name="brightness",
        device="cpu",
        batch_size=16,
    )


def test_decoder_change_decodes_differently(samples):
    c = parse_one("decoder:other")
    assert c.decoder_for("pil") == "tf" and c.decoder_for("tf") == "pil"
    diffs = [
        np.abs(load_image(s.path, "pil").astype(int) - load_image(s.path, "tf").astype(int)).max()
        for s in samples[:8]
    ]
    assert max(diffs) > 0  # the two libjpeg configurations really differ on real files


# ----- the sweep ----------------------------------------------------------------------------------
SPECS = "study,hue:0.05,blur:1.5,jpeg:75,brightness:1.3,decoder:other"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_sweep_counts_resume_and_files(samples, tmp_path):
    model = brightness_model(samples)
    out = tmp_path / "run"
    res = run_sweep(model, samples, out, SPECS, batch_size=16, progress=False)
    rows = {r["perturbation"]: r for r in res.rows}
    assert list(rows)[0] == "none" and len(rows) == 1 + 20 + 5
    n = len(samples)
    y = np.array([s.diagnosis == "mel" for s in samples])
    scores = _read_csv(out / "perturbation_scores.csv")
    assert [r["image_id"] for r in scores] == [s.image_id for s in samples]
    base_pred = np.array([float(r["none"]) >= 0.5 for r in scores])
    for spec, r in rows.items():
        assert r["n"] == n
        assert r["correct"] + r["false_negatives"] + r["false_positives"] == n, spec
        assert r["accuracy"] == (2000 * r["correct"] + n) // (2 * n) / 1000  # half up, exact integers
        pred = np.array([float(x[spec]) >= 0.5 for x in scores])
        assert r["correct"] == int((pred == y).sum())
        assert r["false_negatives"] == int((y & ~pred).sum()) and r["false_positives"] == int(
            (~y & pred).sum()
        )
        assert (
            r["flipped"]
            == int((pred != base_pred).sum())
            == r["flipped_to_benign"] + r["flipped_to_melanoma"]
        )
        base_acc = rows["none"]["correct"] / n
        assert r["delta_accuracy"] == pytest.approx(r["correct"] / n - base_acc, abs=1e-3)
        if spec != "none":
            assert (
                r["delta_ci_low"] <= r["delta_accuracy"] + 1e-3
                and r["delta_accuracy"] <= r["delta_ci_high"] + 1e-3
            )
    # the brightness model is exactly rotation-180 invariant; brighter images are called naevus
    assert rows["rot:180"]["flipped"] == 0
    assert rows["rot:45"]["flipped_to_benign"] == 0  # black corners only darken
    for ch in "rgb":
        assert rows[f"shift:{ch}:+50"]["flipped_to_melanoma"] == 0
        assert rows[f"shift:{ch}:-50"]["flipped_to_benign"] == 0
    assert rows["shift:r:+50"]["flipped"] > 0
    # files
    table = _read_csv(out / "perturbation.csv")
    assert [t["perturbation"] for t in table] == list(rows)
    for t in table:  # the study's table: accuracy to three decimals
        assert len(t["accuracy"].split(".")[1]) == 3
        assert float(t["accuracy"]) == rows[t["perturbation"]]["accuracy"]
        assert int(t["correct"]) + int(t["false_negatives"]) + int(t["false_positives"]) == n
    assert (out / "perturbation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "run.json").read_text())
    assert info["kind"] == "sweep" and info["status"] == "complete" and info["settings"]["data"]["hash"]
    assert info["provenance"]["model"]["name"] == "brightness" and info["provenance"]["versions"]["numpy"]
    assert info["scope"]["n_images"] == n and info["settings"]["inference_batch_size"] == 16
    assert len(list((out / "perturb").glob("*.json"))) == len(rows)

    # resume: nothing recomputed; a deleted perturbation alone is recomputed, identical numbers
    again = run_sweep(model, samples, out, SPECS, batch_size=16, progress=False)
    assert again.computed == [] and len(again.skipped) == len(rows) and again.rows == res.rows
    (out / "perturb" / "shift_g_p10.json").unlink()
    third = run_sweep(model, samples, out, SPECS, batch_size=16, progress=False)
    assert third.computed == ["shift:g:+10"] and third.rows == res.rows
    # without room to keep the inputs in memory, batches are decoded again: same numbers
    lean = run_sweep(
        model,
        samples,
        tmp_path / "lean",
        "rot45,shift:r:+50",
        batch_size=16,
        progress=False,
        memory_limit_mb=0,
    )
    assert lean.rows == [rows["none"], rows["rot:45"], rows["shift:r:+50"]]
    # another threshold means other results: refuse to mix them in one run folder
    with pytest.raises(DermadvError, match=r"different settings \(threshold: 0.5 -> 0.6\)"):
        run_sweep(model, samples, out, SPECS, threshold=0.6, progress=False)


def test_sweep_rejects_bad_input(samples, tmp_path, isic2019_dir):
    model = brightness_model(samples)
    with pytest.raises(DermadvError, match="no images"):
        run_sweep(model, [], tmp_path / "a", "rot180", progress=False)
    bkl = select_samples(isic2019_dir, classes=("bkl",), limit=2)
    with pytest.raises(DermadvError, match="other diagnoses"):
        run_sweep(model, bkl, tmp_path / "b", "rot180", progress=False)
    with pytest.raises(SpecError):
        run_sweep(model, samples, tmp_path / "c", "rot180,wobble:3", progress=False)


def test_cli_perturb(isic2019_dir, tmp_path):
    import torch

    from dermadv.models.checkpoint import build_model, make_checkpoint, save_checkpoint

    torch.manual_seed(0)
    module = build_model("mobilenet_v3_small", num_classes=2, weights="none")
    ckpt = make_checkpoint(
        module, arch="mobilenet_v3_small", classes=["mel", "nv"], input_size=(64, 64), model_kwargs={}
    )
    model_path = save_checkpoint(ckpt, tmp_path / "tiny.pt")
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "dermadv.cli",
        "perturb",
        "--model",
        str(model_path),
        "--data",
        str(isic2019_dir),
        "--limit",
        "20",
        "--out",
        str(out),
        "--perturbations",
        "rot180,shift:b:-10",
        "--batch-size",
        "20",
        "--json",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert [r["perturbation"] for r in res["rows"]] == ["none", "rot:180", "shift:b:-10"]
    assert all(r["correct"] + r["false_negatives"] + r["false_positives"] == 20 for r in res["rows"])
    assert Path(res["files"]["csv"]).exists() and Path(res["files"]["png"]).exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0 and json.loads(again.stdout)["computed"] == []
    bad = subprocess.run(
        cmd[:-4] + ["--perturbations", "shift:q:4"], capture_output=True, text=True, timeout=240
    )
    assert bad.returncode == 2 and "channel" in bad.stderr
    edge = subprocess.run(cmd[:-4] + ["--threshold", "1"], capture_output=True, text=True, timeout=240)
    assert edge.returncode == 2 and "--threshold must be strictly between 0 and 1" in edge.stderr
    assert "Traceback" not in edge.stderr


def test_cli_perturb_with_split_sweeps_the_validation_set(isic2019_dir, tmp_path):
    """`--split` without `--subset` means the validation set (as `dermadv evaluate`), never train + val."""
    import torch

    from dermadv.data import load_dataset, make_split, read_split
    from dermadv.models.checkpoint import build_model, make_checkpoint, save_checkpoint

    split_csv = tmp_path / "split.csv"
    make_split(load_dataset(isic2019_dir), val_fraction=0.2, seed=0).write(split_csv)
    val_ids = {s.image_id for s in read_split(split_csv).subset("val")}
    torch.manual_seed(0)
    module = build_model("mobilenet_v3_small", num_classes=2, weights="none")
    ckpt = make_checkpoint(
        module, arch="mobilenet_v3_small", classes=["mel", "nv"], input_size=(64, 64), model_kwargs={}
    )
    model_path = save_checkpoint(ckpt, tmp_path / "tiny.pt")
    cmd = [
        sys.executable, "-m", "dermadv.cli", "perturb", "--model", str(model_path),
        "--data", str(isic2019_dir), "--split", str(split_csv), "--out", str(tmp_path / "run"),
        "--perturbations", "rot180", "--json", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert rows[0]["n"] == len(val_ids)
    with (tmp_path / "run" / "perturbation_scores.csv").open() as fh:
        assert {r["image_id"] for r in csv.DictReader(fh)} == val_ids
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["settings"]["data"]["subset"] == "val"
