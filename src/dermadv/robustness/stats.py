"""Statistics of average-case robustness runs: exact binomial intervals, the lesion (cluster) bootstrap, a
paired bootstrap of a metric's change under perturbation, and a sequential stopping rule.

Several photographs of one lesion are not independent observations: a model that flips on one view of a
naevus tends to flip on the others. Intervals over images therefore resample *lesions* (all images of a
drawn lesion come along), the cluster bootstrap of Davison & Hinkley (1997, section 3.8). The bootstrap
is vectorised: a replicate is a vector of multinomial counts (how often each lesion was drawn), and
counts-based statistics (a mean, accuracy, sensitivity, specificity, balanced error) are then matrix
products of those counts with per-lesion sums.

Convention as in :mod:`dermadv.metrics`: label 1 is melanoma (positive), 0 benign; predictions are 0/1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Metrics :func:`paired_lesion_bootstrap` knows, each computed from confusion counts.
PAIRED_METRICS = ("accuracy", "sensitivity", "specificity", "balanced_error")

#: Largest number of (replicate x lesion) counts held in memory at once.
_CHUNK_CELLS = 2_000_000

Settled = Literal["below", "above"]


# ----- validation ---------------------------------------------------------------------------------
def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not (math.isfinite(c) and 0.0 < c < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _binary(name: str, x: ArrayLike) -> NDArray[np.int64]:
    """A one-dimensional array of 0/1 labels (bools allowed)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.int64)
    try:
        f = a.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold 0/1 labels (1 = melanoma), got dtype {a.dtype}") from exc
    bad = ~np.isin(f, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must hold only 0 and 1 (1 = melanoma); {name}[{i}] = {a.tolist()[i]!r}")
    return f.astype(np.int64)


def _same_length(**arrays: NDArray[Any]) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"no cases: {', '.join(lengths)} are empty")
    return n


def _lesion_codes(groups: ArrayLike, n: int) -> tuple[NDArray[np.intp], int]:
    """Lesion ids as codes 0..G-1 (one per image) and the number of lesions G."""
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise ValueError(f"groups must hold one lesion id per image ({n}), got shape {g.shape}")
    try:
        _, codes = np.unique(g, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"groups must be lesion ids of one comparable type, got {g.dtype}") from exc
    codes = np.asarray(codes, dtype=np.intp).reshape(-1)
    return codes, int(codes.max()) + 1


