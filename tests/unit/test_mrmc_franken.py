"""A second published data set, one where Cov2 < Cov3: Franken et al. (1992), 2 modalities x 4 readers x
100 cases (33 normal, 67 abnormal), ratings 1-5. The OR analysis reproduces the OR-DBM MRMC 2.51 output
for it (RJafroc tests/testthat/goodValues361/Iowa/Franken1.txt) to the printed precision, which checks the
Cov2 - Cov3 truncation convention where it matters.

Data: RJafroc inst/MRMCRuns/FR/FR.lrc, transcribed; per reader, each token is one case's ratings in
modality 0 and 1 (normal cases first, then abnormal)."""

from __future__ import annotations

import pytest

pytest.importorskip("scipy")

from dermadv.readerstudy.mrmc import obuchowski_rockette  # noqa: E402
from mrmc_support import printed  # noqa: E402

FRANKEN = {
    0: (
        "33 13 24 23 21 21 25 44 11 12 43 21 11 22 42 22 11 23 11 22 42 23 32 22 21 22 42 32 22 22 22 54 33",
        "55 22 55 55 44 55 14 51 55 55 11 55 42 54 21 44 14 53 55 35 53 55 55 55 45 55 53 42 32 55 "
        "23 55 45 54 33 55 43 55 55 44 45 55 54 55 55 45 55 45 32 24 54 44 55 45 55 55 43 22 55 34 "
        "54 52 55 55 13 43 54",
    ),
    1: (
        "43 21 31 21 21 11 33 44 22 11 11 21 21 21 21 31 21 23 43 11 33 23 24 33 31 11 33 11 13 11 11 23 22",
        "44 42 44 44 44 44 43 34 34 44 31 44 42 44 11 34 31 44 43 44 44 44 44 44 44 34 44 23 32 44 "
        "21 44 44 41 43 43 44 44 43 43 43 44 44 44 44 43 43 34 44 13 14 43 43 44 43 44 34 34 44 21 "
        "44 43 44 44 22 43 34",
    ),
    2: (
        "33 11 22 22 22 12 54 44 22 13 32 22 11 33 32 24 22 43 12 22 12 22 22 24 22 22 21 12 22 32 22 24 22",
        "54 54 55 54 54 55 53 23 15 55 22 54 33 54 23 44 33 55 54 52 55 55 55 55 55 45 44 32 34 55 "
        "33 55 22 21 22 55 35 55 55 21 23 55 55 55 55 45 55 54 23 22 44 42 55 55 45 55 44 44 45 21 "
        "55 32 55 55 23 34 54",
    ),
    3: (
        "41 23 14 11 13 11 53 21 11 11 41 13 11 11 11 11 55 22 11 11 22 31 11 34 11 12 44 11 11 11 44 11 11",
        "45 34 55 55 55 55 55 15 44 35 11 55 44 55 11 25 41 55 55 12 54 55 55 55 55 55 55 13 22 55 "
        "11 55 44 44 41 55 21 55 55 11 44 55 55 55 55 41 54 45 11 24 22 11 55 55 55 55 52 23 54 11 "
        "45 51 55 55 11 43 43",
    ),
}


@pytest.fixture(scope="module")
def result() -> dict:
    records = []
    for reader, (normal, abnormal) in FRANKEN.items():
        tokens = normal.split() + abnormal.split()
        assert (len(normal.split()), len(abnormal.split())) == (33, 67)
        for case, tok in enumerate(tokens):
            for m in (0, 1):
                records.append(
                    {
                        "reader": reader,
                        "modality": str(m),
                        "case": case,
                        "truth": int(case >= 33),
                        "score": float(tok[m]),
                    }
                )
    return obuchowski_rockette(records, ["0", "1"], covariance="jackknife")


