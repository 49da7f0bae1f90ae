r"""Multi-reader multi-case (MRMC) comparison of ROC AUCs: Obuchowski-Rockette with DeLong covariances.

Model (Obuchowski & Rockette 1995, Commun. Stat. Simul. Comput. 24:285-308), for I modalities
("unmodified", "adversarial") and J readers::

    AUC_ij = mu + tau_i + R_j + (tau R)_ij + e_ij

with random readers and cases. The e_ij (case sampling error) have variance ``Var`` and covariances
``Cov1`` (same reader, different modalities), ``Cov2`` (different readers, same modality) and
``Cov3`` (different readers, different modalities), estimated here by averaging the entries of the
DeLong covariance matrix of all I*J AUC estimates (DeLong, DeLong & Clarke-Pearson 1988).

Test of H0: tau_1 = ... = tau_I (Hillis, Obuchowski, Schartz & Berbaum 2005; Hillis 2007, Stat Med
26:596-619, "A comparison of denominator degrees of freedom methods for multiple observer ROC
analysis")::

    MS(T)  = J/(I-1) * sum_i (AUC_i. - AUC_..)^2
    MS(TR) = 1/((I-1)(J-1)) * sum_ij (AUC_ij - AUC_i. - AUC_.j + AUC_..)^2
    D      = MS(TR) + J * max(Cov2 - Cov3, 0)
    F      = MS(T) / D                      ~ F(I-1, ddf_H)
    ddf_H  = D^2 / (MS(TR)^2 / ((I-1)(J-1)))   (Hillis 2007)
    CI for AUC_a. - AUC_b.:  diff +- t(1-alpha/2; ddf_H) * sqrt(2 D / J)

and for each modality alone (Hillis 2007, single-test inference)::

    D_i = MS(R)_i + J * max(Cov2_i, 0),  ddf_i = D_i^2 / (MS(R)_i^2 / (J-1)),
    CI: AUC_i. +- t(1-alpha/2; ddf_i) * sqrt(D_i / J)

Cases need not be the same in every modality. Each AUC unit u = (modality, reader) has its own
positive set P_u and negative set N_u; with structural components (placements)
V10_u[k] = mean_{l in N_u} psi(x_k, y_l) and V01_u[l] = mean_{k in P_u} psi(x_k, y_l),
psi = 1 if x > y, 1/2 if equal, 0 otherwise, the DeLong covariance generalises to::

    Cov(u, v) = |P_u & P_v| * S10_uv / (m_u m_v) + |N_u & N_v| * S01_uv / (n_u n_v)

where S10_uv is the sample covariance (ddof 1) of V10_u and V10_v over the shared positives (S01 the
same over the shared negatives). With identical case sets this is exactly DeLong's estimator; with
disjoint sets the covariance is 0. When a modality has no negatives of its own (adversarial
images are melanomas made to look benign), its AUC uses the negatives of the other modalities, so
the two AUCs share those cases and are correlated; this is stated in the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

METHOD = (
    "Obuchowski-Rockette (1995) with DeLong (1988) covariances and Hillis (2007) denominator degrees of "
    "freedom; readers and cases random"
)
REFERENCES = (
    "Obuchowski NA, Rockette HE. Hypothesis testing of diagnostic accuracy for multiple readers and "
    "multiple tests: an ANOVA approach with dependent observations. "
    "Commun Stat Simul Comput 1995;24:285-308.",
    "Hillis SL. A comparison of denominator degrees of freedom methods for multiple observer ROC analysis. "
    "Stat Med 2007;26:596-619.",
    "DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated ROC curves: "
    "a nonparametric approach. Biometrics 1988;44:837-845.",
)


def placements(pos_scores: np.ndarray, neg_scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong structural components (V10 over positives, V01 over negatives)."""
    x = np.asarray(pos_scores, dtype=np.float64)[:, None]
    y = np.asarray(neg_scores, dtype=np.float64)[None, :]
    psi = (x > y) + 0.5 * (x == y)
    return float(psi.mean()), psi.mean(axis=1), psi.mean(axis=0)


def _shared_cov(a: dict[Any, float], b: dict[Any, float]) -> tuple[int, float]:
    shared = [k for k in a if k in b]
    s = len(shared)
    if s < 2:
        return s, 0.0
    va = np.array([a[k] for k in shared])
    vb = np.array([b[k] for k in shared])
    return s, float(np.sum((va - va.mean()) * (vb - vb.mean())) / (s - 1))


