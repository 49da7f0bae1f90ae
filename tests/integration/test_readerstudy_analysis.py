"""The reader-study analysis CLI end to end on a simulated answer set (subprocesses; its report, figure
and JSON). The analysis itself is checked in tests/unit/test_readerstudy_analysis.py."""

from __future__ import annotations

import csv
import json

import pytest

from readerstudy_support import cli, simulate

pytest.importorskip("statsmodels")


def test_cli_analyze_writes_report_and_figure(tmp_path):
    answers = simulate(tmp_path / "a.csv", effect=True, seed=6, short_reader=True)
    out = tmp_path / "report"
    proc = cli(["reader-study", "analyze", str(answers), "--out", str(out), "--reference-band", "0.6,0.8"])
    assert "adversarial vs unmodified" in proc.stdout and "left out: reader 99" in proc.stdout
    png = out / "reader_study.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    data = json.loads((out / "analysis.json").read_text())
    assert data["provenance"]["reference_band"] == [0.6, 0.8] and len(data["provenance"]["sha256"]) == 64
    table = list(csv.DictReader((out / "per_reader.csv").open()))
    assert len(table) == 8 * 3 + 2 and {r["condition"] for r in table} == {"all", "unmodified", "adversarial"}
    js = json.loads(cli(["reader-study", "analyze", str(answers), "--json"]).stdout)
    assert js["regression"]["adversarial"]["p_value"] < 0.001
    assert js["mrmc"]["covariance"] == "jackknife" and "jackknife" in js["methods"]["mrmc"]
    assert "jackknife covariances (the default" in proc.stdout
    bad = cli(["reader-study", "analyze", str(answers), "--reference-band", "0.9,0.2"], check=False)
    assert bad.returncode == 2 and "reference-band" in bad.stderr
    bad = cli(["reader-study", "analyze", str(answers), "--covariance", "bootstrap"], check=False)
    assert bad.returncode == 2 and "--covariance must be one of" in bad.stderr


def test_cli_model_scores_and_delong(tmp_path):
    answers = simulate(tmp_path / "a.csv", effect=True, seed=7)
    with answers.open() as fh:
        truth = {r["image"]: r["ground_truth"] for r in csv.DictReader(fh)}
    model = tmp_path / "model.csv"
    model.write_text(
        "image,score\n" + "".join(f"{i},{0.9 if t == 'melanoma' else 0.2}\n" for i, t in truth.items())
    )
    out = tmp_path / "report"
    args = ["reader-study", "analyze", str(answers), "--covariance", "delong", "--model-scores", str(model)]
    proc = cli([*args, "--out", str(out)])
    assert "delong covariances" in proc.stdout and "Model vs readers" in proc.stdout
    data = json.loads((out / "analysis.json").read_text())
    assert data["mrmc"]["covariance"] == "delong" and data["provenance"]["covariance"] == "delong"
    adv = data["model_vs_readers"]["by_modality"]["adversarial"]
    assert adv["model_auc"] == 1.0 and adv["p_value"] < 0.05
    assert len(data["provenance"]["model_scores_sha256"]) == 64
    assert (out / "model_roc.png").read_bytes()[:4] == b"\x89PNG" and "model ROC figure" in proc.stdout