# ----- exact binomial interval --------------------------------------------------------------------
def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper & Pearson 1934) two-sided interval for a proportion ``k / n``; ``(0, 1)`` when n = 0.

    Computed from beta quantiles, ``beta.ppf(a/2, k, n-k+1)`` and ``beta.ppf(1-a/2, k+1, n-k)`` with
    a = 1 - confidence: the same interval as ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``
    (which finds it by root-finding, ~100x slower; a robustness run computes it after every batch of
    draws). Its coverage is at least ``confidence`` for every true proportion (it is conservative),
    which is what a claim such as "the flip rate is below 1%" needs.
    """
    from scipy.stats import beta

    k = _check_int("k", k, 0)
    n = _check_int("n", n, 0)
    confidence = _check_confidence(confidence)
    if k > n:
        raise ValueError(f"clopper_pearson: k must be between 0 and n={n}, got {k}")
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def settled(
    k: int,
    n: int,
    low_threshold: float,
    high_threshold: float,
    confidence: float = 0.95,
    looks: int = 1,
) -> Settled | None:
    """Sequential stopping rule for a flip rate estimated batch by batch: has it settled either side?

    Returns ``"below"`` when the Clopper-Pearson upper bound of ``k / n`` is below ``low_threshold``,
    ``"above"`` when its lower bound is above ``high_threshold``, else ``None`` (keep drawing).

    The caller recomputes this after each batch of draws and stops at the first non-``None`` answer.
    Looking repeatedly at accumulating data makes the nominal coverage approximate: each look is another
    chance to stop on a chance excursion, so the probability of a wrong "below"/"above" exceeds
    ``1 - confidence``. ``looks`` (the most looks the run will take) applies a Bonferroni correction:
    every look uses the interval at confidence ``1 - (1 - confidence) / looks``, which bounds the
    overall error probability by ``1 - confidence`` (conservatively).
    """
    confidence = _check_confidence(confidence)
    looks = _check_int("looks", looks, 1)
    low_threshold, high_threshold = float(low_threshold), float(high_threshold)
    for name, t in (("low_threshold", low_threshold), ("high_threshold", high_threshold)):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must be a proportion in [0, 1], got {t!r}")
    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold {low_threshold} must not exceed high_threshold {high_threshold}")
    low, high = clopper_pearson(k, n, 1.0 - (1.0 - confidence) / looks)
    if high < low_threshold:
        return "below"
    if low > high_threshold:
        return "above"
    return None


# ----- metrics from labels ------------------------------------------------------------------------
def balanced_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """1 - balanced accuracy = 1 - (sensitivity + specificity) / 2: the SAM benchmark's BCE of one set.

    Needs at least one melanoma and one benign case in ``y_true``.
    """
    y = _binary("y_true", y_true)
    p = _binary("y_pred", y_pred)
    _same_length(y_true=y, y_pred=p)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "melanoma (1)" if n_pos else "benign (0)"
        raise ValueError(f"balanced_error: all {len(y)} cases are {only}; it needs both classes")
    sensitivity = float(((p == 1) & (y == 1)).sum()) / n_pos
    specificity = float(((p == 0) & (y == 0)).sum()) / (len(y) - n_pos)
    return 1.0 - (sensitivity + specificity) / 2.0


def _metric_from_counts(
    metric: str,
    pos: NDArray[np.float64],
    neg: NDArray[np.float64],
    tp: NDArray[np.float64],
    tn: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The metric per row of counts; NaN where it is undefined (no melanoma, no benign case)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(pos > 0, tp / np.where(pos > 0, pos, 1.0), np.nan)
        spec = np.where(neg > 0, tn / np.where(neg > 0, neg, 1.0), np.nan)
        if metric == "accuracy":
            total = pos + neg
            return np.where(total > 0, (tp + tn) / np.where(total > 0, total, 1.0), np.nan)
        if metric == "sensitivity":
            return sens
        if metric == "specificity":
            return spec
        return 1.0 - (sens + spec) / 2.0  # balanced_error


# ----- lesion bootstrap ---------------------------------------------------------------------------
def _count_chunks(rng: np.random.Generator, n_lesions: int, n_boot: int) -> Iterator[NDArray[np.float64]]:
    """Multinomial draw counts of each lesion, ``(replicates, lesions)``, a few replicates at a time."""
    rows = max(1, _CHUNK_CELLS // n_lesions)
    pvals = np.full(n_lesions, 1.0 / n_lesions)
    done = 0
    while done < n_boot:
        size = min(rows, n_boot - done)
        yield rng.multinomial(n_lesions, pvals, size=size).astype(np.float64)
        done += size


def _percentile_ci(reps: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    if len(reps) == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _is_mean(statistic: Callable[..., Any] | str) -> bool:
    return statistic is np.mean or statistic is np.average or statistic == "mean"


def _mean_replicates(
    v: NDArray[np.float64],
    w: NDArray[np.float64],
    codes: NDArray[np.intp],
    n_lesions: int,
    rng: np.random.Generator,
    n_boot: int,
) -> NDArray[np.float64]:
    sums = np.bincount(codes, weights=w * v, minlength=n_lesions)
    wsums = np.bincount(codes, weights=w, minlength=n_lesions)
    out = []
    for counts in _count_chunks(rng, n_lesions, n_boot):
        num, den = counts @ sums, counts @ wsums
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    return np.concatenate(out)


def _generic_replicates(
    v: NDArray[np.float64],
    statistic: Callable[..., Any],
    codes: NDArray[np.intp],
    n_lesions: int,
    rng: np.random.Generator,
    n_boot: int,
) -> NDArray[np.float64]:
    out = np.empty(n_boot)
    b = 0
    for counts in _count_chunks(rng, n_lesions, n_boot):
        for row in counts:  # an arbitrary statistic needs its resample materialised
            idx = np.repeat(np.arange(len(v)), row.astype(np.int64)[codes])
            out[b] = float(statistic(v[idx]))
            b += 1
    return out


def lesion_bootstrap(
    values: ArrayLike,
    groups: ArrayLike,
    statistic: Callable[..., Any] | str = np.mean,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    weights: ArrayLike | None = None,
) -> dict[str, Any]:
    """Lesion (cluster) bootstrap of ``statistic(values)``, with the bookkeeping of undefined replicates.

    Each replicate draws as many lesions as there are, with replacement, and takes every image of each
    drawn lesion (a lesion drawn twice counts twice). The interval is the percentile interval of the
    replicates; the same ``seed`` gives the same interval.

    ``statistic`` is ``np.mean`` (or ``"mean"``), computed without a loop over replicates, optionally
    weighted by ``weights`` (one non-negative weight per image: e.g. ``1 / images of its lesion`` to count
    every lesion once); or any callable of a one-dimensional array, evaluated once per replicate (no
    weights). Replicates whose statistic is NaN (e.g. all drawn weights zero) are dropped and counted.

    Returns ``{"estimate", "ci": (low, high), "n_boot", "n_undefined", "n_lesions", "n_images",
    "confidence", "method"}``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"values must be a non-empty one-dimensional array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(
            f"values hold NaN or infinite entries, first at index {int(np.flatnonzero(~np.isfinite(v))[0])}"
        )
    n_boot = _check_int("n_boot", n_boot, 1)
    confidence = _check_confidence(confidence)
    codes, n_lesions = _lesion_codes(groups, len(v))
    rng = np.random.default_rng(seed)
    if _is_mean(statistic):
        w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != v.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {len(v)} finite non-negative numbers, not all zero")
        estimate = float(np.sum(w * v) / np.sum(w))
        reps = _mean_replicates(v, w, codes, n_lesions, rng, n_boot)
        name = "mean" if weights is None else "weighted mean"
    else:
        if weights is not None:
            raise ValueError(
                "weights apply to the mean only; pass statistic=np.mean, or weight inside statistic"
            )
        if not callable(statistic):
            raise ValueError(f"statistic must be np.mean, 'mean' or a callable, got {statistic!r}")
        estimate = float(statistic(v))
        reps = _generic_replicates(v, statistic, codes, n_lesions, rng, n_boot)
        name = getattr(statistic, "__name__", "statistic")
    defined = reps[~np.isnan(reps)]
    return {
        "estimate": estimate,
        "ci": _percentile_ci(defined, confidence),
        "n_boot": n_boot,
        "n_undefined": int(n_boot - len(defined)),
        "n_lesions": n_lesions,
        "n_images": len(v),
        "confidence": confidence,
        "method": f"lesion (cluster) percentile bootstrap of the {name}: {n_boot} replicates, "
        f"{n_lesions} lesions, seed {seed}",
    }