def auc_covariance(
    scores: dict[Any, dict[Any, float]],
    units: Sequence[tuple[Sequence[Any], Sequence[Any], Any]],
    case_of: Callable[[Any], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for AUC units that may use different case sets.

    ``scores[reader][key]`` is a reader's rating of a reading ``key``; each unit is (positive keys,
    negative keys, reader). ``case_of(key)`` names the case a reading is of (default: the key
    itself): two units covary through the cases they share, e.g. the same lesion read in two
    modalities (paired design) or the same benign readings used by both. Returns (aucs, covariance).
    """
    case_of = case_of or (lambda k: k)
    comps = []
    aucs = np.empty(len(units))
    for u, (pos, neg, reader) in enumerate(units):
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError(
                f"AUC unit {u} (reader {reader!r}) needs at least one positive and one negative case"
            )
        s = scores[reader]
        auc, v10, v01 = placements(np.array([s[c] for c in pos]), np.array([s[c] for c in neg]))
        aucs[u] = auc
        comps.append(
            (
                dict(zip(map(case_of, pos), v10, strict=True)),
                dict(zip(map(case_of, neg), v01, strict=True)),
                len(pos),
                len(neg),
            )
        )
    cov = np.zeros((len(units), len(units)))
    for u in range(len(units)):
        for v in range(u, len(units)):
            p_u, n_u, m_u, k_u = comps[u]
            p_v, n_v, m_v, k_v = comps[v]
            s10, c10 = _shared_cov(p_u, p_v)
            s01, c01 = _shared_cov(n_u, n_v)
            cov[u, v] = cov[v, u] = s10 * c10 / (m_u * m_v) + s01 * c01 / (k_u * k_v)
    return aucs, cov


def obuchowski_rockette(
    records: Sequence[dict[str, Any]],
    modalities: Sequence[str],
    alpha: float = 0.05,
) -> dict[str, Any]:
    """OR-DeLong MRMC analysis of the AUC difference between ``modalities``.

    ``records``: one dict per reading with keys reader, case, truth (1 = melanoma), modality, score.
    Every reader must have read every case used; cases some reader did not read are dropped
    (reported). Returns AUCs per reader and modality, variance components, F test and CIs.
    """
    from scipy import stats

    modalities = list(modalities)
    if len(modalities) < 2:
        raise ValueError("MRMC comparison needs at least two modalities")
    readers = sorted({r["reader"] for r in records}, key=str)
    if len(readers) < 2:
        raise ValueError(f"MRMC analysis needs at least 2 readers, got {len(readers)}")
    scores, truth = _readings(records, modalities, readers)
    complete = sorted((k for k in truth if all(k in scores[rd] for rd in readers)), key=str)
    dropped = len(truth) - len(complete)
    notes = []
    if dropped:
        notes.append(f"{dropped} reading(s) not made by every reader were left out (OR needs complete data)")
    sets = {m: _case_set(m, complete, truth, notes) for m in modalities}
    n_mod, n_rd = len(modalities), len(readers)
    units = [(sets[m][0], sets[m][1], rd) for m in modalities for rd in readers]
    aucs, cov = auc_covariance(scores, units, case_of=lambda k: k[1])
    theta = aucs.reshape(n_mod, n_rd)

    def idx(i: int, j: int) -> int:
        return i * n_rd + j

    var = float(np.mean(np.diag(cov)))
    c1 = [
        cov[idx(i, j), idx(k, j)] for i in range(n_mod) for k in range(n_mod) if i != k for j in range(n_rd)
    ]
    c2 = [cov[idx(i, j), idx(i, k)] for i in range(n_mod) for j in range(n_rd) for k in range(n_rd) if j != k]
    c3 = [
        cov[idx(i, j), idx(k, jj)]
        for i in range(n_mod)
        for k in range(n_mod)
        if i != k
        for j in range(n_rd)
        for jj in range(n_rd)
        if j != jj
    ]
    cov1, cov2, cov3 = float(np.mean(c1)), float(np.mean(c2)), float(np.mean(c3))
    mod_means = theta.mean(axis=1)
    rd_means = theta.mean(axis=0)
    grand = float(theta.mean())
    ms_t = n_rd / (n_mod - 1) * float(np.sum((mod_means - grand) ** 2))
    resid = theta - mod_means[:, None] - rd_means[None, :] + grand
    ms_tr = float(np.sum(resid**2)) / ((n_mod - 1) * (n_rd - 1))
    denom = ms_tr + n_rd * max(cov2 - cov3, 0.0)
    df1 = n_mod - 1
    ddf = math.inf if ms_tr <= 0 else denom**2 / (ms_tr**2 / ((n_mod - 1) * (n_rd - 1)))
    if denom <= 0:
        f_stat, p = (0.0, 1.0) if ms_t == 0 else (math.inf, 0.0)
    else:
        f_stat = ms_t / denom
        p = (
            float(stats.f.sf(f_stat, df1, ddf))
            if math.isfinite(ddf)
            else float(stats.chi2.sf(f_stat * df1, df1))
        )
    tq = (
        float(stats.t.ppf(1 - alpha / 2, ddf)) if math.isfinite(ddf) else float(stats.norm.ppf(1 - alpha / 2))
    )
    comparisons = []
    for a in range(n_mod):
        for b in range(a + 1, n_mod):
            diff = float(mod_means[b] - mod_means[a])
            se = math.sqrt(max(2 * denom / n_rd, 0.0))
            comparisons.append(
                {
                    "modalities": [modalities[b], modalities[a]],
                    "difference": diff,
                    "se": se,
                    "ci_low": diff - tq * se,
                    "ci_high": diff + tq * se,
                }
            )
    per_modality = {}
    for i, m in enumerate(modalities):
        ms_r = float(np.var(theta[i], ddof=1))
        cov2_i = float(
            np.mean([cov[idx(i, j), idx(i, k)] for j in range(n_rd) for k in range(n_rd) if j != k])
        )
        d_i = ms_r + n_rd * max(cov2_i, 0.0)
        ddf_i = math.inf if ms_r <= 0 else d_i**2 / (ms_r**2 / (n_rd - 1))
        t_i = (
            float(stats.t.ppf(1 - alpha / 2, ddf_i))
            if math.isfinite(ddf_i)
            else float(stats.norm.ppf(1 - alpha / 2))
        )
        se_i = math.sqrt(max(d_i / n_rd, 0.0))
        per_modality[m] = {
            "auc": float(mod_means[i]),
            "se": se_i,
            "ci_low": float(mod_means[i]) - t_i * se_i,
            "ci_high": float(mod_means[i]) + t_i * se_i,
            "df": ddf_i,
            "n_positive": len(sets[m][0]),
            "n_negative": len(sets[m][1]),
            "reader_aucs": {str(rd): float(theta[i, j]) for j, rd in enumerate(readers)},
        }
    return {
        "method": METHOD,
        "references": list(REFERENCES),
        "alpha": alpha,
        "modalities": modalities,
        "readers": [str(r) for r in readers],
        "n_cases": len({k[1] for k in complete}),
        "n_readings_per_reader": len(complete),
        "per_modality": per_modality,
        "comparisons": comparisons,
        "var_components": {
            "var": var,
            "cov1": cov1,
            "cov2": cov2,
            "cov3": cov3,
            "ms_t": ms_t,
            "ms_tr": ms_tr,
        },
        "f": f_stat,
        "df1": df1,
        "ddf": ddf,
        "p_value": p,
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
    m: str, complete: Sequence[tuple[str, Any]], truth: dict[tuple[str, Any], int], notes: list[str]
) -> tuple[list[Any], list[Any]]:
    """Positive and negative readings of modality ``m`` (borrowing the other modalities' when it has
    none of one kind, noted in ``notes``)."""
    pos = [k for k in complete if k[0] == m and truth[k] == 1]
    neg = [k for k in complete if k[0] == m and truth[k] == 0]
    if not neg:
        neg = [k for k in complete if truth[k] == 0]
        notes.append(
            f"{m}: no benign cases of its own; its AUC uses the benign cases of the other "
            f"condition(s) ({len(neg)}), so the AUCs share those cases"
        )
    if not pos:
        pos = [k for k in complete if truth[k] == 1]
        notes.append(
            f"{m}: no melanomas of its own; its AUC uses the melanomas of the other condition(s) ({len(pos)})"
        )
    if not pos or not neg:
        raise ValueError(f"modality {m!r}: no melanomas or no benign cases read by every reader")
    return pos, neg
