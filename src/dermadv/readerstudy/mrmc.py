r"""Multi-reader multi-case (MRMC) comparison of ROC AUCs: Obuchowski-Rockette (OR) and Dorfman-Berbaum-Metz
(DBM), jackknife or DeLong covariances, and a standalone model against a reader panel.

OR model (Obuchowski & Rockette 1995), for I modalities and J readers::

    AUC_ij = mu + tau_i + R_j + (tau R)_ij + e_ij

The e_ij (case sampling error) have variance ``Var`` and covariances ``Cov1`` (same reader, different
modalities), ``Cov2`` (different readers, same modality) and ``Cov3`` (different readers, different
modalities), each the average of the matching entries of the covariance matrix of the I*J AUC
estimates. That matrix is estimated by

- ``jackknife`` (default; what OR-DBM MRMC, RJafroc and MRMCaov use): leave one case out,
  ``Cov(u, v) = (K-1)/K * sum_k (A_u(-k) - mean_u)(A_v(-k) - mean_v)`` over the K cases, or
- ``delong`` (DeLong, DeLong & Clarke-Pearson 1988), generalised to units with different case sets:
  ``Cov(u, v) = |P_u & P_v| S10_uv / (m_u m_v) + |N_u & N_v| S01_uv / (n_u n_v)`` (S10, S01 the sample
  covariances of the structural components over the shared positives / negatives; 0 for disjoint sets).

Mean squares: ``MS(T) = J/(I-1) sum_i (A_i. - A_..)^2``, ``MS(R) = I/(J-1) sum_j (A_.j - A_..)^2``,
``MS(TR)`` the interaction. Tests of H0: tau_1 = ... = tau_I (Hillis 2007; Hillis et al. 2005)::

    random readers, random cases:  D = MS(TR) + J max(Cov2 - Cov3, 0),  F = MS(T)/D ~ F(I-1, ddf_H),
                                   ddf_H = D^2 / (MS(TR)^2 / ((I-1)(J-1))),  CI: d +- t sqrt(2 D / J)
    fixed readers, random cases:   D = Var - Cov1 + (J-1) max(Cov2 - Cov3, 0),
                                   chi2 = (I-1) MS(T)/D ~ chi2(I-1),  CI: d +- z sqrt(2 D / J)
    random readers, fixed cases:   F = MS(T)/MS(TR) ~ F(I-1, (I-1)(J-1)),  CI: d +- t sqrt(2 MS(TR)/J)

Variance components (method of moments, not truncated): ``Var(TxR) = MS(TR) - Var + Cov1 + Cov2 - Cov3``,
``Var(R) = (MS(R) - Var(TxR) - Var - (I-1) Cov1 + Cov2 + (I-1) Cov3) / I``.

Cov2 < Cov3 convention: ``Cov2 - Cov3`` is truncated at 0 in both denominators above, and ``Cov2`` in the
single-modality ones, as OR-DBM MRMC 2.51 and RJafroc do (Hillis 2007). MRMCaov truncates only in the
random-reader test; when Cov2 < Cov3 the untruncated fixed-reader test (its convention) is reported
beside ours (``analyses.frrc.untruncated``), and ``cov2_lt_cov3`` says that truncation took place.

DBM (Dorfman, Berbaum & Metz 1992, Hillis df): three-way treatment x reader x case ANOVA of the jackknife
pseudovalues ``Y_ijk = K A_ij - (K-1) A_ij(-k)``; random readers and cases:
``F = MS(T) / (MS(TR) + max(MS(TC) - MS(TRC), 0))`` with Hillis ddf. With the jackknife, DBM and OR give
the same F, ddf and p (Hillis et al. 2005). DBM needs a factorial design (every reading unit on the same
cases); otherwise it is not computed and the reason is given.

Designs. Every reader should read every case (factorial). Otherwise ``incomplete`` decides: ``refuse``
(default: an error naming the readers and the cases they did not read), ``complete-readers`` (only the
readers who read every case), ``common-cases`` (only the cases every reader read) or ``all-readings``
(each reader's AUC on the cases they read; covariances through the cases two readings share, DeLong
only; pairs that share no cases have covariance 0, which is what a split-plot design implies, and the
averages run over all pairs so that the variance of the mean difference is estimated without bias).
Cases need not be the same in every modality; a modality without cases of one class (adversarial
images are melanomas made to look benign) borrows the other modalities' cases of that class, so the
AUCs share those cases and are correlated; this is stated in the result. The jackknife then runs over
the union of the K cases: leaving out a case a unit does not use leaves its AUC unchanged.

Standalone model against readers (Hillis 2007 section 5.3; RJafroc ``StCadVsRad`` "1T-RRRC"): in one
modality, the reader-minus-model differences ``Psi_j = A_j - A_model`` are analysed as a single-test OR
model: ``Var`` and ``Cov2`` of the Psi from the covariance matrix of the J + 1 AUCs, ``MS(R)`` the
sample variance of the Psi, ``D = MS(R) + J max(Cov2, 0)``, ``t = mean(Psi) / sqrt(D/J)`` with
``ddf = D^2 / (MS(R)^2/(J-1))``; H0: the model's AUC equals the readers' mean AUC.

Intervals: AUC CIs are clipped to [0, 1] and CIs of AUC differences to [-1, 1]; clipping is reported.

Validation: with the jackknife this reproduces the OR-DBM MRMC 2.51 output for the Van Dyke et al. (1993)
data set (tests/integration/test_mrmc_vandyke.py) and for Franken et al. (1992), where Cov2 < Cov3
(tests/unit/test_mrmc_franken.py), to the printed precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

COVARIANCES = {
    "jackknife": "jackknife (leave one case out; as OR-DBM MRMC, RJafroc and MRMCaov)",
    "delong": "DeLong (1988) structural components, generalised to units with different case sets",
}
INCOMPLETE_POLICIES = ("refuse", "complete-readers", "common-cases", "all-readings")
#: Fewer cases than this of one class in a modality draws a warning.
MIN_CLASS_CASES = 10
COV23_CONVENTION = (
    "Cov2 - Cov3 (and, for single-modality intervals, Cov2) truncated at 0 in the random-reader and "
    "fixed-reader denominators, as OR-DBM MRMC 2.51 and RJafroc (Hillis 2007); MRMCaov truncates only "
    "the random-reader one: when Cov2 < Cov3 its untruncated fixed-reader test is reported too; "
    "variance components untruncated"
)
METHOD = "Obuchowski-Rockette (1995) with Hillis (2007) denominator degrees of freedom"
DBM_METHOD = "Dorfman-Berbaum-Metz (1992) ANOVA of jackknife pseudovalues with Hillis (2007) ddf"
MODEL_METHOD = (
    "standalone model vs readers: single-test Obuchowski-Rockette on reader-minus-model AUC differences "
    "(Hillis 2007 section 5.3; RJafroc StCadVsRad 1T-RRRC); H0: model AUC = mean reader AUC"
)
REFERENCES = (
    "Obuchowski NA, Rockette HE. Hypothesis testing of diagnostic accuracy for multiple readers and "
    "multiple tests: an ANOVA approach with dependent observations. "
    "Commun Stat Simul Comput 1995;24:285-308.",
    "Hillis SL. A comparison of denominator degrees of freedom methods for multiple observer ROC analysis. "
    "Stat Med 2007;26:596-619.",
    "Hillis SL, Obuchowski NA, Schartz KM, Berbaum KS. A comparison of the Dorfman-Berbaum-Metz and "
    "Obuchowski-Rockette methods for receiver operating characteristic (ROC) data. "
    "Stat Med 2005;24:1579-1607.",
    "Dorfman DD, Berbaum KS, Metz CE. Receiver operating characteristic rating analysis: generalization "
    "to the population of readers and patients with the jackknife method. Invest Radiol 1992;27:723-731.",
    "DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated ROC curves: "
    "a nonparametric approach. Biometrics 1988;44:837-845.",
)


def placements(pos_scores: np.ndarray, neg_scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong structural components (V10 over positives, V01 over negatives)."""
    psi = _psi(pos_scores, neg_scores)
    return float(psi.mean()), psi.mean(axis=1), psi.mean(axis=0)


