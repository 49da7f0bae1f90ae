"""Reader-study analysis on simulated answer sets with a known effect and with none; per-reader AUC and
CI checked against independent computations (sklearn, a direct DeLong); MRMC; the CLI and its figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from readerstudy_support import simulate

pytest.importorskip("statsmodels")

from dermadv.errors import DataError  # noqa: E402
from dermadv.readerstudy.analysis import analyze, analyze_file, load_answers, parse_band  # noqa: E402
from dermadv.readerstudy.mrmc import auc_covariance, obuchowski_rockette  # noqa: E402


def direct_delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong variance with explicit loops (DeLong et al. 1988, eqs. for V10/V01)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = lambda a, b: 1.0 if a > b else (0.5 if a == b else 0.0)  # noqa: E731
    v10 = np.array([np.mean([psi(x, z) for z in neg]) for x in pos])
    v01 = np.array([np.mean([psi(x, z) for x in pos]) for z in neg])
    auc = v10.mean()
    var = np.sum((v10 - auc) ** 2) / (len(pos) - 1) / len(pos) + np.sum((v01 - auc) ** 2) / (
        len(neg) - 1
    ) / len(neg)
    return float(auc), float(var)


def test_known_effect_is_detected(tmp_path):
    res = analyze(load_answers(simulate(tmp_path / "a.csv", effect=True, seed=1)))
    adv = res["regression"]["adversarial"]
    assert adv["p_value"] < 0.001
    assert adv["odds_ratio"] < 0.2 and adv["ci_high"] < 1
    mr = res["mrmc"]
    assert mr["p_value"] < 0.001
    assert mr["comparisons"][0]["modalities"] == ["adversarial", "unmodified"]
    assert mr["comparisons"][0]["ci_high"] < 0
    assert any("benign cases of the other" in n for n in mr["notes"])
    # adversarial specificity is undefined (no naevi), said so rather than invented
    r1 = res["per_reader"][0]
    assert r1["by_condition"]["adversarial"]["specificity"]["value"] is None
    assert "unmodified naevi" in r1["by_condition"]["adversarial"]["auc_negatives"]
    assert (
        res["misdiagnosis_by_attack"]["color"]["value"] > res["misdiagnosis_by_attack"]["unmodified"]["value"]
    )


def test_no_effect_is_not_significant(tmp_path):
    res = analyze(load_answers(simulate(tmp_path / "n.csv", effect=False, seed=3)))
    assert res["regression"]["adversarial"]["p_value"] > 0.05
    assert res["regression"]["adversarial"]["ci_low"] < 1 < res["regression"]["adversarial"]["ci_high"]
    assert res["mrmc"]["p_value"] > 0.05


def test_per_reader_auc_and_ci_match_independent_computations(tmp_path):
    rows = load_answers(simulate(tmp_path / "a.csv", effect=True, seed=2))
    res = analyze(rows)
    for entry in res["per_reader"]:
        mine = [r for r in rows if r["reader"] == entry["reader"]]
        y = np.array([r["truth"] == "melanoma" for r in mine], dtype=int)
        s = np.array([(1 if r["answer"] == "melanoma" else -1) * r["confidence"] for r in mine], dtype=float)
        auc = entry["overall"]["auc"]
        assert auc["value"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        d_auc, d_var = direct_delong(y, s)
        assert auc["value"] == pytest.approx(d_auc, abs=1e-12)
        half = 1.959963984540054 * math.sqrt(d_var)
        assert auc["ci_low"] == pytest.approx(max(0.0, d_auc - half), abs=1e-9)
        assert auc["ci_high"] == pytest.approx(min(1.0, d_auc + half), abs=1e-9)
        # sensitivity: k/n with a Wilson interval, computed here from its formula
        mel = [r for r in mine if r["truth"] == "melanoma"]
        k, n = sum(r["correct"] for r in mel), len(mel)
        p, z = k / n, 1.959963984540054
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        hw = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        sens = entry["overall"]["sensitivity"]
        assert (sens["value"], sens["ci_low"], sens["ci_high"]) == pytest.approx(
            (p, centre - hw, centre + hw)
        )
        assert entry["score"].startswith("signed confidence")


def test_binary_answers_auc_is_balanced_accuracy(tmp_path):
    rows = load_answers(simulate(tmp_path / "b.csv", effect=True, seed=4, confidence=False))
    res = analyze(rows)
    for entry in res["per_reader"]:
        m = entry["by_condition"]["unmodified"]
        assert entry["score"].startswith("binary answer")
        assert m["auc"]["value"] == pytest.approx((m["sensitivity"]["value"] + m["specificity"]["value"]) / 2)


def test_too_few_answers_are_reported_not_dropped(tmp_path):
    res = analyze(load_answers(simulate(tmp_path / "s.csv", effect=True, seed=5, short_reader=True)))
    assert res["n_readers"] == 9 and len(res["included_readers"]) == 8
    assert res["excluded_readers"] == [
        {"reader": "99", "name": "Dr Late", "reason": "too few answers (8 < 10)"}
    ]
    late = next(r for r in res["per_reader"] if r["reader"] == "99")
    assert late["overall"]["n"] == 8 and late["overall"]["sensitivity"]["value"] == 1.0
    assert res["regression"]["n"] == 8 * 90 and "99" not in res["mrmc"]["readers"]


def test_generalised_delong_covariance_matches_paired_delong():
    from dermadv.metrics import delong_covariance

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(25, int), np.zeros(30, int)]
    s = rng.normal(size=(3, 55)) + y * np.array([[1.0], [0.5], [1.5]])
    s[1, :10] = np.round(s[1, :10])  # some ties
    cases = [f"c{i}" for i in range(55)]
    scores = {r: dict(zip(cases, s[r], strict=True)) for r in range(3)}
    pos = [c for c, t in zip(cases, y, strict=True) if t]
    neg = [c for c, t in zip(cases, y, strict=True) if not t]
    aucs, cov = auc_covariance(scores, [(pos, neg, r) for r in range(3)])
    ref_aucs, ref_cov = delong_covariance(y, s)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    # disjoint case sets: independent estimates
    _, cov2 = auc_covariance(scores, [(pos[:12], neg[:15], 0), (pos[12:], neg[15:], 0)])
    assert cov2[0, 1] == 0.0 and cov2[0, 0] > 0


def test_mrmc_paired_design_and_input_checks():
    """Same 60 cases read in two modalities by 5 readers; a case effect shared by all readings makes
    the AUCs correlated (Cov1, Cov2, Cov3 > 0)."""
    rng = np.random.default_rng(7)
    case_effect = rng.normal(size=60)
    recs = []
    for rd in range(5):
        for c in range(60):
            truth = int(c < 30)
            for mod, shift in (("A", 2.0), ("B", 0.8)):
                recs.append(
                    {
                        "reader": rd,
                        "case": c,
                        "truth": truth,
                        "modality": mod,
                        "score": case_effect[c] + 0.7 * rng.normal() + truth * shift,
                    }
                )
    res = obuchowski_rockette(recs, ["A", "B"])
    assert res["p_value"] < 0.01 and res["comparisons"][0]["difference"] < 0
    vc = res["var_components"]
    assert vc["var"] > vc["cov1"] > 0 and vc["cov2"] > 0 and vc["cov3"] > 0
    assert res["notes"] == [] and res["n_cases"] == 60
    # the same data without modality differences: no effect
    same = [{**r, "modality": r["modality"]} for r in recs]
    for r in same:
        r["score"] = case_effect[r["case"]] + 0.7 * rng.normal() + r["truth"] * 1.2
    assert obuchowski_rockette(same, ["A", "B"])["p_value"] > 0.05
    with pytest.raises(ValueError, match="at least 2 readers"):
        obuchowski_rockette([r for r in recs if r["reader"] == 0], ["A", "B"])


def test_bad_answer_files_name_the_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(
        "reader_id,image,ground_truth,condition,answer,confidence\n1,a,melanoma,unmodified,naevus,9\n"
    )
    with pytest.raises(DataError, match="line 2: confidence 9 outside 1-5"):
        load_answers(p)
    p.write_text(
        "reader_id,image,ground_truth,condition,answer\n1,a,melanoma,unmodified,naevus\n"
        "1,a,melanoma,unmodified,melanoma\n"
    )
    with pytest.raises(DataError, match="answered image a twice"):
        load_answers(p)
    p.write_text("reader_id,image,answer\n")
    with pytest.raises(DataError, match="missing column"):
        load_answers(p)
    with pytest.raises(DataError):
        parse_band("high,low")
    assert parse_band("60,80") == (0.6, 0.8)
    with pytest.raises(DataError, match="not found"):
        analyze_file(tmp_path / "missing.csv")


def test_separated_regression_reports_infinite_bound_without_warnings():
    """One reader who calls everything naevus: correctness is perfectly predicted by the diagnosis; the
    odds-ratio CI runs to infinity, which is reported as inf, not as a numpy overflow warning."""
    import warnings

    from dermadv.readerstudy.analysis import logistic_regression

    rows = [
        {"reader": "1", "truth": truth, "condition": cond, "correct": int(truth == "naevus")}
        for truth in ("melanoma", "naevus")
        for cond in ("unmodified", "adversarial", "adversarial")
        for _ in range(3)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = logistic_regression(rows)
    # estimated (not refused), flagged as not converged / separated, and the melanoma odds ratio (every
    # melanoma missed) is ~0 with a Wald CI from 0 to inf
    assert "error" not in res, res.get("error")
    assert res["formula"] == "correct ~ melanoma + adversarial" and res["converged"] is False
    assert any("separation" in note for note in res["notes"]), res["notes"]
    mel = res["melanoma"]
    assert mel["odds_ratio"] < 1e-6 and mel["ci_low"] == 0.0 and mel["ci_high"] == float("inf")
    assert res["adversarial"]["ci_high"] == float("inf")
