"""Binary diagnostic metrics with honest 95% confidence intervals.

- Proportions (accuracy, sensitivity, specificity): Wilson score interval (Wilson 1927), which
  keeps its coverage near 95% for small n and proportions near 0 or 1, unlike the Wald interval.
- ROC AUC: DeLong, DeLong & Clarke-Pearson (1988) variance, computed with the fast midrank
  algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389), O(n log n). The interval is
  ``auc +- z * se`` clipped to [0, 1]. ``delong_test`` compares two correlated AUCs (same cases).

Convention: ``y_true`` is 1 for melanoma (positive) and 0 for benign; a score is "higher means more
melanoma"; a case is called melanoma iff ``score >= threshold``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from dermadv.models.base import Classifier

#: Two-sided 95%.
DEFAULT_ALPHA = 0.05

WILSON_METHOD = "Wilson score interval"
DELONG_METHOD = "DeLong (Sun & Xu 2014 fast midrank algorithm), normal approximation, clipped to [0, 1]"


def _z(alpha: float) -> float:
    from scipy.stats import norm

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(norm.ppf(1 - alpha / 2))


# ----- input validation ---------------------------------------------------------------------------
def check_binary_inputs(
    y_true: Any, score: Any, need_both_classes: bool = True
) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """Validate labels (0/1 or bool) and finite scores of equal length; return (int array, float array)."""
    y = np.asarray(y_true)
    try:
        s = np.asarray(score, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"score must hold numbers, got {type(score).__name__}") from exc
    if y.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y.shape}")
    if s.ndim != 1:
        raise ValueError(f"score must be one-dimensional, got shape {s.shape}")
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} entries but score has {len(s)}; they must match")
    if len(y) == 0:
        raise ValueError("no cases: y_true and score are empty")
    if y.dtype == bool:
        y = y.astype(np.int64)
    try:
        yf = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y_true must hold 0/1 labels (1 = melanoma), got dtype {y.dtype}") from exc
    bad = ~np.isin(yf, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"y_true must hold only 0 and 1 (1 = melanoma); y_true[{i}] = {y.tolist()[i]!r}")
    nonfinite = ~np.isfinite(s)
    if nonfinite.any():
        idx = np.flatnonzero(nonfinite)
        raise ValueError(
            f"score has {len(idx)} NaN or infinite value(s), first at index {int(idx[0])} "
            f"({s.tolist()[idx[0]]!r})"
        )
    y = yf.astype(np.int64)
    if need_both_classes:
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            only = "positive (melanoma)" if n_pos else "negative (benign)"
            raise ValueError(
                f"all {len(y)} cases are {only}: sensitivity, specificity and AUC need at least one "
                "melanoma and one benign case"
            )
    return y, s


# ----- proportions --------------------------------------------------------------------------------
def wilson_ci(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Wilson score interval for a proportion ``k / n`` (two-sided, level ``1 - alpha``)."""
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"wilson_ci needs integer counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n <= 0:
        raise ValueError(f"wilson_ci: n must be positive, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_ci: k must be between 0 and n={n}, got {k}")
    z = _z(alpha)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Mathematically the bounds are exactly 0 at k = 0 and 1 at k = n; avoid rounding residue there.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def proportion(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """``{"value", "ci_low", "ci_high", "method", "k", "n"}`` for a proportion with a Wilson CI."""
    low, high = wilson_ci(k, n, alpha)
    return {"value": k / n, "ci_low": low, "ci_high": high, "method": WILSON_METHOD, "k": int(k), "n": int(n)}


# ----- DeLong -------------------------------------------------------------------------------------
def _midrank(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ranks 1..n of ``x`` with ties given the mean of the ranks they span (Sun & Xu, Algorithm 1)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    # Boundaries of runs of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    mid = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks_sorted = np.repeat(mid, ends - starts)
    out = np.empty(n, dtype=np.float64)
    out[order] = ranks_sorted
    return out


def _delong_components(
    y: NDArray[Any], scores: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """AUCs (k,) and structural components V10 (k x m), V01 (k x n) for k score rows (k x N)."""
    pos = y == 1
    x = scores[:, pos]  # k x m
    z = scores[:, ~pos]  # k x n
    m, n = x.shape[1], z.shape[1]
    k = scores.shape[0]
    tx = np.empty((k, m))
    tz = np.empty((k, n))
    tall = np.empty((k, m + n))
    for r in range(k):
        tx[r] = _midrank(x[r])
        tz[r] = _midrank(z[r])
        tall[r] = _midrank(np.concatenate([x[r], z[r]]))
    # (rank sum - m(m+1)/2) / (m n): midranks are multiples of 1/2, so the numerator is exact.
    aucs = (tall[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tall[:, :m] - tx) / n
    v01 = 1.0 - (tall[:, m:] - tz) / m
    return aucs, v10, v01


def delong_covariance(y_true: Any, scores: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """AUCs and their DeLong covariance matrix for one or more score vectors on the same cases.

    ``scores`` is N or k x N; returns (aucs (k,), covariance (k x k)).
    """
    s2 = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = None
    for row in s2:
        y, _ = check_binary_inputs(y_true, row)
    assert y is not None
    aucs, v10, v01 = _delong_components(y, s2)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1)) if m > 1 else np.zeros((len(aucs), len(aucs)))
    s01 = np.atleast_2d(np.cov(v01, ddof=1)) if n > 1 else np.zeros((len(aucs), len(aucs)))
    return aucs, s10 / m + s01 / n


def delong_auc_ci(y_true: Any, score: Any, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """ROC AUC with its DeLong variance and ``1 - alpha`` CI: ``{"value","ci_low","ci_high","se",...}``.

    With a single case of one class the variance term of that class is taken as 0 (it is undefined).
    """
    aucs, cov = delong_covariance(y_true, score)
    auc, var = float(aucs[0]), float(max(cov[0, 0], 0.0))
    se = math.sqrt(var)
    z = _z(alpha)
    out = {
        "value": auc,
        "ci_low": max(0.0, auc - z * se),
        "ci_high": min(1.0, auc + z * se),
        "se": se,
        "variance": var,
        "method": DELONG_METHOD,
    }
    if var == 0:
        out["note"] = (
            "DeLong variance is 0 (perfect separation, or every score tied): the interval is degenerate, "
            "not a statement of certainty"
        )
    return out


def delong_test(y_true: Any, score1: Any, score2: Any) -> dict[str, float]:
    """Paired DeLong test of H0: AUC1 == AUC2 for two scores on the same cases (two-sided)."""
    from scipy.stats import norm

    s1 = np.asarray(score1, dtype=np.float64)
    s2 = np.asarray(score2, dtype=np.float64)
    if s1.shape != s2.shape:
        raise ValueError(f"score1 has shape {s1.shape} but score2 has {s2.shape}; they must match")
    aucs, cov = delong_covariance(y_true, np.vstack([s1, s2]))
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    if var <= 0:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
    else:
        z = diff / math.sqrt(var)
        p = float(2 * norm.sf(abs(z)))
    return {
        "auc1": float(aucs[0]),
        "auc2": float(aucs[1]),
        "difference": diff,
        "se": math.sqrt(max(var, 0.0)),
        "z": z,
        "p_value": p,
    }


# ----- bootstrap (optional, for metrics with no closed form) ----------------------------------------
def bootstrap_ci(
    y_true: Any,
    score: Any,
    statistic: Callable[[NDArray[Any], NDArray[np.float64]], float],
    n_resamples: int = 2000,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    stratified: bool = True,
) -> dict[str, Any]:
    """Percentile bootstrap CI of ``statistic(y, score)``; resamples within each class if ``stratified``."""
    y, s = check_binary_inputs(y_true, score)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in (0, 1)] if stratified else [np.arange(len(y))]
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        stats[b] = statistic(y[idx], s[idx])
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return {
        "value": float(statistic(y, s)),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "method": f"percentile bootstrap ({n_resamples} resamples, "
        f"{'stratified by class' if stratified else 'unstratified'}, seed {seed})",
    }


# ----- all together -------------------------------------------------------------------------------
def confusion(y_true: Any, score: Any, threshold: float = 0.5) -> dict[str, int]:
    """Counts {tp, fn, fp, tn} with melanoma predicted iff ``score >= threshold``."""
    y, s = check_binary_inputs(y_true, score, need_both_classes=False)
    pred = s >= threshold
    pos = y == 1
    return {
        "tp": int((pred & pos).sum()),
        "fn": int((~pred & pos).sum()),
        "fp": int((pred & ~pos).sum()),
        "tn": int((~pred & ~pos).sum()),
    }


def binary_metrics(
    y_true: Any, score: Any, threshold: float = 0.5, alpha: float = DEFAULT_ALPHA
) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity (Wilson CIs) and ROC AUC (DeLong CI) at ``threshold``.

    Returns ``{"accuracy"|"sensitivity"|"specificity"|"auc": {"value","ci_low","ci_high","method",...},
    "confusion": {tp, fn, fp, tn}, "n", "n_melanoma", "n_benign", "threshold", "ci_level"}``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    y, s = check_binary_inputs(y_true, score)
    c = confusion(y, s, threshold)
    n = len(y)
    return {
        "accuracy": proportion(c["tp"] + c["tn"], n, alpha),
        "sensitivity": proportion(c["tp"], c["tp"] + c["fn"], alpha),
        "specificity": proportion(c["tn"], c["tn"] + c["fp"], alpha),
        "auc": delong_auc_ci(y, s, alpha),
        "confusion": c,
        "n": n,
        "n_melanoma": int(y.sum()),
        "n_benign": int(n - y.sum()),
        "threshold": float(threshold),
        "ci_level": 1 - alpha,
    }


def melanoma_score(model: Classifier, probs: Any) -> NDArray[np.float64]:
    """``p_mel / (p_mel + p_ben)`` per row, from the model's class groups (``Classifier.group_probs``).

    For a binary melanoma/naevus model this is P(melanoma). Rows where both group probabilities
    are 0 (all mass on other classes) get 0.5: the model expresses no preference.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(model.classes):
        raise ValueError(
            f"probs must be N x {len(model.classes)} for classes {list(model.classes)}, got shape {p.shape}"
        )
    p_mel, p_ben = model.group_probs(p)
    total = p_mel + p_ben
    out = np.full(len(p), 0.5)
    ok = total > 0
    out[ok] = p_mel[ok] / total[ok]
    return out


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of the four metrics with CIs and the confusion matrix."""
    lines = [f"{'metric':<12} {'value':>7}   95% CI", "-" * 36]
    for key in ("auc", "accuracy", "sensitivity", "specificity"):
        m = metrics[key]
        extra = f"  ({m['k']}/{m['n']})" if "k" in m else ""
        lines.append(f"{key:<12} {m['value']:>7.3f}   [{m['ci_low']:.3f}, {m['ci_high']:.3f}]{extra}")
    if metrics["auc"].get("note"):
        lines.append(f"note: {metrics['auc']['note']}")
    lines.append("")
    lines.append(format_confusion(metrics["confusion"]))
    lines.append(
        f"n = {metrics['n']} ({metrics['n_melanoma']} melanoma, {metrics['n_benign']} benign), "
        f"threshold = {metrics['threshold']:g}"
    )
    return "\n".join(lines)


def format_confusion(c: dict[str, int]) -> str:
    """2 x 2 confusion matrix as text (rows: truth, columns: prediction)."""
    return "\n".join(
        [
            f"{'':<16}{'pred melanoma':>15}{'pred benign':>13}",
            f"{'true melanoma':<16}{c['tp']:>15}{c['fn']:>13}",
            f"{'true benign':<16}{c['fp']:>15}{c['tn']:>13}",
        ]
    )


__all__: Sequence[str] = (
    "binary_metrics",
    "bootstrap_ci",
    "check_binary_inputs",
    "confusion",
    "delong_auc_ci",
    "delong_covariance",
    "delong_test",
    "format_confusion",
    "format_metrics_table",
    "melanoma_score",
    "proportion",
    "wilson_ci",
)