def _psi(pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    x = np.asarray(pos_scores, dtype=np.float64)[:, None]
    y = np.asarray(neg_scores, dtype=np.float64)[None, :]
    return (x > y) + 0.5 * (x == y)


Units = Sequence[tuple[Sequence[Any], Sequence[Any], Any]]


def _unit_psi(scores: dict[Any, dict[Any, float]], units: Units) -> list[np.ndarray]:
    out = []
    for u, (pos, neg, reader) in enumerate(units):
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError(
                f"AUC unit {u} (reader {reader!r}) needs at least one positive and one negative case"
            )
        s = scores[reader]
        out.append(_psi(np.array([s[c] for c in pos]), np.array([s[c] for c in neg])))
    return out


def auc_covariance(
    scores: dict[Any, dict[Any, float]],
    units: Units,
    case_of: Callable[[Any], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for AUC units that may use different case sets.

    ``scores[reader][key]`` is a reader's rating of a reading ``key``; each unit is (positive keys,
    negative keys, reader). ``case_of(key)`` names the case a reading is of (default: the key
    itself): two units covary through the cases they share, e.g. the same lesion read in two
    modalities (paired design) or the same benign readings used by both. Returns (aucs, covariance).
    """
    case_of = case_of or (lambda k: k)
    psis = _unit_psi(scores, units)
    aucs = np.array([float(p.mean()) for p in psis])
    cov = np.zeros((len(units), len(units)))
    for side in (0, 1):  # positives (V10, row means), negatives (V01, column means)
        index: dict[Any, int] = {}
        for unit in units:
            for k in unit[side]:
                index.setdefault(case_of(k), len(index))
        comp = np.zeros((len(units), len(index)))
        mask = np.zeros_like(comp)
        for u, (unit, psi) in enumerate(zip(units, psis, strict=True)):
            cols = [index[case_of(k)] for k in unit[side]]
            comp[u, cols] = psi.mean(axis=1 - side)
            mask[u, cols] = 1.0
        shared = mask @ mask.T  # cases two units share
        sum_uv = comp @ mask.T  # sum of unit u's components over the cases it shares with v
        with np.errstate(divide="ignore", invalid="ignore"):
            s_uv = (comp @ comp.T - sum_uv * sum_uv.T / shared) / (shared - 1)
        s_uv = np.where(shared >= 2, s_uv, 0.0)
        sizes = mask.sum(axis=1)
        cov += shared * s_uv / np.outer(sizes, sizes)
    return aucs, cov


def jackknife_auc_covariance(
    scores: dict[Any, dict[Any, float]],
    units: Units,
    case_of: Callable[[Any], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """AUCs, their jackknife covariance, the leave-one-case-out AUCs (units x K) and the K cases.

    A case is left out of every unit that uses it (all its readings); a unit that does not use it keeps
    its AUC. ``Cov = (K-1)/K * sum_k (A(-k) - mean)(A(-k) - mean)^T`` over the union of the K cases.
    """
    case_of = case_of or (lambda k: k)
    psis = _unit_psi(scores, units)
    cases = sorted({case_of(k) for pos, neg, _ in units for k in (*pos, *neg)}, key=str)
    index = {c: i for i, c in enumerate(cases)}
    n_cases = len(cases)
    aucs = np.array([float(p.mean()) for p in psis])
    loo = np.empty((len(units), n_cases))
    for u, ((pos, neg, reader), psi) in enumerate(zip(units, psis, strict=True)):
        pi = np.array([index[case_of(k)] for k in pos])
        ni = np.array([index[case_of(k)] for k in neg])
        m, n = psi.shape
        row_drop = np.bincount(pi, weights=psi.sum(axis=1), minlength=n_cases)
        col_drop = np.bincount(ni, weights=psi.sum(axis=0), minlength=n_cases)
        m_left = m - np.bincount(pi, minlength=n_cases)
        n_left = n - np.bincount(ni, minlength=n_cases)
        if m_left.min() == 0 or n_left.min() == 0:
            raise ValueError(
                f"jackknife: reader {reader!r} has only one positive or one negative case in a unit; "
                "leaving it out leaves no AUC (use --covariance delong or more cases)"
            )
        total = psi.sum() - row_drop - col_drop
        both = np.flatnonzero((m_left < m) & (n_left < n))  # a case on both sides (conflicting truth)
        for c in both:
            total[c] += psi[np.ix_(pi == c, ni == c)].sum()
        loo[u] = total / (m_left * n_left)
    centred = loo - loo.mean(axis=1, keepdims=True)
    cov = (n_cases - 1) / n_cases * centred @ centred.T
    return aucs, cov, loo, cases


def _quantile_t(alpha: float, df: float) -> float:
    from scipy import stats

    if math.isfinite(df):
        return float(stats.t.ppf(1 - alpha / 2, df))
    return float(stats.norm.ppf(1 - alpha / 2))


def _interval(
    centre: float, se: float, q: float, bounds: tuple[float, float], notes: list[str], what: str
) -> dict[str, Any]:
    low, high = centre - q * se, centre + q * se
    out: dict[str, Any] = {"se": se, "ci_low": max(low, bounds[0]), "ci_high": min(high, bounds[1])}
    if low < bounds[0] or high > bounds[1]:
        out["ci_clipped"] = True
        out["ci_unclipped"] = [low, high]
        notes.append(f"{what}: CI ({low:.4f}, {high:.4f}) clipped to [{bounds[0]:g}, {bounds[1]:g}]")
    return out


def _f_test(stat_num: float, denom: float, df1: int, ddf: float) -> tuple[float, float]:
    from scipy import stats

    if denom <= 0:
        return (0.0, 1.0) if stat_num == 0 else (math.inf, 0.0)
    f = stat_num / denom
    if math.isfinite(ddf):
        return f, float(stats.f.sf(f, df1, ddf))
    return f, float(stats.chi2.sf(f * df1, df1))


def _hillis_ddf(denom: float, ms: float, df: float) -> float:
    return math.inf if ms <= 0 else denom**2 / (ms**2 / df)


def _cov_means(cov: np.ndarray, n_mod: int, n_rd: int) -> tuple[float, float, float, float]:
    """Var, Cov1, Cov2, Cov3 as averages of the (I J x I J) covariance's entries (index i * J + j)."""
    c = cov.reshape(n_mod, n_rd, n_mod, n_rd)
    same_mod = np.eye(n_mod, dtype=bool)[:, None, :, None]
    same_rd = np.eye(n_rd, dtype=bool)[None, :, None, :]
    var = float(c[same_mod & same_rd].mean())
    cov1 = float(c[~same_mod & same_rd].mean()) if n_mod > 1 else math.nan
    cov2 = float(c[same_mod & ~same_rd].mean())
    cov3 = float(c[~same_mod & ~same_rd].mean()) if n_mod > 1 else math.nan
    return var, cov1, cov2, cov3


def or_analysis(
    theta: np.ndarray, cov: np.ndarray, modalities: Sequence[str], alpha: float = 0.05
) -> dict[str, Any]:
    """OR tests from an (I x J) AUC matrix and the (IJ x IJ) covariance of its entries (row-major)."""
    if theta.ndim != 2 or min(theta.shape) < 2 or cov.shape != (theta.size, theta.size):
        raise ValueError(
            f"OR analysis needs an (I x J) AUC matrix with I, J >= 2 and its (IJ x IJ) covariance; got "
            f"{theta.shape} and {cov.shape}"
        )
    n_mod, n_rd = theta.shape
    notes: list[str] = []
    var, cov1, cov2, cov3 = _cov_means(cov, n_mod, n_rd)
    mod_means, rd_means, grand = theta.mean(axis=1), theta.mean(axis=0), float(theta.mean())
    ms_t = n_rd / (n_mod - 1) * float(np.sum((mod_means - grand) ** 2))
    ms_r = n_mod / (n_rd - 1) * float(np.sum((rd_means - grand) ** 2))
    resid = theta - mod_means[:, None] - rd_means[None, :] + grand
    df_tr = (n_mod - 1) * (n_rd - 1)
    ms_tr = float(np.sum(resid**2)) / df_tr
    c23 = max(cov2 - cov3, 0.0)
    var_tr = ms_tr - var + cov1 + cov2 - cov3
    components = {
        "var_r": (ms_r - var_tr - var - (n_mod - 1) * cov1 + cov2 + (n_mod - 1) * cov3) / n_mod,
        "var_tr": var_tr,
        "var": var,
        "cov1": cov1,
        "cov2": cov2,
        "cov3": cov3,
        "var_error": var,
        "ms_t": ms_t,
        "ms_r": ms_r,
        "ms_tr": ms_tr,
        "cov2_lt_cov3": cov2 < cov3,
    }
    df1 = n_mod - 1
    den = {
        "rrrc": ms_tr + n_rd * c23,
        "frrc": var - cov1 + (n_rd - 1) * c23,
        "rrfc": ms_tr,
    }
    ddf = {"rrrc": _hillis_ddf(den["rrrc"], ms_tr, df_tr), "frrc": math.inf, "rrfc": float(df_tr)}
    analyses: dict[str, Any] = {}
    for key, label in (
        ("rrrc", "random readers, random cases"),
        ("frrc", "fixed readers, random cases"),
        ("rrfc", "random readers, fixed cases"),
    ):
        f, p = _f_test(ms_t, den[key], df1, ddf[key])
        q = _quantile_t(alpha, ddf[key])
        comps = []
        for a in range(n_mod):
            for b in range(a + 1, n_mod):
                diff = float(mod_means[b] - mod_means[a])
                se = math.sqrt(max(2 * den[key] / n_rd, 0.0))
                what = f"{label}: {modalities[b]} - {modalities[a]}"
                comps.append(
                    {
                        "modalities": [modalities[b], modalities[a]],
                        "difference": diff,
                        **_interval(diff, se, q, (-1.0, 1.0), notes, what),
                    }
                )
        entry: dict[str, Any] = {
            "label": label,
            "df1": df1,
            "ddf": ddf[key],
            "p_value": p,
            "comparisons": comps,
        }
        if key == "frrc":
            entry["chi2"] = f * df1 if math.isfinite(f) else f
        entry["f"] = f
        analyses[key] = entry
    analyses["frrc"]["per_reader"] = _frrc_per_reader(theta, cov, modalities, alpha)
    if cov2 < cov3:
        raw = var - cov1 + (n_rd - 1) * (cov2 - cov3)
        f_raw, p_raw = _f_test(ms_t, raw, df1, math.inf)
        analyses["frrc"]["untruncated"] = {
            "denominator": raw,
            "chi2": f_raw * df1 if math.isfinite(f_raw) else f_raw,
            "p_value": p_raw,
            "convention": "MRMCaov: Cov2 - Cov3 not truncated in the fixed-reader test",
        }
    per_modality = _per_modality(theta, cov, modalities, alpha, notes)
    if components["cov2_lt_cov3"]:
        notes.append(f"Cov2 ({cov2:.3g}) < Cov3 ({cov3:.3g}): Cov2 - Cov3 truncated at 0 in the denominators")
    return {"var_components": components, "analyses": analyses, "per_modality": per_modality, "notes": notes}


def _frrc_per_reader(
    theta: np.ndarray, cov: np.ndarray, modalities: Sequence[str], alpha: float
) -> list[dict[str, Any]]:
    """Fixed readers: each reader's own difference with its case-sampling variance (normal)."""
    from scipy import stats

    n_mod, n_rd = theta.shape
    z = float(stats.norm.ppf(1 - alpha / 2))
    out = []
    for j in range(n_rd):
        for a in range(n_mod):
            for b in range(a + 1, n_mod):
                ua, ub = a * n_rd + j, b * n_rd + j
                diff = float(theta[b, j] - theta[a, j])
                var = float(cov[ua, ua] + cov[ub, ub] - 2 * cov[ua, ub])
                se = math.sqrt(max(var, 0.0))
                p = (1.0 if diff == 0 else 0.0) if se == 0 else float(2 * stats.norm.sf(abs(diff) / se))
                out.append(
                    {
                        "reader_index": j,
                        "modalities": [modalities[b], modalities[a]],
                        "difference": diff,
                        "se": se,
                        "ci_low": max(diff - z * se, -1.0),
                        "ci_high": min(diff + z * se, 1.0),
                        "p_value": p,
                    }
                )
    return out


def _per_modality(
    theta: np.ndarray, cov: np.ndarray, modalities: Sequence[str], alpha: float, notes: list[str]
) -> dict[str, Any]:
    """Single-modality inference (Hillis 2007): mean AUC of each modality with RRRC/FRRC/RRFC CIs."""
    from scipy import stats

    n_mod, n_rd = theta.shape
    out: dict[str, Any] = {}
    for i, m in enumerate(modalities):
        block = cov[i * n_rd : (i + 1) * n_rd, i * n_rd : (i + 1) * n_rd]
        var_i = float(np.mean(np.diag(block)))
        cov2_i = float((block.sum() - np.trace(block)) / (n_rd * (n_rd - 1)))
        ms_r = float(np.var(theta[i], ddof=1))
        mean = float(theta[i].mean())
        d_rrrc = ms_r + n_rd * max(cov2_i, 0.0)
        ddf_i = _hillis_ddf(d_rrrc, ms_r, n_rd - 1)
        rrrc = _interval(mean, math.sqrt(d_rrrc / n_rd), _quantile_t(alpha, ddf_i), (0.0, 1.0), notes, m)
        frrc_se = math.sqrt(max(var_i + (n_rd - 1) * max(cov2_i, 0.0), 0.0) / n_rd)
        z = float(stats.norm.ppf(1 - alpha / 2))
        rrfc_se = math.sqrt(ms_r / n_rd)
        t_rrfc = float(stats.t.ppf(1 - alpha / 2, n_rd - 1))
        out[m] = {
            "auc": mean,
            **rrrc,
            "df": ddf_i,
            "var": var_i,
            "cov2": cov2_i,
            "ms_r": ms_r,
            "frrc": {
                "se": frrc_se,
                "ci_low": max(mean - z * frrc_se, 0.0),
                "ci_high": min(mean + z * frrc_se, 1.0),
            },
            "rrfc": {
                "se": rrfc_se,
                "df": n_rd - 1,
                "ci_low": max(mean - t_rrfc * rrfc_se, 0.0),
                "ci_high": min(mean + t_rrfc * rrfc_se, 1.0),
            },
        }
    return out


def dbm_analysis(pseudo: np.ndarray, modalities: Sequence[str], alpha: float = 0.05) -> dict[str, Any]:
    """DBM from pseudovalues (I x J x K): mean squares, variance components and the three tests."""
    n_mod, n_rd, n_cases = pseudo.shape
    g = pseudo.mean()
    m_t = pseudo.mean(axis=(1, 2))
    m_r = pseudo.mean(axis=(0, 2))
    m_c = pseudo.mean(axis=(0, 1))
    m_tr = pseudo.mean(axis=2)
    m_tc = pseudo.mean(axis=1)
    m_rc = pseudo.mean(axis=0)
    df_t, df_r, df_c = n_mod - 1, n_rd - 1, n_cases - 1
    ms = {
        "t": n_rd * n_cases * float(np.sum((m_t - g) ** 2)) / df_t,
        "r": n_mod * n_cases * float(np.sum((m_r - g) ** 2)) / df_r,
        "c": n_mod * n_rd * float(np.sum((m_c - g) ** 2)) / df_c,
        "tr": n_cases * float(np.sum((m_tr - m_t[:, None] - m_r[None, :] + g) ** 2)) / (df_t * df_r),
        "tc": n_rd * float(np.sum((m_tc - m_t[:, None] - m_c[None, :] + g) ** 2)) / (df_t * df_c),
        "rc": n_mod * float(np.sum((m_rc - m_r[:, None] - m_c[None, :] + g) ** 2)) / (df_r * df_c),
    }
    resid = (
        pseudo
        - m_tr[:, :, None]
        - m_tc[:, None, :]
        - m_rc[None, :, :]
        + m_t[:, None, None]
        + m_r[None, :, None]
        + m_c[None, None, :]
        - g
    )
    ms["trc"] = float(np.sum(resid**2)) / (df_t * df_r * df_c)
    components = {
        "var_r": (ms["r"] - ms["tr"] - ms["rc"] + ms["trc"]) / (n_mod * n_cases),
        "var_c": (ms["c"] - ms["tc"] - ms["rc"] + ms["trc"]) / (n_mod * n_rd),
        "var_tr": (ms["tr"] - ms["trc"]) / n_cases,
        "var_tc": (ms["tc"] - ms["trc"]) / n_rd,
        "var_rc": (ms["rc"] - ms["trc"]) / n_mod,
        "var_error": ms["trc"],
    }
    den = {
        "rrrc": ms["tr"] + max(ms["tc"] - ms["trc"], 0.0),
        "frrc": ms["tc"],
        "rrfc": ms["tr"],
    }
    ddf = {
        "rrrc": _hillis_ddf(den["rrrc"], ms["tr"], df_t * df_r),
        "frrc": float(df_t * df_c),
        "rrfc": float(df_t * df_r),
    }
    analyses: dict[str, Any] = {}
    notes: list[str] = []
    for key in ("rrrc", "frrc", "rrfc"):
        f, p = _f_test(ms["t"], den[key], df_t, ddf[key])
        q = _quantile_t(alpha, ddf[key])
        comps = []
        for a in range(n_mod):
            for b in range(a + 1, n_mod):
                diff = float(m_t[b] - m_t[a])
                se = math.sqrt(max(2 * den[key] / (n_rd * n_cases), 0.0))
                what = f"DBM {key}: {modalities[b]} - {modalities[a]}"
                comps.append(
                    {
                        "modalities": [modalities[b], modalities[a]],
                        "difference": diff,
                        **_interval(diff, se, q, (-1.0, 1.0), notes, what),
                    }
                )
        analyses[key] = {"f": f, "df1": df_t, "ddf": ddf[key], "p_value": p, "comparisons": comps}
    return {
        "method": DBM_METHOD,
        "mean_squares": ms,
        "var_components": components,
        "analyses": analyses,
        "notes": notes,
    }


def _readings(
    records: Sequence[dict[str, Any]], modalities: Sequence[str], readers: Sequence[Any]
) -> tuple[dict[Any, dict[Any, float]], dict[tuple[str, Any], int]]:
    """Scores per reader and truth, both keyed (modality, case) (a case read in several modalities
    is paired); readings of other modalities are ignored."""
    scores: dict[Any, dict[Any, float]] = {rd: {} for rd in readers}
    truth: dict[tuple[str, Any], int] = {}
    for r in records:
        if r["modality"] not in modalities:
            continue
        key = (r["modality"], r["case"])
        scores[r["reader"]][key] = float(r["score"])
        if truth.setdefault(key, int(r["truth"])) != int(r["truth"]):
            raise ValueError(f"case {r['case']!r} has conflicting truth in modality {r['modality']!r}")
    return scores, truth


def _case_set(
    m: str, keys: Sequence[tuple[str, Any]], truth: dict[tuple[str, Any], int], notes: list[str]
) -> tuple[list[Any], list[Any]]:
    """Positive and negative readings of modality ``m`` (borrowing the other modalities' when it has
    none of one kind, noted in ``notes``)."""
    pos = [k for k in keys if k[0] == m and truth[k] == 1]
    neg = [k for k in keys if k[0] == m and truth[k] == 0]
    if not neg:
        neg = [k for k in keys if truth[k] == 0]
        notes.append(
            f"{m}: no benign cases of its own; its AUC uses the benign cases of the other "
            f"condition(s) ({len(neg)}), so the AUCs share those cases"
        )
    if not pos:
        pos = [k for k in keys if truth[k] == 1]
        notes.append(
            f"{m}: no melanomas of its own; its AUC uses the melanomas of the other condition(s) ({len(pos)})"
        )
    if not pos or not neg:
        raise ValueError(f"modality {m!r}: no positive or no negative cases")
    return pos, neg


def _short_list(items: Sequence[Any], n: int = 8) -> str:
    text = ", ".join(map(str, items[:n]))
    return text + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _missing_message(readers: Sequence[Any], scores: dict[Any, dict[Any, float]], keys: Sequence[Any]) -> str:
    parts = []
    for rd in readers:
        missing = [k for k in keys if k not in scores[rd]]
        if missing:
            names = [f"{k[0]}/{k[1]}" for k in missing]
            parts.append(
                f"reader {rd} did not read {len(missing)} of {len(keys)} cases ({_short_list(names, 12)})"
            )
    return "; ".join(parts)


def _apply_incomplete(
    policy: str, readers: list[Any], scores: dict[Any, dict[Any, float]], truth: dict[tuple[str, Any], int]
) -> tuple[list[Any], list[Any], list[str]]:
    """Readers and reading keys to analyse under ``policy``, with notes saying what was left out."""
    keys = sorted(truth, key=str)
    full = [rd for rd in readers if all(k in scores[rd] for k in keys)]
    if len(full) == len(readers):
        return readers, keys, []
    gaps = _missing_message(readers, scores, keys)
    if policy == "refuse":
        raise ValueError(
            f"incomplete design: {gaps}. MRMC needs every reader to read every case; choose "
            f"--incomplete complete-readers (readers {', '.join(map(str, full)) or 'none'}), common-cases "
            "(only the cases all read) or all-readings (each reader's own cases, --covariance delong)"
        )
    if policy == "complete-readers":
        left = [rd for rd in readers if rd not in full]
        if len(full) < 2:
            raise ValueError(f"--incomplete complete-readers: fewer than 2 readers read every case ({gaps})")
        n_read = sum(len(scores[rd]) for rd in left)
        return full, keys, [f"readers left out (did not read every case): {gaps}; {n_read} readings unused"]
    if policy == "common-cases":
        common = [k for k in keys if all(k in scores[rd] for rd in readers)]
        dropped = [k for k in keys if k not in set(common)]
        n_read = sum(1 for rd in readers for k in dropped if k in scores[rd])
        return (
            readers,
            common,
            [
                f"{len(dropped)} of {len(keys)} cases not read by every reader left out "
                f"({n_read} readings): {gaps}"
            ],
        )
    if policy == "all-readings":
        return readers, keys, [f"incomplete design analysed with each reader's own cases: {gaps}"]
    raise ValueError(f"incomplete must be one of {INCOMPLETE_POLICIES}, got {policy!r}")


def _check_args(covariance: str, incomplete: str) -> None:
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {sorted(COVARIANCES)}, got {covariance!r}")
    if incomplete not in INCOMPLETE_POLICIES:
        raise ValueError(f"incomplete must be one of {INCOMPLETE_POLICIES}, got {incomplete!r}")


def _design(
    records: Sequence[dict[str, Any]], modalities: list[str], covariance: str, incomplete: str
) -> dict[str, Any]:
    """Readers, per-modality case sets and notes/warnings for ``records`` under the chosen policy."""
    _check_args(covariance, incomplete)
    readers = sorted({r["reader"] for r in records}, key=str)
    if len(readers) < 2:
        raise ValueError(f"MRMC analysis needs at least 2 readers, got {len(readers)}")
    scores, truth = _readings(records, modalities, readers)
    readers, keys, notes = _apply_incomplete(incomplete, readers, scores, truth)
    applied = bool(notes)
    own = incomplete == "all-readings" and applied
    if own and covariance != "delong":
        raise ValueError(
            "--incomplete all-readings needs --covariance delong (the case jackknife assumes every "
            "reader read the same cases)"
        )
    sets = {m: _case_set(m, keys, truth, notes) for m in modalities}
    warnings = []
    for m, (pos, neg) in sets.items():
        for n, what in ((len(pos), "positive"), (len(neg), "negative")):
            if n < MIN_CLASS_CASES:
                warnings.append(
                    f"{m}: only {n} {what} case(s) (< {MIN_CLASS_CASES}); AUC variances and the "
                    "test are unreliable"
                )
    units = []
    for m in modalities:
        for rd in readers:
            pos, neg = sets[m]
            if own:
                pos = [k for k in pos if k in scores[rd]]
                neg = [k for k in neg if k in scores[rd]]
                if not pos or not neg:
                    raise ValueError(f"reader {rd} read no positive or no negative case of modality {m!r}")
                if min(len(pos), len(neg)) < MIN_CLASS_CASES:
                    warnings.append(
                        f"reader {rd}, {m}: own cases only {len(pos)} positive, {len(neg)} negative "
                        f"(< {MIN_CLASS_CASES})"
                    )
            units.append((pos, neg, rd))
    same_cases = all([k[1] for k in u[0]] == [k[1] for k in units[0][0]] for u in units) and all(
        [k[1] for k in u[1]] == [k[1] for k in units[0][1]] for u in units
    )
    if own:
        design = "incomplete (own cases)"
    elif applied:
        design = incomplete
    else:
        design = "factorial" if same_cases else "readers x cases; case sets differ between modalities"
    return {
        "readers": readers,
        "scores": scores,
        "keys": keys,
        "sets": sets,
        "units": units,
        "notes": notes,
        "warnings": warnings,
        "design": design,
        "same_cases": same_cases,
    }


def _estimate(d: dict[str, Any], covariance: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    def case_of(k: Any) -> Any:
        return k[1]

    if covariance == "jackknife":
        aucs, cov, loo, _ = jackknife_auc_covariance(d["scores"], d["units"], case_of=case_of)
        return aucs, cov, loo
    aucs, cov = auc_covariance(d["scores"], d["units"], case_of=case_of)
    return aucs, cov, None


def obuchowski_rockette(
    records: Sequence[dict[str, Any]],
    modalities: Sequence[str],
    alpha: float = 0.05,
    covariance: str = "jackknife",
    incomplete: str = "refuse",
) -> dict[str, Any]:
    """OR (and, for factorial designs, DBM) MRMC analysis of the AUC differences between ``modalities``.

    ``records``: one dict per reading with keys reader, case, truth (1 = positive), modality, score.
    ``covariance``: "jackknife" (default) or "delong"; ``incomplete``: what to do when readers did not
    all read the same cases (see the module docstring). The main test (``f``, ``ddf``, ``p_value``,
    ``comparisons``) is random readers, random cases; ``analyses`` has all three; ``dbm`` the DBM ones.
    """
    modalities = list(modalities)
    if len(modalities) < 2:
        raise ValueError("MRMC comparison needs at least two modalities")
    d = _design(records, modalities, covariance, incomplete)
    readers = d["readers"]
    n_mod, n_rd = len(modalities), len(readers)
    aucs, cov, _ = _estimate(d, covariance)
    theta = aucs.reshape(n_mod, n_rd)
    orr = or_analysis(theta, cov, modalities, alpha)
    for entry in orr["analyses"]["frrc"]["per_reader"]:
        entry["reader"] = str(readers[entry.pop("reader_index")])
    for i, m in enumerate(modalities):
        orr["per_modality"][m]["n_positive"] = len(d["sets"][m][0])
        orr["per_modality"][m]["n_negative"] = len(d["sets"][m][1])
        orr["per_modality"][m]["reader_aucs"] = {str(rd): float(theta[i, j]) for j, rd in enumerate(readers)}
    rrrc = orr["analyses"]["rrrc"]
    result = {
        "method": METHOD,
        "covariance": covariance,
        "covariance_method": COVARIANCES[covariance],
        "cov2_cov3_convention": COV23_CONVENTION,
        "references": list(REFERENCES),
        "alpha": alpha,
        "design": d["design"],
        "modalities": modalities,
        "readers": [str(r) for r in readers],
        "n_cases": len({k[1] for k in d["keys"]}),
        "n_readings_per_reader": len(d["keys"]),
        "per_modality": orr["per_modality"],
        "comparisons": rrrc["comparisons"],
        "var_components": orr["var_components"],
        "f": rrrc["f"],
        "df1": rrrc["df1"],
        "ddf": rrrc["ddf"],
        "p_value": rrrc["p_value"],
        "analyses": orr["analyses"],
        "dbm": _dbm_for(d, modalities, alpha),
        "notes": d["notes"] + orr["notes"],
        "warnings": d["warnings"],
    }
    return result


def _dbm_for(d: dict[str, Any], modalities: list[str], alpha: float) -> dict[str, Any]:
    """DBM on the jackknife pseudovalues when every unit uses the same cases, else the reason."""
    if not d["same_cases"]:
        return {"method": DBM_METHOD, "error": "DBM needs every modality and reader on the same cases"}
    try:
        aucs, _, loo, cases = jackknife_auc_covariance(d["scores"], d["units"], case_of=lambda k: k[1])
    except ValueError as exc:
        return {"method": DBM_METHOD, "error": str(exc)}
    n_cases = len(cases)
    pseudo = n_cases * aucs[:, None] - (n_cases - 1) * loo
    return dbm_analysis(pseudo.reshape(len(modalities), len(d["readers"]), n_cases), modalities, alpha)


def model_vs_readers(
    records: Sequence[dict[str, Any]],
    model_scores: dict[Any, float],
    modalities: Sequence[str],
    alpha: float = 0.05,
    covariance: str = "jackknife",
    incomplete: str = "refuse",
) -> dict[str, Any]:
    """A standalone model (``model_scores[case]``) against the reader panel, in each modality.

    The model reads the same cases as the readers (its AUC uses the same case sets, borrowed classes
    included). Returns {"method", "covariance", "by_modality": {m: result}, "notes", "warnings"}.
    """
    modalities = list(modalities)
    d = _design(records, modalities, covariance, incomplete)
    missing = sorted({k[1] for k in d["keys"] if k[1] not in model_scores}, key=str)
    if missing:
        raise ValueError(f"model scores missing for {len(missing)} case(s): {_short_list(missing)}")
    model = object()
    scores = {**d["scores"], model: {k: float(model_scores[k[1]]) for k in d["keys"]}}
    readers = d["readers"]
    by_mod = {}
    notes: list[str] = list(d["notes"])
    for i, m in enumerate(modalities):
        units = d["units"][i * len(readers) : (i + 1) * len(readers)]
        pos, neg = d["sets"][m]
        units = [*units, (pos, neg, model)]
        sub = {**d, "scores": scores, "units": units}
        aucs, cov, _ = _estimate(sub, covariance)
        res = single_test_vs_fixed(aucs[:-1], float(aucs[-1]), cov, alpha, notes, m)
        res["reader_aucs"] = {str(rd): float(a) for rd, a in zip(readers, aucs[:-1], strict=True)}
        res["n_positive"], res["n_negative"] = len(pos), len(neg)
        by_mod[m] = res
    return {
        "method": MODEL_METHOD,
        "covariance": covariance,
        "covariance_method": COVARIANCES[covariance],
        "readers": [str(r) for r in readers],
        "by_modality": by_mod,
        "notes": notes,
        "warnings": d["warnings"],
    }


def single_test_vs_fixed(
    reader_aucs: np.ndarray,
    model_auc: float,
    cov: np.ndarray,
    alpha: float = 0.05,
    notes: list[str] | None = None,
    what: str = "",
) -> dict[str, Any]:
    """Hillis (2007, section 5.3) test of mean reader AUC vs a model's AUC; ``cov`` is (J+1) x (J+1) with
    the model last. Random readers and cases (t with Hillis ddf), plus fixed readers (z) and fixed
    cases (one-sample t on the differences)."""
    from scipy import stats

    notes = [] if notes is None else notes
    n_rd = len(reader_aucs)
    psi = np.asarray(reader_aucs, dtype=np.float64) - model_auc
    contrast = np.hstack([np.eye(n_rd), -np.ones((n_rd, 1))])
    cpsi = contrast @ cov @ contrast.T
    var = float(np.mean(np.diag(cpsi)))
    cov2 = float((cpsi.sum() - np.trace(cpsi)) / (n_rd * (n_rd - 1)))
    ms_r = float(np.var(psi, ddof=1))
    mean = float(psi.mean())
    den = ms_r + n_rd * max(cov2, 0.0)
    ddf = _hillis_ddf(den, ms_r, n_rd - 1)
    out: dict[str, Any] = {
        "model_auc": model_auc,
        "mean_reader_auc": float(np.mean(reader_aucs)),
        "difference": mean,
        "difference_is": "mean reader AUC - model AUC",
        "var": var,
        "cov2": cov2,
        "ms_r": ms_r,
        "var_r": ms_r - var + cov2,
    }
    if den <= 0:
        out.update({"t": 0.0 if mean == 0 else math.copysign(math.inf, mean), "ddf": ddf})
        out.update({"p_value": 1.0 if mean == 0 else 0.0, "se": 0.0, "ci_low": mean, "ci_high": mean})
        notes.append(
            f"{what}: model and readers have identical ratings' AUC structure; the test is degenerate"
        )
    else:
        se = math.sqrt(den / n_rd)
        t = mean / se
        p = float(2 * (stats.t.sf(abs(t), ddf) if math.isfinite(ddf) else stats.norm.sf(abs(t))))
        out.update({"t": t, "ddf": ddf, "p_value": p})
        out.update(
            _interval(mean, se, _quantile_t(alpha, ddf), (-1.0, 1.0), notes, f"{what}: readers - model")
        )
    fr_se = math.sqrt(max(var + (n_rd - 1) * cov2, 0.0) / n_rd)
    out["fixed_readers"] = _z_summary(mean, fr_se, alpha)
    fc_se = math.sqrt(ms_r / n_rd)
    if fc_se > 0:
        t_fc = mean / fc_se
        q = float(stats.t.ppf(1 - alpha / 2, n_rd - 1))
        out["fixed_cases"] = {
            "t": t_fc,
            "df": n_rd - 1,
            "p_value": float(2 * stats.t.sf(abs(t_fc), n_rd - 1)),
            "ci_low": max(mean - q * fc_se, -1.0),
            "ci_high": min(mean + q * fc_se, 1.0),
        }
    else:
        out["fixed_cases"] = {"error": "every reader's difference from the model is the same"}
    return out


def _z_summary(mean: float, se: float, alpha: float) -> dict[str, Any]:
    from scipy import stats

    if se == 0:
        return {
            "z": 0.0 if mean == 0 else math.copysign(math.inf, mean),
            "p_value": 1.0 if mean == 0 else 0.0,
        }
    z = float(stats.norm.ppf(1 - alpha / 2))
    return {
        "z": mean / se,
        "se": se,
        "p_value": float(2 * stats.norm.sf(abs(mean / se))),
        "ci_low": max(mean - z * se, -1.0),
        "ci_high": min(mean + z * se, 1.0),
    }
