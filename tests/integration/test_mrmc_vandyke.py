"""The MRMC analysis reproduces the published OR-DBM MRMC / MRMCaov results for the Van Dyke et al. (1993)
data set ($DERMADV_DATA/mrmc/vandyke.csv; reference values in the README beside it), to the printed
precision: reader AUCs, OR variance components, the random-reader random-case test with Hillis ddf, the
fixed-reader and fixed-case analyses, and DBM."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from dermadv.readerstudy.mrmc import obuchowski_rockette  # noqa: E402
from mrmc_support import printed  # noqa: E402


@pytest.fixture(scope="module")
def result(vandyke_csv: Path) -> dict:
    with vandyke_csv.open(newline="") as fh:
        records = [
            {
                "reader": int(r["reader"]),
                "modality": r["modality"],
                "case": int(r["case"]),
                "truth": int(r["truth"]),
                "score": float(r["rating"]),
            }
            for r in csv.DictReader(fh)
        ]
    assert len(records) == 1140
    return obuchowski_rockette(records, ["0", "1"], covariance="jackknife")


def test_reader_aucs_and_means(result):
    ref = {
        "0": ["0.91964573", "0.85877617", "0.90386473", "0.97310789", "0.82979066"],
        "1": ["0.94782609", "0.90531401", "0.92173913", "0.99935588", "0.92995169"],
    }
    for m, values in ref.items():
        got = result["per_modality"][m]["reader_aucs"]
        for j, v in enumerate(values):
            printed(got[str(j)], v)
    printed(result["per_modality"]["0"]["auc"], "0.89703704")
    printed(result["per_modality"]["1"]["auc"], "0.94083736")
    comp = result["comparisons"][0]
    assert comp["modalities"] == ["1", "0"]
    printed(-comp["difference"], "-0.04380032")  # published as 0 - 1
    assert result["n_cases"] == 114 and result["design"] == "factorial"


def test_or_variance_components(result):
    vc = result["var_components"]
    for key, ref in (
        ("var_r", "0.0015349993"),
        ("var_tr", "0.0002004025"),
        ("cov1", "0.0003466137"),
        ("cov2", "0.0003440748"),
        ("cov3", "0.0002390284"),
        ("var", "0.0008022883"),
    ):
        printed(vc[key], ref)
    assert vc["cov2_lt_cov3"] is False
    assert "jackknife" in result["covariance_method"] and result["covariance"] == "jackknife"


def test_random_readers_random_cases(result):
    printed(result["f"], "4.456319")
    assert result["df1"] == 1
    printed(result["ddf"], "15.25967")
    printed(result["p_value"], "0.05166569")
    comp = result["comparisons"][0]  # 1 - 0: the published CI of 0 - 1 mirrored
    printed(-comp["ci_high"], "-0.0879595")
    printed(-comp["ci_low"], "0.0003589")
    assert result["analyses"]["rrrc"]["f"] == result["f"]


def test_fixed_readers_random_cases(result):
    a = result["analyses"]["frrc"]
    printed(a["chi2"], "5.475953")
    assert a["df1"] == 1
    printed(a["p_value"], "0.01927984")
    comp = a["comparisons"][0]
    printed(-comp["ci_high"], "-0.08048591")
    printed(-comp["ci_low"], "-0.00711473")


def test_random_readers_fixed_cases(result):
    a = result["analyses"]["rrfc"]
    printed(a["f"], "8.704")
    assert (a["df1"], a["ddf"]) == (1, 4.0)
    printed(a["p_value"], "0.04195875")
    comp = a["comparisons"][0]
    printed(-comp["ci_high"], "-0.08502022")
    printed(-comp["ci_low"], "-0.00258042")


def test_dbm_matches_published_and_or(result):
    a = result["dbm"]["analyses"]["rrrc"]
    printed(a["f"], "4.4563187")
    printed(a["ddf"], "15.259675")
    printed(a["p_value"], "0.051665686")
    # DBM's reader variance component equals OR's (Hillis et al. 2005)
    assert result["dbm"]["var_components"]["var_tr"] == pytest.approx(result["var_components"]["var_tr"])


def test_delong_covariance_is_close_but_not_the_published_method(vandyke_csv: Path):
    with vandyke_csv.open(newline="") as fh:
        records = [
            {
                "reader": r["reader"],
                "modality": r["modality"],
                "case": r["case"],
                "truth": int(r["truth"]),
                "score": float(r["rating"]),
            }
            for r in csv.DictReader(fh)
        ]
    res = obuchowski_rockette(records, ["0", "1"], covariance="delong")
    assert res["covariance"] == "delong"
    assert res["f"] == pytest.approx(4.485, abs=5e-4) and res["ddf"] == pytest.approx(15.07, abs=5e-3)
    assert res["p_value"] == pytest.approx(0.0512, abs=5e-5)


# The rest of the OR-DBM MRMC 2.51 output for this data set (RJafroc
# tests/testthat/goodValues361/Iowa/VanDyke.txt), to its printed precision.


def test_mean_squares_and_dbm_variance_components(result):
    vc = result["var_components"]
    printed(vc["ms_t"], "0.00479617")
    printed(vc["ms_r"], "0.00383620")
    printed(vc["ms_tr"], "0.00055103")
    printed(result["per_modality"]["0"]["ms_r"], "0.00308263")
    printed(result["per_modality"]["1"]["ms_r"], "0.00130460")
    dbm = result["dbm"]["var_components"]
    for key, ref in (
        ("var_r", "0.00153500"),
        ("var_c", "0.02724923"),
        ("var_tr", "0.00020040"),
        ("var_tc", "0.01197530"),
        ("var_rc", "0.01226473"),
        ("var_error", "0.03997160"),
    ):
        printed(dbm[key], ref)
    printed(result["analyses"]["rrrc"]["comparisons"][0]["se"], "0.02075")


def test_single_modality_intervals(result):
    pm0, pm1 = result["per_modality"]["0"], result["per_modality"]["1"]
    # random readers, random cases (Hillis ddf_H_single)
    for pm, se, df, low, high, cov2 in (
        (pm0, "0.03317360", "12.74", "0.82522360", "0.96885048", "0.00048396"),
        (pm1, "0.02156637", "12.71", "0.89413783", "0.98753689", "0.00020419"),
    ):
        printed(pm["se"], se)
        printed(pm["df"], df)
        printed(pm["ci_low"], low)
        printed(pm["ci_high"], high)
        printed(pm["cov2"], cov2)
    # fixed readers
    for pm, se, low, high, var in (
        (pm0, "0.02428971", "0.84943008", "0.94464399", "0.00101410"),
        (pm1, "0.01677632", "0.90795637", "0.97371835", "0.00059047"),
    ):
        printed(pm["frrc"]["se"], se)
        printed(pm["frrc"]["ci_low"], low)
        printed(pm["frrc"]["ci_high"], high)
        printed(pm["var"], var)
    # fixed cases
    for pm, se, low, high in (
        (pm0, "0.02482994", "0.82809808", "0.96597599"),
        (pm1, "0.01615303", "0.89598936", "0.98568536"),
    ):
        assert pm["rrfc"]["df"] == 4
        printed(pm["rrfc"]["se"], se)
        printed(pm["rrfc"]["ci_low"], low)
        printed(pm["rrfc"]["ci_high"], high)


def test_fixed_readers_single_reader_tests(result):
    ref = [  # reader, difference (0 - 1), StdErr, p, CI
        ("0", "-0.02818", "0.02551", "0.2693", "-0.07818", "0.02182"),
        ("1", "-0.04654", "0.02630", "0.0768", "-0.09809", "0.00501"),
        ("2", "-0.01787", "0.03121", "0.5668", "-0.07904", "0.04330"),
        ("3", "-0.02625", "0.01729", "0.1290", "-0.06014", "0.00764"),
        ("4", "-0.10016", "0.04406", "0.0230", "-0.18651", "-0.01381"),
    ]
    rows = {r["reader"]: r for r in result["analyses"]["frrc"]["per_reader"]}
    for reader, diff, se, p, low, high in ref:
        r = rows[reader]
        assert r["modalities"] == ["1", "0"]
        printed(-r["difference"], diff)
        printed(r["se"], se)
        printed(r["p_value"], p)
        printed(-r["ci_high"], low)
        printed(-r["ci_low"], high)
