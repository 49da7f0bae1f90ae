"""Metrics against scikit-learn, DeLong against a naive structural-components computation and a
published worked example, Wilson against its closed form and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score, roc_auc_score

from dermadv.metrics import (
    binary_metrics,
    bootstrap_ci,
    delong_auc_ci,
    delong_covariance,
    delong_test,
    format_metrics_table,
    melanoma_score,
    wilson_ci,
)
from dermadv.models.base import Classifier
from dermadv.synthetic import make_lesion_image


def naive_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) written directly from the definition with explicit loops."""

    def psi(a: float, b: float) -> float:
        return 1.0 if a > b else 0.5 if a == b else 0.0

    pos = [i for i in range(len(y)) if y[i] == 1]
    neg = [j for j in range(len(y)) if y[j] == 0]
    m, n, k = len(pos), len(neg), len(scores)
    v10 = [[sum(psi(s[i], s[j]) for j in neg) / n for i in pos] for s in scores]
    v01 = [[sum(psi(s[i], s[j]) for i in pos) / m for j in neg] for s in scores]
    aucs = np.array([sum(row) / m for row in v10])
    cov = np.zeros((k, k))
    for r in range(k):
        for t in range(k):
            s10 = sum((v10[r][i] - aucs[r]) * (v10[t][i] - aucs[t]) for i in range(m)) / (m - 1)
            s01 = sum((v01[r][j] - aucs[r]) * (v01[t][j] - aucs[t]) for j in range(n)) / (n - 1)
            cov[r, t] = s10 / m + s01 / n
    return aucs, cov


