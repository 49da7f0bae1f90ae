"""MRMC on small hand-made data sets (no files): the jackknife against a brute-force leave-one-out, DBM =
OR, incomplete designs refused (naming readers and cases) or handled as asked with correct counts, AUC
intervals kept in [0, 1], few-case warnings, and the standalone model vs readers test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

pytest.importorskip("scipy")

from dermadv.readerstudy.mrmc import (  # noqa: E402
    jackknife_auc_covariance,
    model_vs_readers,
    obuchowski_rockette,
)


def paired(
    n_readers: int = 4, n_pos: int = 15, n_neg: int = 15, seed: int = 0, shift=(1.5, 0.8)
) -> list[dict]:
    """Every reader rates every case in modalities A and B (factorial)."""
    rng = np.random.default_rng(seed)
    n = n_pos + n_neg
    case_effect = rng.normal(size=n)
    recs = []
    for rd in range(n_readers):
        for c in range(n):
            truth = int(c < n_pos)
            for mod, s in zip(("A", "B"), shift, strict=True):
                score = round(case_effect[c] + 0.8 * rng.normal() + truth * s, 1)
                recs.append(
                    {"reader": f"r{rd}", "case": f"c{c:02d}", "truth": truth, "modality": mod, "score": score}
                )
    return recs


def test_jackknife_matches_brute_force_leave_one_out():
    recs = paired(n_readers=3)
    res = obuchowski_rockette(recs, ["A", "B"], covariance="jackknife")
    cases = sorted({r["case"] for r in recs})
    units = [(m, rd) for m in ("A", "B") for rd in ("r0", "r1", "r2")]
    loo = np.empty((len(units), len(cases)))
    for u, (m, rd) in enumerate(units):
        mine = [r for r in recs if r["modality"] == m and r["reader"] == rd]
        for k, c in enumerate(cases):
            kept = [r for r in mine if r["case"] != c]
            loo[u, k] = roc_auc_score([r["truth"] for r in kept], [r["score"] for r in kept])
    n = len(cases)
    centred = loo - loo.mean(axis=1, keepdims=True)
    cov = (n - 1) / n * centred @ centred.T
    var = np.mean(np.diag(cov))
    cov1 = np.mean([cov[j, 3 + j] for j in range(3)])
    assert res["var_components"]["var"] == pytest.approx(var, rel=1e-10)
    assert res["var_components"]["cov1"] == pytest.approx(cov1, rel=1e-10)
    # the closed form used by jackknife_auc_covariance, directly
    scores = {
        rd: {(r["modality"], r["case"]): r["score"] for r in recs if r["reader"] == rd} for rd in ("r0",)
    }
    pos = [("A", c) for c in cases if c < "c15"]
    neg = [("A", c) for c in cases if c >= "c15"]
    _, jcov, jloo, jcases = jackknife_auc_covariance(scores, [(pos, neg, "r0")], case_of=lambda k: k[1])
    assert jcases == cases
    np.testing.assert_allclose(jloo[0], loo[0], atol=1e-12)


def test_dbm_equals_or_with_jackknife_and_method_is_stated():
    res = obuchowski_rockette(paired(seed=3), ["A", "B"])
    dbm = res["dbm"]["analyses"]["rrrc"]
    assert dbm["f"] == pytest.approx(res["f"], rel=1e-9)
    assert dbm["ddf"] == pytest.approx(res["ddf"], rel=1e-9)
    assert dbm["p_value"] == pytest.approx(res["p_value"], rel=1e-9)
    assert res["covariance"] == "jackknife" and "Hillis" in res["method"]
    assert "truncated at 0" in res["cov2_cov3_convention"]
    assert obuchowski_rockette(paired(seed=3), ["A", "B"], covariance="delong")["covariance"] == "delong"


def issue_design() -> list[dict]:
    """The issue's case: three complete readers and one who read 11 of 20 readings (10 cases x 2
    modalities), so 9 readings of reader r3 are missing."""
    recs = paired(n_readers=4, n_pos=5, n_neg=5, seed=1)
    missing = {("A", "c00"), ("A", "c05"), ("A", "c01"), ("A", "c06")}
    missing |= {("B", "c02"), ("B", "c07"), ("B", "c03"), ("B", "c08"), ("B", "c04")}
    return [r for r in recs if not (r["reader"] == "r3" and (r["modality"], r["case"]) in missing)]


def test_incomplete_design_is_refused_naming_readers_and_cases():
    recs = issue_design()
    assert sum(r["reader"] == "r3" for r in recs) == 11
    with pytest.raises(ValueError) as err:
        obuchowski_rockette(recs, ["A", "B"])
    msg = str(err.value)
    assert "reader r3 did not read 9 of 20 cases" in msg
    assert "A/c00" in msg and "B/c08" in msg and "complete-readers (readers r0, r1, r2)" in msg


def test_incomplete_design_policies_say_what_they_did():
    recs = issue_design()
    common = obuchowski_rockette(recs, ["A", "B"], incomplete="common-cases")
    # 9 readings left out of 3 complete readers each: 27 readings, not 9
    assert any("9 of 20 cases not read by every reader left out (27 readings)" in n for n in common["notes"])
    assert common["n_readings_per_reader"] == 11 and common["design"] == "common-cases"
    full = obuchowski_rockette(recs, ["A", "B"], incomplete="complete-readers")
    assert full["readers"] == ["r0", "r1", "r2"] and any("11 readings unused" in n for n in full["notes"])
    with pytest.raises(ValueError, match="needs --covariance delong"):
        obuchowski_rockette(recs, ["A", "B"], incomplete="all-readings")
    own = obuchowski_rockette(recs, ["A", "B"], incomplete="all-readings", covariance="delong")
    assert own["readers"] == ["r0", "r1", "r2", "r3"] and own["n_readings_per_reader"] == 20
    assert own["design"] == "incomplete (own cases)" and 0 < own["p_value"] <= 1
    assert own["per_modality"]["B"]["reader_aucs"]["r3"] != full["per_modality"]["B"]["reader_aucs"]["r0"]


def test_split_plot_pairs_without_shared_cases_have_zero_covariance():
    """Readers r0, r1 read cases c00-c09 + c20-c29, r2, r3 the others: cross-group covariances are 0."""
    recs = paired(n_readers=4, n_pos=20, n_neg=20, seed=5)
    group = {"r0": 0, "r1": 0, "r2": 1, "r3": 1}
    recs = [r for r in recs if (int(r["case"][1:]) % 20 < 10) == (group[r["reader"]] == 0)]
    res = obuchowski_rockette(recs, ["A", "B"], incomplete="all-readings", covariance="delong")
    assert res["design"] == "incomplete (own cases)"
    assert all(v["auc"] > 0.5 for v in res["per_modality"].values())
    assert 0 < res["p_value"] <= 1 and np.isfinite(res["ddf"])


def test_auc_intervals_stay_in_unit_interval_and_clipping_is_reported():
    recs = paired(n_readers=3, n_pos=6, n_neg=6, seed=2, shift=(4.0, 3.5))
    res = obuchowski_rockette(recs, ["A", "B"])
    for m, v in res["per_modality"].items():
        assert 0.0 <= v["ci_low"] <= v["auc"] <= v["ci_high"] <= 1.0, (m, v)
    clipped = [v for v in res["per_modality"].values() if v.get("ci_clipped")]
    assert clipped and all(v["ci_unclipped"][1] > 1.0 and v["ci_high"] == 1.0 for v in clipped)
    assert any("clipped to [0, 1]" in n for n in res["notes"])
    for a in res["analyses"].values():
        assert all(-1.0 <= c["ci_low"] <= c["ci_high"] <= 1.0 for c in a["comparisons"])
    # 6 positives and 6 negatives per arm: warned
    assert any("only 6 positive case(s)" in w for w in res["warnings"])


def model_records(recs: list[dict], modality: str = "A") -> list[dict]:
    return [r for r in recs if r["modality"] == modality]


def test_model_identical_to_a_reader():
    recs = model_records(paired(n_readers=3, seed=4))
    model = {r["case"]: r["score"] for r in recs if r["reader"] == "r0"}
    res = model_vs_readers(recs, model, ["A"])["by_modality"]["A"]
    aucs = res["reader_aucs"]
    assert res["model_auc"] == aucs["r0"]
    expected = np.mean([aucs["r1"] - aucs["r0"], aucs["r2"] - aucs["r0"], 0.0])
    assert res["difference"] == pytest.approx(expected, abs=1e-12)
    assert 0 < res["p_value"] <= 1 and res["ci_low"] <= res["difference"] <= res["ci_high"]
    # every reader rates like the model: no difference, a degenerate test with p = 1, said so
    same = [{**r, "score": model[r["case"]]} for r in recs]
    out = model_vs_readers(same, model, ["A"])
    deg = out["by_modality"]["A"]
    assert deg["difference"] == 0 and deg["p_value"] == 1.0
    assert any("degenerate" in n for n in out["notes"])


def test_model_far_better_than_readers_gives_small_p():
    recs = model_records(paired(n_readers=5, n_pos=25, n_neg=25, seed=6, shift=(0.6, 0.6)))
    model = {r["case"]: (5.0 if r["truth"] else 0.0) + 0.01 * int(r["case"][1:]) for r in recs}
    res = model_vs_readers(recs, model, ["A"])
    a = res["by_modality"]["A"]
    assert a["model_auc"] == 1.0 and a["difference"] < -0.15
    assert a["p_value"] < 0.001 and a["ci_high"] < 0
    assert res["covariance"] == "jackknife" and "1T-RRRC" in res["method"]
    with pytest.raises(ValueError, match="model scores missing for 1 case"):
        model_vs_readers(recs, {k: v for k, v in model.items() if k != "c03"}, ["A"])


def test_cov2_below_cov3_convention():
    """With Cov2 < Cov3 the denominators use max(Cov2 - Cov3, 0) (OR-DBM MRMC / RJafroc); MRMCaov's
    untruncated fixed-reader test is reported beside it."""
    from dermadv.readerstudy.mrmc import or_analysis

    theta = np.array([[0.80, 0.85, 0.78], [0.84, 0.86, 0.83]])
    var, cov1, cov2, cov3 = 1e-3, 5e-4, 1e-4, 3e-4
    n_mod, n_rd = theta.shape
    cov = np.empty((6, 6))
    for u in range(6):
        for v in range(6):
            same_m, same_r = u // n_rd == v // n_rd, u % n_rd == v % n_rd
            cov[u, v] = var if same_m and same_r else cov1 if same_r else cov2 if same_m else cov3
    res = or_analysis(theta, cov, ["A", "B"])
    vc = res["var_components"]
    assert (vc["var"], vc["cov1"], vc["cov2"], vc["cov3"]) == pytest.approx((var, cov1, cov2, cov3))
    assert vc["cov2_lt_cov3"] is True
    ms_t, ms_tr = vc["ms_t"], vc["ms_tr"]
    rrrc, frrc = res["analyses"]["rrrc"], res["analyses"]["frrc"]
    assert rrrc["f"] == pytest.approx(ms_t / ms_tr)  # J * max(Cov2 - Cov3, 0) = 0
    assert rrrc["ddf"] == pytest.approx(2.0)  # D = MS(TR): ddf_H = (I-1)(J-1)
    assert frrc["chi2"] == pytest.approx(ms_t / (var - cov1))
    raw = frrc["untruncated"]
    assert raw["chi2"] == pytest.approx(ms_t / (var - cov1 + 2 * (cov2 - cov3)))
    assert raw["p_value"] < frrc["p_value"] and "MRMCaov" in raw["convention"]
    assert vc["var_tr"] == pytest.approx(ms_tr - var + cov1 + cov2 - cov3)  # not truncated
    assert any("Cov2 (0.0001) < Cov3 (0.0003)" in n for n in res["notes"])


def test_model_vs_readers_equals_the_dual_modality_orh_analysis():
    """RJafroc's 2T-RRRC (the model's ratings copied once per reader as a second modality, then the
    ordinary ORH analysis) gives the same F (= t^2), ddf and p as the single-test analysis."""
    recs = model_records(paired(n_readers=5, n_pos=20, n_neg=25, seed=11))
    rng = np.random.default_rng(3)
    truth = {r["case"]: r["truth"] for r in recs}
    model = {c: round(t + rng.normal(), 2) for c, t in truth.items()}
    one = model_vs_readers(recs, model, ["A"])["by_modality"]["A"]
    dual = [{**r, "modality": "readers"} for r in recs]
    readers = sorted({r["reader"] for r in recs})
    dual += [
        {"reader": rd, "case": c, "truth": truth[c], "modality": "model", "score": s}
        for rd in readers
        for c, s in model.items()
    ]
    two = obuchowski_rockette(dual, ["model", "readers"])
    assert two["f"] == pytest.approx(one["t"] ** 2, rel=1e-9)
    assert two["ddf"] == pytest.approx(one["ddf"], rel=1e-9)
    assert two["p_value"] == pytest.approx(one["p_value"], rel=1e-9)
    assert two["comparisons"][0]["difference"] == pytest.approx(one["difference"], abs=1e-12)
    assert one["p_value"] < 0.05  # the random-ish model is worse than these readers