def test_aucs_and_variance_components(result):
    aucs = {
        "0": ["0.85345997", "0.86499322", "0.85730439", "0.81524197"],
        "1": ["0.84961556", "0.84350972", "0.84011759", "0.81433740"],
    }
    for m, values in aucs.items():
        for j, v in enumerate(values):
            printed(result["per_modality"][m]["reader_aucs"][str(j)], v)
    vc = result["var_components"]
    for key, ref in (
        ("var_r", "0.00003776"),
        ("var_tr", "-0.00071276"),
        ("cov1", "0.00079168"),
        ("cov2", "0.00048364"),
        ("cov3", "0.00051251"),
        ("var", "0.00152578"),
        ("ms_t", "0.00023565"),
        ("ms_r", "0.00068406"),
        ("ms_tr", "0.00005020"),
    ):
        printed(vc[key], ref)
    assert vc["cov2_lt_cov3"] is True
    dbm = result["dbm"]["var_components"]
    for key, ref in (("var_c", "0.05125091"), ("var_tc", "-0.00288715"), ("var_rc", "0.02791730")):
        printed(dbm[key], ref)
    printed(dbm["var_error"], "0.07629656")


def test_truncated_tests_match_or_dbm_mrmc(result):
    # random readers: error term MS(T*R) + r*max(Cov2 - Cov3, 0) = MS(T*R), ddf 3.00
    a = result["analyses"]["rrrc"]
    printed(a["f"], "4.69")
    printed(a["ddf"], "3.00")
    printed(a["p_value"], "0.1188")
    c = a["comparisons"][0]  # 1 - 0; published 0 - 1
    printed(-c["difference"], "0.01085")
    printed(c["se"], "0.00501")
    printed(-c["ci_high"], "-0.00509")
    printed(-c["ci_low"], "0.02680")
    # fixed readers: Var - Cov1 + (r-1)*max(Cov2 - Cov3, 0)
    f = result["analyses"]["frrc"]
    printed(f["chi2"], "0.32101")
    printed(f["p_value"], "0.5710")
    printed(f["comparisons"][0]["se"], "0.01916")
    printed(-f["comparisons"][0]["ci_high"], "-0.02670")
    printed(-f["comparisons"][0]["ci_low"], "0.04840")
    # MRMCaov's untruncated fixed-reader denominator, reported beside it
    vc = result["var_components"]
    raw = f["untruncated"]
    assert raw["denominator"] == pytest.approx(vc["var"] - vc["cov1"] + 3 * (vc["cov2"] - vc["cov3"]))
    assert raw["chi2"] > f["chi2"]
    d = result["dbm"]["analyses"]["rrrc"]
    assert d["f"] == pytest.approx(a["f"]) and d["ddf"] == pytest.approx(a["ddf"])


def test_single_modality_and_single_reader(result):
    for m, se, df, low, high in (
        ("0", "0.02440215", "70.12", "0.79908282", "0.89641696"),
        ("1", "0.02356642", "253.64", "0.79048429", "0.88330585"),
    ):
        pm = result["per_modality"][m]
        printed(pm["se"], se)
        printed(pm["df"], df)
        printed(pm["ci_low"], low)
        printed(pm["ci_high"], high)
    for m, se, low, high in (
        ("0", "0.02710939", "0.79461647", "0.90088331"),
        ("1", "0.02744860", "0.78309680", "0.89069334"),
    ):
        fr = result["per_modality"][m]["frrc"]
        printed(fr["se"], se)
        printed(fr["ci_low"], low)
        printed(fr["ci_high"], high)
    ref = [
        ("0", "0.00384", "0.04279", "0.9284"),
        ("1", "0.02148", "0.04007", "0.5919"),
        ("2", "0.01719", "0.03499", "0.6233"),
        ("3", "0.00090", "0.03481", "0.9793"),
    ]
    rows = {r["reader"]: r for r in result["analyses"]["frrc"]["per_reader"]}
    for reader, diff, se, p in ref:
        printed(-rows[reader]["difference"], diff)
        printed(rows[reader]["se"], se)
        printed(rows[reader]["p_value"], p)
