"""Robustness statistics: Clopper-Pearson against the beta-quantile closed form and its exact coverage,
the stopping rule, balanced error against scikit-learn, and the lesion bootstraps against naive loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binom
from sklearn.metrics import balanced_accuracy_score

from dermadv.robustness.stats import (
    balanced_error,
    clopper_pearson,
    lesion_bootstrap,
    lesion_bootstrap_ci,
    paired_lesion_bootstrap,
    settled,
)


# ----- Clopper-Pearson ----------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (1, 1), (17, 250)])
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_clopper_pearson_is_the_beta_quantile_interval(k: int, n: int, confidence: float) -> None:
    a = 1 - confidence
    low = 0.0 if k == 0 else beta.ppf(a / 2, k, n - k + 1)
    high = 1.0 if k == n else beta.ppf(1 - a / 2, k + 1, n - k)
    assert clopper_pearson(k, n, confidence) == pytest.approx((low, high), abs=1e-9)


def test_clopper_pearson_closed_forms_at_zero_and_empty() -> None:
    # k = 0: the upper bound solves (1 - p)^n = alpha / 2
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-9)
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_clopper_pearson_coverage_is_at_least_nominal() -> None:
    n = 20
    intervals = [clopper_pearson(k, n) for k in range(n + 1)]
    for p in (0.02, 0.1, 0.3, 0.5, 0.77):
        coverage = sum(binom.pmf(k, n, p) for k, (lo, hi) in enumerate(intervals) if lo <= p <= hi)
        assert coverage >= 0.95


@pytest.mark.parametrize(
    ("k", "n", "confidence"), [(-1, 10, 0.95), (11, 10, 0.95), (1.5, 10, 0.95), (1, 10, 1.0), (True, 3, 0.9)]
)
def test_clopper_pearson_rejects_bad_input(k: object, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        clopper_pearson(k, n, confidence)  # type: ignore[arg-type]


# ----- stopping rule ------------------------------------------------------------------------------
def test_settled_below_above_and_undecided() -> None:
    # 0 flips in 400: upper bound 1 - 0.025^(1/400) = 0.0092 < 1%
    assert settled(0, 400, 0.01, 0.5) == "below"
    # 90 of 100: lower bound 0.824 > 0.8
    assert clopper_pearson(90, 100)[0] > 0.8
    assert settled(90, 100, 0.01, 0.8) == "above"
    assert settled(5, 100, 0.01, 0.8) is None
    assert settled(0, 0, 0.01, 0.8) is None


def test_settled_looks_widen_the_interval_bonferroni() -> None:
    # ten looks: each at confidence 0.995; upper bound 1 - 0.0025^(1/400) = 0.0149 is no longer < 1%
    assert clopper_pearson(0, 400, 0.995)[1] == pytest.approx(1 - 0.0025 ** (1 / 400), rel=1e-9)
    assert settled(0, 400, 0.01, 0.5, looks=10) is None
    assert settled(0, 700, 0.01, 0.5, looks=10) == "below"


@pytest.mark.parametrize(
    ("low", "high", "looks"), [(0.5, 0.1, 1), (-0.1, 0.5, 1), (0.1, 1.5, 1), (0.1, 0.5, 0)]
)
def test_settled_rejects_bad_thresholds(low: float, high: float, looks: int) -> None:
    with pytest.raises(ValueError):
        settled(1, 10, low, high, looks=looks)


# ----- balanced error -----------------------------------------------------------------------------
def test_balanced_error_by_hand_and_against_sklearn() -> None:
    # sensitivity 3/4, specificity 1/2: BCE = 1 - (0.75 + 0.5) / 2 = 0.375
    assert balanced_error([1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 1]) == pytest.approx(0.375)
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert balanced_error(y, p) == pytest.approx(1 - balanced_accuracy_score(y, p))


def test_balanced_error_needs_both_classes_and_labels() -> None:
    with pytest.raises(ValueError, match="both classes"):
        balanced_error([1, 1], [1, 0])
    with pytest.raises(ValueError, match=r"y_pred\[1\] = 0.7"):
        balanced_error([1, 0], [1, 0.7])
    with pytest.raises(ValueError, match="same length"):
        balanced_error([1, 0], [1, 0, 1])


# ----- lesion bootstrap ---------------------------------------------------------------------------
def _lesions(n_lesions: int, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image flip indicators strongly correlated within lesions."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 2.0, n_lesions)
    groups = np.repeat(np.arange(n_lesions), per)
    values = (rng.random(n_lesions * per) < p[groups]).astype(float)
    return values, groups


def test_lesion_bootstrap_is_deterministic_and_estimates_the_mean() -> None:
    values, groups = _lesions(40, 4)
    a = lesion_bootstrap_ci(values, groups, seed=5)
    assert a == lesion_bootstrap_ci(values, groups, seed=5)
    assert a != lesion_bootstrap_ci(values, groups, seed=6)
    assert a[0] == pytest.approx(values.mean())
    assert a[1] < a[0] < a[2]


def test_vectorised_mean_matches_a_materialised_resample() -> None:
    # a callable statistic is evaluated on the materialised resample of the same draws
    values, groups = _lesions(30, 3, seed=1)
    fast = lesion_bootstrap_ci(values, groups, np.mean, n_boot=500, seed=2)
    slow = lesion_bootstrap_ci(values, groups, lambda v: float(np.mean(v)), n_boot=500, seed=2)
    assert fast == pytest.approx(slow, abs=1e-12)


def test_identical_images_of_a_lesion_add_no_information() -> None:
    # five copies of each lesion's value: the cluster bootstrap equals the one-image-per-lesion bootstrap,
    # while resampling images as if independent gives a much narrower (wrong) interval
    rng = np.random.default_rng(4)
    per_lesion = rng.random(50)
    values, groups = np.repeat(per_lesion, 5), np.repeat(np.arange(50), 5)
    cluster = lesion_bootstrap_ci(values, groups, seed=0)
    single = lesion_bootstrap_ci(per_lesion, np.arange(50), seed=0)
    assert cluster == pytest.approx(single, abs=1e-12)
    naive = lesion_bootstrap_ci(values, np.arange(250), seed=0)
    assert (naive[2] - naive[1]) < 0.6 * (cluster[2] - cluster[1])


def test_independent_images_give_the_normal_theory_width() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 1.0, 400)
    _, lo, hi = lesion_bootstrap_ci(x, np.arange(400), n_boot=4000, seed=1)
    expected = 2 * 1.959964 * x.std(ddof=1) / math.sqrt(400)
    assert hi - lo == pytest.approx(expected, rel=0.1)


def test_weights_count_every_lesion_once() -> None:
    values = np.array([1.0, 1.0, 1.0, 0.0, 0.0])  # lesion a: three images, b: two
    groups = np.array(["a", "a", "a", "b", "b"])
    sizes = np.array([3, 3, 3, 2, 2])
    res = lesion_bootstrap(values, groups, weights=1 / sizes, n_boot=200)
    assert res["estimate"] == pytest.approx(0.5)  # mean of lesion means, not 3/5
    assert res["n_lesions"] == 2 and res["n_images"] == 5 and res["n_undefined"] == 0
    assert res["ci"] == (0.0, 1.0)  # two lesions: a replicate is aa, ab/ba or bb


def test_generic_statistic_and_undefined_replicates() -> None:
    values, groups = _lesions(20, 2, seed=9)
    med = lesion_bootstrap(values, groups, np.median, n_boot=100)
    assert med["estimate"] == float(np.median(values)) and med["n_undefined"] == 0
    total = values.sum()
    # a statistic that is undefined on some resamples: those replicates are dropped and counted
    res = lesion_bootstrap(
        values, groups, lambda v: float("nan") if v.sum() > total else v.mean(), n_boot=300
    )
    assert 50 < res["n_undefined"] < 250  # about half the resamples hold more flips than the sample


def test_lesion_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one lesion id per image"):
        lesion_bootstrap_ci([1.0, 2.0], [0])
    with pytest.raises(ValueError, match="NaN"):
        lesion_bootstrap_ci([1.0, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="weights apply to the mean"):
        lesion_bootstrap_ci([1.0, 2.0], [0, 1], np.median, weights=[1, 1])
    with pytest.raises(ValueError, match="weights"):
        lesion_bootstrap_ci([1.0, 2.0], [0, 1], weights=[1, -1])
    with pytest.raises(ValueError, match="n_boot"):
        lesion_bootstrap_ci([1.0, 2.0], [0, 1], n_boot=0)


# ----- paired lesion bootstrap --------------------------------------------------------------------
def _paired_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_lesions, per = 40, 3
    groups = np.repeat(np.arange(n_lesions), per)
    y = np.repeat(rng.integers(0, 2, n_lesions), per)
    clean = np.where(rng.random(len(y)) < 0.85, y, 1 - y)
    perturbed = np.where(rng.random(len(y)) < 0.2, 1 - clean, clean)  # the perturbation flips 20%
    return y, clean, perturbed, groups


def _naive_paired(y, clean, pert, groups, metric, n_boot, seed):  # noqa: ANN001, ANN202
    """Loop over replicates, drawing lesion ids with replacement (its own random stream)."""

    def value(t: np.ndarray, p: np.ndarray) -> float:
        pos, neg = t == 1, t == 0
        if metric == "accuracy":
            return float((t == p).mean())
        sens = (p[pos] == 1).mean() if pos.any() else math.nan
        spec = (p[neg] == 0).mean() if neg.any() else math.nan
        return {"sensitivity": sens, "specificity": spec, "balanced_error": 1 - (sens + spec) / 2}[metric]

    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in ids}
    diffs = []
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.choice(ids, size=len(ids), replace=True)])
        d = value(y[idx], pert[idx]) - value(y[idx], clean[idx])
        if not math.isnan(d):
            diffs.append(d)
    return np.quantile(diffs, [0.025, 0.975])


@pytest.mark.parametrize("metric", ["accuracy", "sensitivity", "specificity", "balanced_error"])
def test_paired_bootstrap_matches_a_naive_loop(metric: str) -> None:
    y, clean, pert, groups = _paired_case()
    res = paired_lesion_bootstrap(y, clean, pert, groups, metric, n_boot=3000, seed=1)
    naive = _naive_paired(y, clean, pert, groups, metric, 3000, 99)
    assert res["ci"] == pytest.approx(tuple(naive), abs=0.025)  # Monte Carlo error of two bootstraps
    assert res["difference"] == pytest.approx(res["perturbed"] - res["clean"])
    assert res["ci"][0] <= res["difference"] <= res["ci"][1]
    assert res["n_lesions"] == 40 and res["n_images"] == 120 and res["metric"] == metric


def test_paired_bootstrap_values_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    clean = np.array([1, 1, 0, 0, 1, 1])  # 5/6 correct; sens 1, spec 2/3
    pert = np.array([1, 0, 0, 1, 1, 1])  # 3/6 correct; sens 2/3, spec 1/3
    groups = np.array([0, 0, 1, 1, 2, 2])
    acc = paired_lesion_bootstrap(y, clean, pert, groups, "accuracy", n_boot=200)
    assert (acc["clean"], acc["perturbed"]) == pytest.approx((5 / 6, 1 / 2))
    assert acc["difference"] == pytest.approx(-1 / 3)
    bce = paired_lesion_bootstrap(y, clean, pert, groups, "balanced_error", n_boot=200)
    assert bce["clean"] == pytest.approx(1 - (1 + 2 / 3) / 2)
    assert bce["perturbed"] == pytest.approx(1 - (2 / 3 + 1 / 3) / 2)
    same = paired_lesion_bootstrap(y, clean, clean, groups, "sensitivity", n_boot=200)
    assert same["difference"] == 0.0 and same["ci"] == (0.0, 0.0)


def test_paired_bootstrap_counts_undefined_replicates() -> None:
    # one melanoma lesion among ten: a replicate misses it with probability 0.9^10 = 0.35
    groups = np.repeat(np.arange(10), 2)
    y = (groups == 0).astype(int)
    clean, pert = y.copy(), y.copy()
    pert[0] = 0
    res = paired_lesion_bootstrap(y, clean, pert, groups, "sensitivity", n_boot=2000, seed=0)
    assert res["n_undefined"] == pytest.approx(2000 * 0.9**10, rel=0.15)
    assert res["difference"] == pytest.approx(-0.5)
    assert paired_lesion_bootstrap(y, clean, pert, groups, "accuracy")["n_undefined"] == 0
    with pytest.raises(ValueError, match="sensitivity is undefined"):
        paired_lesion_bootstrap(np.zeros(4), [0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 2, 3], "sensitivity")
    with pytest.raises(ValueError, match="unknown metric"):
        paired_lesion_bootstrap(y, clean, pert, groups, "auc")


def test_clopper_pearson_equals_scipys_exact_binomtest_interval() -> None:
    from scipy.stats import binomtest

    for n in (1, 2, 7, 16, 100, 257):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for conf in (0.9, 0.95, 0.99):
                ref = binomtest(k, n).proportion_ci(confidence_level=conf, method="exact")
                low, high = clopper_pearson(k, n, conf)
                assert low == pytest.approx(ref.low, abs=1e-9) and high == pytest.approx(ref.high, abs=1e-9)


def test_paired_correctness_bootstrap_is_the_paired_bootstrap_of_shares() -> None:
    from dermadv.robustness.stats import paired_correctness_bootstrap

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    clean, pert = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    groups = np.arange(40) // 2
    for metric in ("accuracy", "sensitivity", "specificity", "balanced_error"):
        calls = paired_lesion_bootstrap(y, clean, pert, groups, metric, n_boot=300, seed=5)
        shares = paired_correctness_bootstrap(
            y, (clean == y).astype(float), (pert == y).astype(float), groups, metric, n_boot=300, seed=5
        )
        assert calls == shares  # 0/1 correctness is the same computation, replicate for replicate
    # fractional shares: sensitivity is the mean share over the melanomas
    share = rng.uniform(0, 1, 40)
    res = paired_correctness_bootstrap(y, np.ones(40), share, groups, "sensitivity", n_boot=200)
    assert res["perturbed"] == pytest.approx(share[y == 1].mean())
    assert res["difference"] == pytest.approx(share[y == 1].mean() - 1)
    assert res["ci"][0] <= res["difference"] <= res["ci"][1]
    with pytest.raises(ValueError, match=r"correct_perturbed must hold shares of correct calls in \[0, 1\]"):
        paired_correctness_bootstrap(y, np.ones(40), share + 1, groups, "accuracy")
