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
from dermadv.readerstudy.analysis import (  # noqa: E402
    analyze,
    analyze_file,
    format_report,
    load_answers,
    load_model_scores,
    parse_band,
)
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


def issue_rows(tmp_path) -> list[dict]:
    """Three complete readers and one who answered 11 of 20 images (kept by --min-answers 10)."""
    path = simulate(tmp_path / "i.csv", effect=True, seed=8, n_readers=4, n_per=8)
    rows = load_answers(path)
    images = sorted({r["image"] for r in rows})[:20]
    rows = [r for r in rows if r["image"] in images]
    drop = set(images[::2][:9])
    return [r for r in rows if not (r["reader"] == "4" and r["image"] in drop)]


def test_incomplete_reader_is_refused_by_name_or_handled_as_asked(tmp_path):
    rows = issue_rows(tmp_path)
    assert sum(r["reader"] == "4" for r in rows) == 11
    res = analyze(rows)
    assert res["included_readers"] == ["1", "2", "3", "4"]
    err = res["mrmc"]["error"]
    assert err.startswith("incomplete design: reader 4 did not read 9 of 20 cases") and "--incomplete" in err
    assert res["mrmc"]["covariance"] == "jackknife"
    common = analyze(rows, incomplete="common-cases")["mrmc"]
    assert any("9 of 20 cases not read by every reader left out (27 readings)" in n for n in common["notes"])
    assert common["n_readings_per_reader"] == 11
    # 11 images left: the arms are small, which is said
    assert any("only" in w and "(< 10)" in w for w in common["warnings"])
    for v in common["per_modality"].values():
        assert 0.0 <= v["ci_low"] <= v["ci_high"] <= 1.0
    text = format_report(analyze(rows, incomplete="complete-readers"))
    assert "readers left out (did not read every case): reader 4" in text
    assert "jackknife covariances (the default" in text and "convention: Cov2 - Cov3" in text
    with pytest.raises(DataError, match="--covariance must be one of"):
        analyze(rows, covariance="bootstrap")


def test_model_vs_readers_in_the_analysis(tmp_path):
    rows = load_answers(simulate(tmp_path / "m.csv", effect=True, seed=9))
    truth = {r["image"]: r["truth"] for r in rows}
    rng = np.random.default_rng(0)
    scores = {i: float(rng.normal() + (3.0 if t == "melanoma" else 0.0)) for i, t in truth.items()}
    path = tmp_path / "model.csv"
    path.write_text("image,score\n" + "".join(f"{i},{s}\n" for i, s in scores.items()))
    assert load_model_scores(path) == pytest.approx(scores)
    res = analyze(rows, model_scores=load_model_scores(path))
    mvr = res["model_vs_readers"]
    assert set(mvr["by_modality"]) == {"unmodified", "adversarial"}
    adv = mvr["by_modality"]["adversarial"]
    # the model is not fooled by the adversarial images; the readers are
    assert adv["model_auc"] > 0.9 and adv["difference"] < 0 and adv["p_value"] < 0.01
    from dermadv.readerstudy.analysis import model_curves

    curves = model_curves(rows, scores)
    assert [c.label for c in curves] == ["model, unmodified", "model, adversarial (vs unmodified naevi)"]
    assert [int(c.y_true.sum()) for c in curves] == [30, 30] and [len(c.y_true) for c in curves] == [60, 60]
    assert "Model vs readers" in format_report(res)
    path.write_text("image,score\nx,high\n")
    with pytest.raises(DataError, match="line 2: score 'high' is not a number"):
        load_model_scores(path)


def test_figure_with_200_readers_stays_readable(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dermadv.readerstudy.analysis import _figure_layout, _reader_panel, per_reader, plot_readers

    rows = load_answers(simulate(tmp_path / "many.csv", effect=True, seed=10, n_readers=200, n_per=4))
    readers = per_reader(rows, min_answers=1)
    fig, axes, dense = _figure_layout(len(readers))
    assert dense and fig.get_figwidth() <= 24
    _reader_panel(axes[0], readers, "sensitivity", None, dense)
    labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert 20 <= len(labels) <= 50 and labels[0] == "1"
    plt.close(fig)
    png = tmp_path / "many.png"
    plot_readers({"per_reader": readers}, png)
    assert png.read_bytes()[:4] == b"\x89PNG"