def lesion_darkness_scores(n: int = 100, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """An image-based (if weak) predictor on synthetic lesions (``dermadv.synthetic``), about 30 %
    melanoma: darkness of the image centre. Continuous, so tie-free like a real model's score."""
    y = (np.random.default_rng(seed).random(n) < 0.3).astype(int)
    s = []
    for i, mel in enumerate(y):
        img = make_lesion_image(np.random.default_rng([seed, i]), 64, bool(mel))
        centre = img[16:48, 16:48].astype(np.float64)
        s.append(1.0 - centre.mean() / 255.0)
    return y, np.array(s)


def check_against_sklearn(y: np.ndarray, s: np.ndarray, threshold: float) -> None:
    m = binary_metrics(y, s, threshold=threshold)
    pred = (s >= threshold).astype(int)
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["sensitivity"]["value"] == pytest.approx(recall_score(y, pred, pos_label=1), abs=1e-12)
    assert m["specificity"]["value"] == pytest.approx(recall_score(y, pred, pos_label=0), abs=1e-12)
    assert m["auc"]["value"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert m["confusion"] == {"tp": tp, "fn": fn, "fp": fp, "tn": tn}
    assert m["n"] == len(y) and m["n_melanoma"] == int(y.sum()) and m["threshold"] == threshold
    for key in ("accuracy", "sensitivity", "specificity", "auc"):
        r = m[key]
        assert 0.0 <= r["ci_low"] <= r["value"] <= r["ci_high"] <= 1.0, (key, r)
        assert r["method"]


def test_matches_sklearn_on_real_predictions() -> None:
    y, s = lesion_darkness_scores()
    assert 10 < y.sum() < len(y) - 10 and len(np.unique(s)) == len(s)
    thr = float(np.median(s))
    check_against_sklearn(y, s, thr)
    # The naive loops agree on the variance of this image-derived, tie-free score too.
    aucs, cov = naive_delong(y, [s])
    r = delong_auc_ci(y, s)
    assert r["variance"] == pytest.approx(cov[0, 0], rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_predictions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 300))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.random(n) + 0.3 * y
    if seed % 2:
        s = np.round(s, 1)  # many ties
    check_against_sklearn(y, s, threshold=[0.5, 0.3, 0.7, 0.5, 0.0][seed])


@pytest.mark.parametrize("seed", range(4))
def test_delong_covariance_equals_naive_structural_components(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 60
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s1 = rng.normal(size=n) + y
    s2 = np.round(0.5 * s1 + rng.normal(size=n), 1)  # correlated, with ties
    aucs, cov = delong_covariance(y, np.vstack([s1, s2]))
    naive_aucs, naive_cov = naive_delong(y, [s1, s2])
    np.testing.assert_allclose(aucs, naive_aucs, rtol=1e-12)
    np.testing.assert_allclose(cov, naive_cov, rtol=1e-10, atol=1e-15)
    t = delong_test(y, s1, s2)
    var = naive_cov[0, 0] + naive_cov[1, 1] - 2 * naive_cov[0, 1]
    assert t["z"] == pytest.approx((naive_aucs[0] - naive_aucs[1]) / math.sqrt(var), rel=1e-9)
    assert 0 <= t["p_value"] <= 1


def test_delong_hanley_mcneil_worked_example() -> None:
    """Hanley & McNeil (1982, Radiology 143:29, Table 1) CT ratings: 58 normal, 51 abnormal on a 5-point
    scale; published AUC 0.893 and SE 0.032 (their exponential approximation, which the exact
    DeLong SE must be close to).
    """
    normal = [33, 6, 6, 11, 2]
    abnormal = [3, 2, 2, 11, 33]
    s = np.concatenate([np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)])
    y = np.concatenate([np.zeros(58, int), np.ones(51, int)])
    r = delong_auc_ci(y, s)
    assert r["value"] == pytest.approx(0.8932, abs=5e-4)
    _, cov = naive_delong(y, [s])
    assert r["variance"] == pytest.approx(cov[0, 0], rel=1e-12)
    assert r["se"] == pytest.approx(0.032, abs=0.002)
    assert r["ci_low"] == pytest.approx(r["value"] - 1.959964 * r["se"], abs=1e-6)


def test_delong_test_identical_and_clear_difference() -> None:
    rng = np.random.default_rng(7)
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    good = y + rng.normal(scale=0.5, size=100)
    noise = rng.normal(size=100)
    assert delong_test(y, good, good)["p_value"] == 1.0
    t = delong_test(y, good, noise)
    assert t["auc1"] > t["auc2"] and t["p_value"] < 1e-4


def test_auc_ci_clipped_and_perfect_separation() -> None:
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    s = np.r_[np.linspace(0, 0.4, 10), np.linspace(0.6, 1, 10)]
    r = delong_auc_ci(y, s)
    assert r["value"] == 1.0 and r["ci_high"] == 1.0 and r["ci_low"] == 1.0  # DeLong variance is 0 here
    assert "degenerate" in r["note"]
    s2 = s.copy()
    s2[0] = 0.95  # one negative scored above most positives
    r2 = delong_auc_ci(y, s2)
    assert r2["ci_high"] == 1.0 and r2["ci_low"] < r2["value"] < 1.0
    assert "note" not in r2


def test_wilson_closed_form_and_statsmodels() -> None:
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 10), (10, 10), (7, 20), (1, 3), (181, 200)]:
        lo, hi = wilson_ci(k, n)
        slo, shi = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert lo == pytest.approx(slo, abs=1e-12) and hi == pytest.approx(shi, abs=1e-12)
    # Wilson (1927) worked value: 0 of 10 -> upper bound z^2 / (n + z^2).
    z2 = 1.959963984540054**2
    assert wilson_ci(0, 10)[1] == pytest.approx(z2 / (10 + z2), rel=1e-12)
    with pytest.raises(ValueError, match="n must be positive"):
        wilson_ci(0, 0)
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_ci(5, 3)


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], "all 3 cases are positive"),
        ([0, 0], [0.2, 0.5], "all 2 cases are negative"),
        ([0, 1, 1], [0.2, float("nan"), 0.9], "NaN or infinite value.*index 1"),
        ([0, 1, 1], [0.2, 0.5], "3 entries but score has 2"),
        ([0, 2, 1], [0.2, 0.5, 0.1], r"y_true\[1\] = 2"),
        ([], [], "empty"),
        ([[0, 1]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_degenerate_inputs_raise_clear_errors(y: list, s: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binary_metrics(y, s)


def test_bootstrap_ci_brackets_auc() -> None:
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    s = y + rng.normal(size=80)
    b = bootstrap_ci(y, s, roc_auc_score, n_resamples=300, seed=1)
    d = delong_auc_ci(y, s)
    assert b["ci_low"] < d["value"] < b["ci_high"]
    assert abs((b["ci_high"] - b["ci_low"]) - (d["ci_high"] - d["ci_low"])) < 0.08  # similar widths


class _ThreeClass(Classifier):
    classes = ("mel", "nv", "bkl")

    def _predict(self, images, metadata):  # pragma: no cover - not called
        raise NotImplementedError


def test_melanoma_score_uses_groups_and_guards_zero() -> None:
    model = _ThreeClass()
    probs = np.array([[0.6, 0.2, 0.2], [0.0, 0.0, 1.0], [0.1, 0.3, 0.6]])
    np.testing.assert_allclose(melanoma_score(model, probs), [0.75, 0.5, 0.25])
    with pytest.raises(ValueError, match="N x 3"):
        melanoma_score(model, probs[:, :2])


def test_table_mentions_all_metrics() -> None:
    y = np.r_[np.zeros(5, int), np.ones(5, int)]
    text = format_metrics_table(binary_metrics(y, np.linspace(0, 1, 10)))
    for word in ("auc", "accuracy", "sensitivity", "specificity", "true melanoma", "n = 10"):
        assert word in text
    # Perfect separation gives the degenerate DeLong interval [1, 1]: the table must say so.
    assert "degenerate" in text
    s = np.linspace(0, 1, 10)
    s[0] = 0.95
    assert "degenerate" not in format_metrics_table(binary_metrics(y, s))