def lesion_bootstrap_ci(
    values: ArrayLike,
    groups: ArrayLike,
    statistic: Callable[..., Any] | str = np.mean,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    weights: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of :func:`lesion_bootstrap` (same arguments)."""
    res = lesion_bootstrap(values, groups, statistic, n_boot, seed, confidence, weights)
    low, high = res["ci"]
    return res["estimate"], low, high


def paired_lesion_bootstrap(
    y_true: ArrayLike,
    pred_clean: ArrayLike,
    pred_perturbed: ArrayLike,
    groups: ArrayLike,
    metric: str,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Change of a metric under perturbation (perturbed - clean), with a paired lesion bootstrap interval.

    Both predictions are of the same images; every replicate draws lesions once and evaluates the metric
    on the clean and the perturbed predictions of the same draw, so the interval of the difference
    reflects the pairing. ``metric`` is one of :data:`PAIRED_METRICS`. A replicate where the metric is
    undefined (sensitivity or balanced error with no melanoma drawn, specificity with no benign lesion
    drawn) is dropped and counted in ``n_undefined``; the metric on the full sample must be defined.

    Returns ``{"metric", "clean", "perturbed", "difference", "ci": (low, high), "clean_ci",
    "perturbed_ci", "n_boot", "n_undefined", "n_lesions", "n_images", "confidence", "method"}``.
    """
    y = _binary("y_true", y_true)
    pc = _binary("pred_clean", pred_clean)
    pp = _binary("pred_perturbed", pred_perturbed)
    _same_length(y_true=y, pred_clean=pc, pred_perturbed=pp)
    correct_c, correct_p = (pc == y).astype(np.float64), (pp == y).astype(np.float64)
    return paired_correctness_bootstrap(y, correct_c, correct_p, groups, metric, n_boot, seed, confidence)


def paired_correctness_bootstrap(
    y_true: ArrayLike,
    correct_clean: ArrayLike,
    correct_perturbed: ArrayLike,
    groups: ArrayLike,
    metric: str,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """:func:`paired_lesion_bootstrap` from per-image correctness in [0, 1] instead of 0/1 calls.

    ``correct_*[i]`` is how often image i is called correctly: 0 or 1 for a single call, or the share
    of correct calls over a robustness run's draws (sensitivity is then the mean share over the
    melanomas drawn, and so on). The same lesion draws serve clean and perturbed. Returns what
    :func:`paired_lesion_bootstrap` returns.
    """
    if metric not in PAIRED_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(PAIRED_METRICS)}")
    y = _binary("y_true", y_true)
    cc = np.asarray(correct_clean, dtype=np.float64)
    cp = np.asarray(correct_perturbed, dtype=np.float64)
    n = _same_length(y_true=y, correct_clean=cc, correct_perturbed=cp)
    for name, v in (("correct_clean", cc), ("correct_perturbed", cp)):
        if not (np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all()):
            raise ValueError(f"{name} must hold shares of correct calls in [0, 1]")
    n_boot = _check_int("n_boot", n_boot, 1)
    confidence = _check_confidence(confidence)
    codes, n_lesions = _lesion_codes(groups, n)
    mel, ben = (y == 1).astype(np.float64), (y == 0).astype(np.float64)
    columns = np.stack([mel, ben, cc * mel, cc * ben, cp * mel, cp * ben], axis=1)
    per_lesion = np.stack([np.bincount(codes, weights=c, minlength=n_lesions) for c in columns.T], axis=1)
    full = columns.sum(axis=0)[None, :]
    clean = float(_metric_from_counts(metric, full[:, 0], full[:, 1], full[:, 2], full[:, 3])[0])
    perturbed = float(_metric_from_counts(metric, full[:, 0], full[:, 1], full[:, 4], full[:, 5])[0])
    if math.isnan(clean):
        need = "a benign case (0)" if metric == "specificity" else "a melanoma (1)"
        need = "cases" if metric == "accuracy" else need
        raise ValueError(f"{metric} is undefined on these {n} images: y_true needs {need}")
    reps_c, reps_p = [], []
    for counts in _count_chunks(np.random.default_rng(seed), n_lesions, n_boot):
        r = counts @ per_lesion
        reps_c.append(_metric_from_counts(metric, r[:, 0], r[:, 1], r[:, 2], r[:, 3]))
        reps_p.append(_metric_from_counts(metric, r[:, 0], r[:, 1], r[:, 4], r[:, 5]))
    rc, rp = np.concatenate(reps_c), np.concatenate(reps_p)
    ok = ~(np.isnan(rc) | np.isnan(rp))
    return {
        "metric": metric,
        "clean": clean,
        "perturbed": perturbed,
        "difference": perturbed - clean,
        "ci": _percentile_ci(rp[ok] - rc[ok], confidence),
        "clean_ci": _percentile_ci(rc[ok], confidence),
        "perturbed_ci": _percentile_ci(rp[ok], confidence),
        "n_boot": n_boot,
        "n_undefined": int((~ok).sum()),
        "n_lesions": n_lesions,
        "n_images": n,
        "confidence": confidence,
        "method": f"paired lesion (cluster) percentile bootstrap: {n_boot} replicates, {n_lesions} lesions, "
        f"seed {seed}; replicates with {metric} undefined dropped",
    }
