"""Evaluation arithmetic without data: the degenerate-AUC note, multi-class AUCs, the lossless ISIC
submission. End to end on real images (split -> train -> evaluate): tests/integration/test_evaluate.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

torch.set_num_threads(1)  # the shared 2-core test machine is oversubscribed: 1 thread is fastest


def test_summary_keeps_degenerate_auc_note() -> None:
    """--json must not report AUC 1.0 [1.0, 1.0] without the note that the interval is degenerate."""
    from dermadv.data import Sample
    from dermadv.evaluate import Evaluation
    from dermadv.metrics import binary_metrics

    y = np.r_[np.ones(4, int), np.zeros(4, int)]
    scores = np.r_[np.full(4, 0.9), np.full(4, 0.1)]
    samples = [Sample(f"id{i}", None, "mel" if t else "nv") for i, t in enumerate(y)]
    ev = Evaluation(
        samples=samples,
        classes=("mel", "nv"),
        probs=np.c_[scores, 1 - scores],
        scores=scores,
        included=np.ones(8, bool),
        threshold=0.5,
        metrics=binary_metrics(y, scores),
    )
    auc = ev.summary()["auc"]
    assert auc["ci_low"] == auc["ci_high"] == 1.0 and "degenerate" in auc["note"]
    assert "note" not in ev.summary()["accuracy"]
    # Each interval says how it was computed.
    assert auc["method"].startswith("DeLong")
    assert ev.summary()["sensitivity"]["method"] == "Wilson score interval"


def _evaluation(classes: tuple[str, ...], probs: np.ndarray, diagnoses: list[str]):  # noqa: ANN202
    from dermadv.data import Sample
    from dermadv.evaluate import Evaluation, two_aucs
    from dermadv.metrics import binary_metrics

    included = np.array([d in ("mel", "nv") for d in diagnoses])
    y = np.array([d == "mel" for d in diagnoses], dtype=int)[included]
    p_mel, p_nv = probs[:, classes.index("mel")], probs[:, classes.index("nv")]
    scores = p_mel / (p_mel + p_nv)
    metrics = two_aucs(binary_metrics(y, scores[included]), y, classes, probs, included)
    samples = [Sample(f"id{i}", None, d) for i, d in enumerate(diagnoses)]
    return Evaluation(samples, classes, probs, scores, included, 0.5, metrics)


def test_multiclass_model_reports_both_aucs_each_named(tmp_path: Path) -> None:
    """A 3-class model: the headline ranks p_mel/(p_mel+p_nv), the ISIC scorer ranks raw P(MEL); they
    differ here, and each equals scikit-learn's AUC of its own score on the same mel/nv cases."""
    from dermadv.evaluate import format_report

    probs = np.array(
        [  # mel, nv, bkl
            [0.10, 0.01, 0.89],  # mel: headline 0.909, raw 0.10
            [0.60, 0.40, 0.00],  # mel: headline 0.60, raw 0.60
            [0.30, 0.70, 0.00],  # nv: headline 0.30, raw 0.30
            [0.45, 0.05, 0.50],  # nv: headline 0.90, raw 0.45
            [0.90, 0.05, 0.05],  # bkl: excluded from both
        ]
    )
    ev = _evaluation(("mel", "nv", "bkl"), probs, ["mel", "mel", "nv", "nv", "bkl"])
    y = np.array([1, 1, 0, 0])
    head, raw = ev.metrics["auc_melanoma_vs_naevus"], ev.metrics["auc_raw_p_mel"]
    assert head["value"] == ev.metrics["auc"]["value"] == roc_auc_score(y, ev.scores[:4]) == 0.75
    assert raw["value"] == roc_auc_score(y, probs[:4, 0]) == 0.5
    for m in (head, raw):
        assert m["method"].startswith("DeLong") and 0 <= m["ci_low"] <= m["value"] <= m["ci_high"] <= 1
    assert "raw P(MEL)" in raw["definition"] and "p_mel / (p_mel + p_benign)" in head["definition"]
    s = ev.summary()
    assert s["auc_raw_p_mel"]["value"] == 0.5 and s["auc_melanoma_vs_naevus"]["value"] == 0.75
    assert "ISIC scorer's MEL AUC (raw P(MEL)) 0.500" in format_report(ev)

    # The HTML report's metrics table gives both, each named, with CIs.
    import html

    from dermadv.report.html import build_report

    run = tmp_path / "eval"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"metrics": ev.metrics}))
    page = html.unescape(build_report([run], tmp_path / "report.html").read_text())
    table = page[page.index("AUC melanoma vs naevus (95% CI)") :]
    assert "ISIC scorer's MEL AUC (raw P(MEL)) (95% CI)" in table
    assert f"0.750 ({head['ci_low']:.3f}–{head['ci_high']:.3f})" in table
    assert f"0.500 ({raw['ci_low']:.3f}–{raw['ci_high']:.3f})" in table


def test_isic_submission_is_lossless_and_clipped() -> None:
    """A saturated 0.9999995 stays 0.9999995 (6 decimals made it 1.000000, a tie with 1.0); classes that
    map to one ISIC column are added; a sum above 1 by rounding is clipped to exactly 1."""
    from dermadv.evaluate import ISIC2019_COLUMNS, isic_submission_csv

    probs = np.array(
        [
            [0.9999995, 0.0000005, 0.0],
            [1.0, 0.0, 0.0],
            [0.1 + 1e-17, 0.7, 0.2],
            [0.0, 0.5, 0.5000000000000002],  # NV + "naevus" = 1.0000000000000002: clipped to 1
        ]
    )
    ev = _evaluation(("mel", "nv", "naevus"), probs, ["mel", "mel", "nv", "nv"])
    rows = list(csv.DictReader(io.StringIO(isic_submission_csv(ev))))
    assert list(rows[0]) == ["image", *ISIC2019_COLUMNS]
    mel = [float(r["MEL"]) for r in rows]
    assert mel == [0.9999995, 1.0, 0.1 + 1e-17, 0.0] and mel[0] != mel[1]
    nv = [float(r["NV"]) for r in rows]
    assert nv[0] == 0.0000005 and nv[2] == 0.7 + 0.2 and nv[3] == 1.0
    assert all(float(r[c]) == 0.0 for r in rows for c in ISIC2019_COLUMNS[2:])
