"""``dermadv defend compare`` end to end on real ISIC images with a tiny TorchScript CNN: every chain's
clean metrics with CIs, attacks (adaptive included) with threat models and counted forwards, flip rates,
certificates, paired tests, and the report section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaign_support import train_tiny_torchscript
from cli_support import run_cli
from dermadv.data import select_samples

SIZE = 48


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    return train_tiny_torchscript(
        isic2019_dir, out, size=SIZE, n_images=80, conv_layers=2, epochs=6, batch=32
    )


def test_defend_compare_end_to_end(tmp_path: Path, isic2019_dir: Path, tiny_model: Path) -> None:
    mel = [s.image_id for s in select_samples(isic2019_dir, classes=("mel",), limit=3)]
    nv = [s.image_id for s in select_samples(isic2019_dir, classes=("nv",), limit=3)]
    out = tmp_path / "run"
    args = [
        "defend", "compare", "--model", str(tiny_model), "--data", str(isic2019_dir),
        "--ids", ",".join(mel + nv),
        "--defences", "color-constancy:p=6;tta:rotations=4", "--attacks", "color", "--popsize", "1",
        "--max-generations", "1", "--attack-limit", "3", "--transforms", "color", "--flip-samples", "4",
        "--certify", "smoothing-gain,exact-gain", "--certify-limit", "2", "--certify-option", "n0=4",
        "--certify-option", "n=16", "--out", str(out), "--no-progress", "--json",
    ]  # fmt: skip
    summary = json.loads(run_cli(args))
    labels = [e["defence"] for e in summary["defences"]]
    assert labels == ["none", "color-constancy", "tta:rotations=4"]
    none, cc, tta = summary["defences"]
    assert [e["query_cost"] for e in summary["defences"]] == [1, 1, 4]
    for e in summary["defences"]:
        auc = e["clean"]["auc"]
        assert auc["ci_low"] <= auc["value"] <= auc["ci_high"] and e["clean"]["n"] == 6
        assert e["flip_rates"][0]["transform"] == "color"
        assert e["certified_accuracy"]["smoothing-gain"]["n"] == 2
        assert (
            e["certified_accuracy"]["exact-gain"]["not_attempted"] == 2
        )  # real images: too many to enumerate
        for a in e["attacks"]:
            assert a["threat_model"] and a["forwards_check"] in (
                "matches queries x cost",
                "no defence: queries are forwards",
            )
            if a["median_queries"] is not None:
                assert a["median_forwards"] == a["median_queries"] * e["query_cost"]
    assert "paired_vs_none" not in none
    assert {"mcnemar_clean", "delong_auc"} <= set(cc["paired_vs_none"])
    # the attack itself, then what colour constancy leaves open: additive shifts, the illumination gradient
    # and the vignette (registered transforms), and gains strong enough to clip
    names = [a["attack"] for a in cc["attacks"]]
    assert names[:2] == ["color", "adaptive:shift"] and names[-1] == "adaptive:clipping-gain"
    assert {"adaptive:illumination_gradient", "adaptive:black_corner"} <= set(names)
    assert [a["attack"] for a in tta["attacks"]] == ["color", "adaptive:orbit-gap-rotation"]
    assert all(a["adaptive"] == a["attack"].startswith("adaptive:") for a in cc["attacks"])
    for name in ("defend.json", "defend.csv", "defend_attacks.csv", "defend_certificates.csv", "run.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "run.json").read_text())["kind"] == "defend"
    report = tmp_path / "report.html"
    run_cli(["report", str(out), "--out", str(report)])
    html = report.read_text()
    assert (
        "Defences" in html
        and "adaptive:orbit-gap-rotation" in html
        and "black box through the defence" in html
    )
