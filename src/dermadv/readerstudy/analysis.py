"""Statistical analysis of a reader study's answers.

- Per reader: sensitivity and specificity (melanoma = positive) with Wilson 95% CIs, and ROC AUC with
  a DeLong 95% CI, overall and split by condition (unmodified / adversarial). The AUC uses the
  confidence rating when every answer of the reader has one: a signed 10-level score
  (+c for "melanoma" with confidence c, -c for "naevus"); otherwise the binary answer (the AUC of a
  binary answer is (sensitivity + specificity) / 2). The method used is stated per reader.
- When a condition has no naevi of its own (adversarial melanomas made to look benign), its AUC uses
  the reader's unmodified naevi as negatives; its specificity is not defined and reported as such.
- Logistic regression (statsmodels Logit, maximum likelihood) of correctness on reader identity
  (fixed effects), melanoma vs naevus and adversarial vs unmodified; odds ratio of the adversarial
  term with its Wald 95% CI and p-value.
- MRMC (see ``mrmc``): Obuchowski-Rockette with Hillis df, jackknife (default, as the published programs)
  or DeLong covariances, AUC difference between the conditions; random readers and cases, plus the
  fixed-reader and fixed-case analyses and DBM where the design allows. Readers who did not read every
  case: refused with a message naming them and their cases unless ``incomplete`` says otherwise.
- Standalone model against the readers (with ``model_scores``, image -> melanoma score): Hillis single-test
  OR on reader-minus-model AUC differences, per condition (the study's Supplementary Figure 2c design).
- Readers with fewer than ``min_answers`` answers, or without both melanomas and naevi, are listed
  with the reason and left out of the pooled analyses, never silently dropped.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError
from dermadv.fileio import atomic_target, atomic_write_bytes, atomic_write_text
from dermadv.metrics import delong_auc_ci, proportion
from dermadv.readerstudy.build import study_group
from dermadv.readerstudy.study import ADVERSARIAL, CONDITIONS, MELANOMA, NAEVUS, UNMODIFIED

SCORE_CONFIDENCE = "signed confidence score (answer x confidence 1-5: 10 levels)"
SCORE_BINARY = "binary answer (AUC = (sensitivity + specificity) / 2)"
REGRESSION_METHOD = (
    "logistic regression (statsmodels Logit, ML): correct ~ reader (fixed effects) + "
    "melanoma + adversarial; Wald 95% CIs"
)


def parse_band(text: str) -> tuple[float, float]:
    """Parse ``LOW,HIGH`` (proportions in [0, 1] or percentages) for --reference-band."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise DataError(f"--reference-band must be LOW,HIGH (e.g. 0.7,0.85), got {text!r}") from exc
    if high > 1.0 and low >= 0 and high <= 100:
        low, high = low / 100, high / 100
    if not 0 <= low < high <= 1:
        raise DataError(f"--reference-band: need 0 <= LOW < HIGH <= 1, got {text!r}")
    return low, high


def load_answers(path: str | Path) -> list[dict[str, Any]]:
    """Read an answers CSV (``reader-study export``), validating every row; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: answers file not found")
    rows = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        rcol = "reader_id" if "reader_id" in cols else "reader"
        missing = {rcol, "image", "ground_truth", "condition", "answer"} - cols
        if missing:
            raise DataError(
                f"{path}: missing column(s) {sorted(missing)}; expected the export of "
                f"'dermadv reader-study export'"
            )
        for lineno, row in enumerate(reader, start=2):
            where = f"{path} line {lineno}"
            truth = study_group(row["ground_truth"])
            answer = study_group(row["answer"])
            if truth is None:
                raise DataError(f"{where}: ground_truth {row['ground_truth']!r} is not melanoma/naevus")
            if answer is None:
                raise DataError(f"{where}: answer {row['answer']!r} is not melanoma/naevus")
            if row["condition"] not in CONDITIONS:
                raise DataError(f"{where}: condition {row['condition']!r} not in {CONDITIONS}")
            conf_text = (row.get("confidence") or "").strip()
            conf = None
            if conf_text:
                try:
                    conf = int(float(conf_text))
                except ValueError as exc:
                    raise DataError(f"{where}: confidence {conf_text!r} is not a number") from exc
                if not 1 <= conf <= 5:
                    raise DataError(f"{where}: confidence {conf} outside 1-5")
            reader_name = row.get("reader") or row[rcol]
            rows.append(
                {
                    "reader": str(row[rcol]),
                    "reader_name": reader_name,
                    "image": row["image"],
                    "truth": truth,
                    "condition": row["condition"],
                    "attack": row.get("attack") or "",
                    "answer": answer,
                    "confidence": conf,
                    "correct": int(answer == truth),
                }
            )
    if not rows:
        raise DataError(f"{path}: no answers")
    seen = set()
    for r in rows:
        key = (r["reader"], r["image"])
        if key in seen:
            raise DataError(f"{path}: reader {r['reader']} answered image {r['image']} twice")
        seen.add(key)
    return rows


def score_of(row: dict[str, Any], use_confidence: bool) -> float:
    """Reader's melanoma score: signed confidence (+c melanoma, -c naevus) or 1/0."""
    sign = 1.0 if row["answer"] == MELANOMA else -1.0
    if use_confidence:
        return sign * row["confidence"]
    return 1.0 if sign > 0 else 0.0


def _prop(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "k": 0, "n": 0, "note": "no cases"}
    return proportion(k, n)


def _metrics(
    rows: list[dict[str, Any]], use_conf: bool, extra_neg: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    mel = [r for r in rows if r["truth"] == MELANOMA]
    nv = [r for r in rows if r["truth"] == NAEVUS]
    out: dict[str, Any] = {
        "n": len(rows),
        "n_melanoma": len(mel),
        "n_naevus": len(nv),
        "sensitivity": _prop(sum(r["correct"] for r in mel), len(mel)),
        "specificity": _prop(sum(r["correct"] for r in nv), len(nv)),
        "accuracy": _prop(sum(r["correct"] for r in rows), len(rows)),
    }
    neg = nv
    if not nv and extra_neg:
        neg = extra_neg
        out["auc_negatives"] = f"the reader's {len(extra_neg)} unmodified naevi (no naevi in this condition)"
    if mel and neg:
        y = [1] * len(mel) + [0] * len(neg)
        s = [score_of(r, use_conf) for r in mel + neg]
        out["auc"] = delong_auc_ci(y, s)
    else:
        out["auc"] = {"value": None, "ci_low": None, "ci_high": None, "note": "needs melanomas and naevi"}
    return out


def per_reader(rows: list[dict[str, Any]], min_answers: int = 10) -> list[dict[str, Any]]:
    """Metrics for every reader (status 'ok' or the reason they are left out of pooled analyses)."""
    readers = sorted({r["reader"] for r in rows}, key=_natural)
    out = []
    for rd in readers:
        mine = [r for r in rows if r["reader"] == rd]
        use_conf = all(r["confidence"] is not None for r in mine)
        n_mel = sum(r["truth"] == MELANOMA for r in mine)
        status = "ok"
        if len(mine) < min_answers:
            status = f"too few answers ({len(mine)} < {min_answers})"
        elif n_mel == 0 or n_mel == len(mine):
            status = "answers do not include both melanomas and naevi"
        unmod_nv = [r for r in mine if r["condition"] == UNMODIFIED and r["truth"] == NAEVUS]
        entry = {
            "reader": rd,
            "name": mine[0]["reader_name"],
            "status": status,
            "score": SCORE_CONFIDENCE if use_conf else SCORE_BINARY,
            "overall": _metrics(mine, use_conf),
            "by_condition": {
                c: _metrics(
                    [r for r in mine if r["condition"] == c],
                    use_conf,
                    extra_neg=unmod_nv if c == ADVERSARIAL else None,
                )
                for c in CONDITIONS
                if any(r["condition"] == c for r in mine)
            },
        }
        out.append(entry)
    return out


def _natural(text: str) -> tuple:
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def logistic_regression(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Logit of correctness on reader + melanoma + adversarial; odds ratios with Wald CIs and p-values."""
    import pandas as pd
    import statsmodels.formula.api as smf

    df = pd.DataFrame(
        {
            "correct": [r["correct"] for r in rows],
            "reader": [r["reader"] for r in rows],
            "melanoma": [int(r["truth"] == MELANOMA) for r in rows],
            "adversarial": [int(r["condition"] == ADVERSARIAL) for r in rows],
        }
    )
    result: dict[str, Any] = {
        "method": REGRESSION_METHOD,
        "n": len(df),
        "n_readers": int(df.reader.nunique()),
    }
    terms = []
    if df.reader.nunique() > 1:
        terms.append("C(reader)")
    for t in ("melanoma", "adversarial"):
        if df[t].nunique() > 1:
            terms.append(t)
        else:
            result.setdefault("notes", []).append(f"term {t!r} left out: it does not vary in the data")
    if "adversarial" not in terms or df.correct.nunique() < 2:
        result["error"] = "not estimable: needs both conditions and both correct and incorrect answers"
        return result
    formula = "correct ~ " + " + ".join(terms)
    result["formula"] = formula
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = smf.logit(formula, data=df).fit(disp=0, maxiter=200)
        except Exception as exc:  # perfect separation, singular matrix
            result["error"] = f"not estimable: {type(exc).__name__}: {exc}"
            return result
    notes = sorted({str(w.message).splitlines()[0] for w in caught})
    if notes:
        result.setdefault("notes", []).extend(notes)
    ci = fit.conf_int()
    result["converged"] = bool(fit.mle_retvals.get("converged", True))
    for t in ("adversarial", "melanoma"):
        if t not in fit.params:
            continue
        with np.errstate(over="ignore"):  # a separated fit has an infinite odds-ratio bound: report inf
            result[t] = {
                "coef": float(fit.params[t]),
                "se": float(fit.bse[t]),
                "odds_ratio": float(np.exp(fit.params[t])),
                "ci_low": float(np.exp(ci.loc[t, 0])),
                "ci_high": float(np.exp(ci.loc[t, 1])),
                "p_value": float(fit.pvalues[t]),
            }
    result["log_likelihood"] = float(fit.llf)
    return result


def by_attack(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Misdiagnosis rate (1 - accuracy, Wilson CI) per attack type and for unmodified images."""
    groups: dict[str, list[int]] = {}
    for r in rows:
        key = (r["attack"] or "(none)") if r["condition"] == ADVERSARIAL else "unmodified"
        groups.setdefault(key, []).append(1 - r["correct"])
    return {k: _prop(sum(v), len(v)) for k, v in sorted(groups.items())}


def _mrmc_records(rows: list[dict[str, Any]], readers: list[str]) -> tuple[list[dict[str, Any]], bool]:
    chosen = [r for r in rows if r["reader"] in set(readers)]
    use_conf = all(r["confidence"] is not None for r in chosen)
    records = [
        {
            "reader": r["reader"],
            "case": r["image"],
            "truth": int(r["truth"] == MELANOMA),
            "modality": r["condition"],
            "score": score_of(r, use_conf),
        }
        for r in chosen
    ]
    return records, use_conf


def mrmc(
    rows: list[dict[str, Any]],
    readers: list[str],
    covariance: str = "jackknife",
    incomplete: str = "refuse",
) -> dict[str, Any]:
    """OR MRMC comparison of AUC between unmodified and adversarial, over ``readers`` (see ``mrmc``)."""
    from dermadv.readerstudy.mrmc import COVARIANCES, METHOD, obuchowski_rockette

    records, use_conf = _mrmc_records(rows, readers)
    head = {"method": METHOD, "covariance": covariance, "covariance_method": COVARIANCES.get(covariance)}
    if len({r["modality"] for r in records}) < 2:
        return {**head, "error": "needs answers in both conditions"}
    try:
        res = obuchowski_rockette(
            records, [UNMODIFIED, ADVERSARIAL], covariance=covariance, incomplete=incomplete
        )
    except ValueError as exc:
        return {**head, "error": str(exc)}
    res["score"] = SCORE_CONFIDENCE if use_conf else SCORE_BINARY
    return res


def model_vs_readers(
    rows: list[dict[str, Any]],
    readers: list[str],
    model_scores: dict[str, float],
    covariance: str = "jackknife",
    incomplete: str = "refuse",
) -> dict[str, Any]:
    """The standalone model against the readers, per condition (``mrmc.model_vs_readers``); the
    readers' AUCs use the same score as the MRMC analysis."""
    from dermadv.readerstudy import mrmc as mr

    records, use_conf = _mrmc_records(rows, readers)
    conditions = [c for c in CONDITIONS if any(r["modality"] == c for r in records)]
    head = {
        "method": mr.MODEL_METHOD,
        "covariance": covariance,
        "covariance_method": mr.COVARIANCES.get(covariance),
    }
    if len(readers) < 2:
        return {**head, "error": f"needs at least 2 included readers, got {len(readers)}"}
    try:
        res = mr.model_vs_readers(
            records, model_scores, conditions, covariance=covariance, incomplete=incomplete
        )
    except ValueError as exc:
        return {**head, "error": str(exc)}
    res["score"] = SCORE_CONFIDENCE if use_conf else SCORE_BINARY
    return res


def load_model_scores(path: str | Path) -> dict[str, float]:
    """Read a model's scores: CSV with columns ``image`` and ``score`` (higher = more melanoma)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model scores file not found")
    out: dict[str, float] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"image", "score"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected image,score")
        for lineno, row in enumerate(reader, start=2):
            try:
                value = float(row["score"])
            except ValueError as exc:
                raise DataError(f"{path} line {lineno}: score {row['score']!r} is not a number") from exc
            if not math.isfinite(value):
                raise DataError(f"{path} line {lineno}: score {row['score']!r} is not finite")
            if row["image"] in out:
                raise DataError(f"{path} line {lineno}: image {row['image']!r} scored twice")
            out[row["image"]] = value
    if not out:
        raise DataError(f"{path}: no scores")
    return out


def model_curves(rows: list[dict[str, Any]], model_scores: dict[str, float]) -> list[Any]:
    """The model's ROC inputs per condition for ``report.figures.roc_plot`` (adversarial melanomas
    against the unmodified naevi, as for the readers); conditions the model did not score are left out."""
    from dermadv.report.figures import RocCurve

    images = {r["image"]: r for r in rows}
    naevi = [i for i, r in images.items() if r["truth"] == NAEVUS and r["condition"] == UNMODIFIED]
    out = []
    for c in CONDITIONS:
        pos = [i for i, r in images.items() if r["truth"] == MELANOMA and r["condition"] == c]
        neg = [i for i, r in images.items() if r["truth"] == NAEVUS and r["condition"] == c] or naevi
        if not pos or not neg or any(i not in model_scores for i in pos + neg):
            continue
        y = np.r_[np.ones(len(pos), int), np.zeros(len(neg), int)]
        scores = np.array([model_scores[i] for i in pos + neg], dtype=float)
        label = f"model, {c}" + (" (vs unmodified naevi)" if neg is naevi and c != UNMODIFIED else "")
        out.append(RocCurve(label=label, y_true=y, scores=scores))
    return out


def analyze(
    rows: list[dict[str, Any]],
    min_answers: int = 10,
    covariance: str = "jackknife",
    incomplete: str = "refuse",
    model_scores: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Full analysis of validated answer rows (see module docstring)."""
    from dermadv.readerstudy.mrmc import COVARIANCES, INCOMPLETE_POLICIES, METHOD

    if covariance not in COVARIANCES:
        raise DataError(f"--covariance must be one of {sorted(COVARIANCES)}, got {covariance!r}")
    if incomplete not in INCOMPLETE_POLICIES:
        raise DataError(f"--incomplete must be one of {list(INCOMPLETE_POLICIES)}, got {incomplete!r}")
    readers = per_reader(rows, min_answers)
    included = [r["reader"] for r in readers if r["status"] == "ok"]
    excluded = [
        {"reader": r["reader"], "name": r["name"], "reason": r["status"]}
        for r in readers
        if r["status"] != "ok"
    ]
    pooled_rows = [r for r in rows if r["reader"] in set(included)]
    result: dict[str, Any] = {
        "n_answers": len(rows),
        "n_readers": len(readers),
        "included_readers": included,
        "excluded_readers": excluded,
        "min_answers": min_answers,
        "methods": {
            "proportions": "Wilson score 95% CI",
            "auc": "DeLong 95% CI (normal approximation)",
            "regression": REGRESSION_METHOD,
            "mrmc": f"{METHOD}; covariances: {COVARIANCES[covariance]}",
            "mrmc_covariance": covariance,
            "mrmc_intervals": "AUC CIs clipped to [0, 1], CIs of AUC differences to [-1, 1] "
            "(reported when clipped)",
            "mrmc_incomplete": incomplete,
        },
        "per_reader": readers,
        "misdiagnosis_by_attack": by_attack(pooled_rows) if pooled_rows else {},
    }
    result["regression"] = (
        logistic_regression(pooled_rows) if pooled_rows else {"error": "no readers included"}
    )
    result["mrmc"] = (
        mrmc(pooled_rows, included, covariance, incomplete)
        if len(included) >= 2
        else {"error": f"needs at least 2 included readers, got {len(included)}"}
    )
    if model_scores is not None:
        result["model_vs_readers"] = model_vs_readers(
            pooled_rows, included, model_scores, covariance, incomplete
        )
    return result


def analyze_file(
    path: str | Path,
    out_dir: str | Path | None = None,
    reference_band: tuple[float, float] | None = None,
    min_answers: int = 10,
    covariance: str = "jackknife",
    incomplete: str = "refuse",
    model_scores: str | Path | None = None,
) -> dict[str, Any]:
    """Analyse an answers CSV; with ``out_dir`` write analysis.json, per_reader.csv and the figure.
    ``model_scores``: CSV (image, score) of a standalone model on the same images."""
    from dermadv import __version__
    from dermadv.runs.provenance import file_sha256

    path = Path(path)
    rows = load_answers(path)
    scores = load_model_scores(model_scores) if model_scores is not None else None
    result = analyze(rows, min_answers, covariance, incomplete, scores)
    result["provenance"] = {
        "answers": str(path.resolve()),
        "sha256": file_sha256(path),
        "dermadv_version": __version__,
        "reference_band": reference_band,
        "min_answers": min_answers,
        "covariance": covariance,
        "incomplete": incomplete,
    }
    if model_scores is not None:
        result["provenance"]["model_scores"] = str(Path(model_scores).resolve())
        result["provenance"]["model_scores_sha256"] = file_sha256(Path(model_scores))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fig = out / "reader_study.png"
        plot_readers(result, fig, reference_band)
        result["figure"] = str(fig)
        if scores is not None:
            from dermadv.report.figures import roc_plot

            curves = model_curves(rows, scores)
            if curves:
                model_fig = out / "model_roc.png"
                atomic_write_bytes(model_fig, roc_plot(curves, title="Standalone model on the study images"))
                result["model_figure"] = str(model_fig)
        atomic_write_text(out / "per_reader.csv", per_reader_csv(result))
        atomic_write_text(out / "analysis.json", json.dumps(jsonable(result), indent=2) + "\n")
    return result


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else str(obj)
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj


def per_reader_csv(result: dict[str, Any]) -> str:
    """Per-reader table as CSV: one row per reader and condition ('all' included)."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["reader", "name", "status", "condition", "n"]
    for m in ("sensitivity", "specificity", "auc"):
        head += [m, f"{m}_ci_low", f"{m}_ci_high"]
    w.writerow(head + ["score"])
    for r in result["per_reader"]:
        for cond, m in [("all", r["overall"]), *r["by_condition"].items()]:
            row = [r["reader"], r["name"], r["status"], cond, m["n"]]
            for k in ("sensitivity", "specificity", "auc"):
                row += [_fmt(m[k].get("value")), _fmt(m[k].get("ci_low")), _fmt(m[k].get("ci_high"))]
            w.writerow(row + [r["score"]])
    return buf.getvalue()


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.4f}"


#: Above this many readers the figure switches to a dense layout (full-width per-reader panels, small
#: markers, every k-th reader labelled).
DENSE_READERS = 30


def _figure_layout(n_readers: int) -> tuple[Any, list[Any], bool]:
    import matplotlib.pyplot as plt

    if n_readers <= DENSE_READERS:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
        return fig, list(axes), False
    width = min(max(13.0, 0.07 * n_readers + 2), 24.0)
    fig = plt.figure(figsize=(width, 12))
    grid = fig.add_gridspec(3, 3, height_ratios=(1, 1, 1.3))
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, :]), fig.add_subplot(grid[2, 1])]
    return fig, axes, True


def _reader_panel(
    ax: Any, readers: list[dict[str, Any]], metric: str, band: tuple[float, float] | None, dense: bool
) -> None:
    colours = {UNMODIFIED: "#1f77b4", ADVERSARIAL: "#d62728"}
    if band:
        ax.axhspan(band[0], band[1], color="0.85", zorder=0, label="reference band")
    offset = 0.0 if dense else 0.08
    for x, r in enumerate(readers):
        pts = [(c, r["by_condition"].get(c, {}).get(metric, {}).get("value")) for c in CONDITIONS]
        vals = [(c, v) for c, v in pts if v is not None]
        if len(vals) == 2:
            ax.plot([x, x], [vals[0][1], vals[1][1]], color="0.6", lw=0.5 if dense else 1, zorder=1)
        for c, v in vals:
            m = r["by_condition"][c][metric]
            ax.errorbar(
                x + (-offset if c == UNMODIFIED else offset),
                v,
                yerr=None if dense else [[max(v - m["ci_low"], 0.0)], [max(m["ci_high"] - v, 0.0)]],
                fmt="o",
                color=colours[c],
                mfc=colours[c] if r["status"] == "ok" else "white",
                ms=3 if dense else 6,
                capsize=0 if dense else 2,
                zorder=2,
                label=c if x == 0 else None,
            )
    step = max(1, math.ceil(len(readers) / 50)) if dense else 1
    ticks = list(range(0, len(readers), step))
    ax.set_xticks(
        ticks,
        [str(readers[i]["reader"]) for i in ticks],
        rotation=90 if len(readers) > 12 else 0,
        fontsize=6 if dense else None,
    )
    ax.set_xlim(-1, len(readers))
    ax.set_xlabel("reader" + (f" (every {step}th labelled)" if step > 1 else ""))
    ax.set_ylabel(metric)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{metric.capitalize()} per reader")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)


def _roc_panel(ax: Any, result: dict[str, Any], band: tuple[float, float] | None, dense: bool) -> None:
    colours = {UNMODIFIED: "#1f77b4", ADVERSARIAL: "#d62728"}
    if band:
        ax.axhspan(band[0], band[1], color="0.85", zorder=0, label="reference band (sensitivity)")
    for r in result["per_reader"]:
        unm = r["by_condition"].get(UNMODIFIED, {})
        adv = r["by_condition"].get(ADVERSARIAL, {})
        spec_u = unm.get("specificity", {}).get("value")
        for c, cond in ((UNMODIFIED, unm), (ADVERSARIAL, adv)):
            sens = cond.get("sensitivity", {}).get("value")
            spec = cond.get("specificity", {}).get("value")
            spec = spec if spec is not None else spec_u  # adversarial melanomas only: unmodified naevi
            if sens is not None and spec is not None:
                ax.plot(
                    1 - spec,
                    sens,
                    "o",
                    ms=3 if dense else 6,
                    alpha=0.6 if dense else 1,
                    color=colours[c],
                    mfc=colours[c] if r["status"] == "ok" else "white",
                )
    for c in CONDITIONS:
        ax.plot([], [], "o", color=colours[c], label=c)
    ax.plot([0, 1], [0, 1], ls=":", color="0.5")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Readers in ROC space")
    ax.legend(loc="lower right", fontsize=8)


def plot_readers(result: dict[str, Any], path: Path, band: tuple[float, float] | None = None) -> None:
    """Figure like the study's Supplementary Figure 2c: each reader's sensitivity and specificity on
    unmodified vs adversarial images (paired points) and their ROC-space points; optional band. Many
    readers (> ``DENSE_READERS``): a dense layout. (The model's ROC curves: ``model_roc.png``.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    readers = list(result["per_reader"])
    fig, axes, dense = _figure_layout(len(readers))
    for ax, metric in zip(axes[:2], ("sensitivity", "specificity"), strict=True):
        _reader_panel(ax, readers, metric, band, dense)
    _roc_panel(axes[2], result, band, dense)
    axes[2].set_xlabel("1 - specificity")
    axes[2].set_ylabel("sensitivity")
    bars = "no bars (too many readers; CIs in per_reader.csv)" if dense else "bars: Wilson 95% CI"
    fig.text(0.01, 0.01, f"open markers: readers left out (too few answers); {bars}", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    try:
        with atomic_target(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)


def format_report(result: dict[str, Any]) -> str:
    """Human-readable summary of ``analyze``'s result."""

    def ci(m: dict[str, Any]) -> str:
        if m.get("value") is None:
            return "n/a"
        return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"

    lines = [
        f"{result['n_answers']} answers from {result['n_readers']} readers "
        f"({len(result['included_readers'])} included)"
    ]
    for e in result["excluded_readers"]:
        lines.append(f"  left out: reader {e['reader']} ({e['name']}): {e['reason']}")
    lines.append("")
    lines.append(
        f"{'reader':<10} {'condition':<12} {'n':>4}  {'sensitivity':<22} {'specificity':<22} {'AUC':<22}"
    )
    for r in result["per_reader"]:
        for cond, m in [("all", r["overall"]), *r["by_condition"].items()]:
            lines.append(
                f"{r['reader']:<10} {cond:<12} {m['n']:>4}  {ci(m['sensitivity']):<22} "
                f"{ci(m['specificity']):<22} {ci(m['auc']):<22}"
            )
        lines.append(f"{'':<10} AUC from: {r['score']}")
    lines.append("95% CIs: Wilson (proportions), DeLong (AUC)")
    reg = result["regression"]
    lines.append("")
    if "adversarial" in reg:
        a = reg["adversarial"]
        lines.append(f"Logistic regression ({reg.get('formula')}), n = {reg['n']}:")
        lines.append(
            f"  adversarial vs unmodified: odds ratio of a correct answer {a['odds_ratio']:.3f} "
            f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}], p = {a['p_value']:.3g}"
        )
        if "melanoma" in reg:
            m = reg["melanoma"]
            lines.append(
                f"  melanoma vs naevus: odds ratio {m['odds_ratio']:.3f} [{m['ci_low']:.3f}, "
                f"{m['ci_high']:.3f}], p = {m['p_value']:.3g}"
            )
    else:
        lines.append(f"Logistic regression: {reg.get('error')}")
    for n in reg.get("notes", []):
        lines.append(f"  note: {n}")
    lines.append("")
    lines.extend(mrmc_lines(result["mrmc"]))
    if "model_vs_readers" in result:
        lines.append("")
        lines.extend(model_lines(result["model_vs_readers"]))
    if result.get("misdiagnosis_by_attack"):
        lines.append("")
        lines.append("Misdiagnosed (1 - accuracy, Wilson 95% CI), included readers:")
        for k, m in result["misdiagnosis_by_attack"].items():
            lines.append(f"  {k:<16} {ci(m)}  (n = {m['n']})")
    if result.get("figure"):
        lines.append(f"\nfigure: {result['figure']}")
    if result.get("model_figure"):
        lines.append(f"model ROC figure: {result['model_figure']}")
    return "\n".join(lines)


def _covariance_text(res: dict[str, Any]) -> str:
    cov = res.get("covariance")
    if cov == "jackknife":
        return "jackknife covariances (the default: what OR-DBM MRMC, RJafroc and MRMCaov use)"
    return f"{cov} covariances ({res.get('covariance_method')})"


def _ddf(v: float) -> str:
    return "inf" if not math.isfinite(v) else f"{v:.2f}"


def mrmc_lines(mr: dict[str, Any]) -> list[str]:
    """Text lines for an ``obuchowski_rockette`` result (or its error)."""
    if "error" in mr:
        return [f"MRMC: {mr['error']}"]
    lines = [f"MRMC: {mr['method']}, {_covariance_text(mr)}; design {mr['design']}; AUC from {mr['score']}:"]
    for m, v in mr["per_modality"].items():
        lines.append(
            f"  {m}: mean AUC {v['auc']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}] (df {_ddf(v['df'])}; "
            f"{v['n_positive']} positive, {v['n_negative']} negative cases)"
        )
    vc = mr["var_components"]
    lines.append(
        f"  Var(R) {vc['var_r']:.6g}, Var(TxR) {vc['var_tr']:.6g}, Cov1 {vc['cov1']:.6g}, "
        f"Cov2 {vc['cov2']:.6g}, Cov3 {vc['cov3']:.6g}, Var(error) {vc['var']:.6g}"
    )
    for key in ("rrrc", "frrc", "rrfc"):
        a = mr["analyses"][key]
        c = a["comparisons"][0]
        stat = (
            f"chi2 = {a['chi2']:.4f} (df {a['df1']})"
            if key == "frrc"
            else (f"F = {a['f']:.4f}, df ({a['df1']}, {_ddf(a['ddf'])})")
        )
        lines.append(
            f"  {a['label']}: {c['modalities'][0]} - {c['modalities'][1]} = {c['difference']:.4f} "
            f"[{c['ci_low']:.4f}, {c['ci_high']:.4f}], {stat}, p = {a['p_value']:.4g}"
        )
    raw = mr["analyses"]["frrc"].get("untruncated")
    if raw:
        lines.append(
            f"  fixed readers with Cov2 - Cov3 untruncated ({raw['convention'].split(':')[0]}): "
            f"chi2 = {raw['chi2']:.4f}, p = {raw['p_value']:.4g}"
        )
    dbm = mr.get("dbm", {})
    if "error" in dbm:
        lines.append(f"  DBM: not computed: {dbm['error']}")
    elif dbm:
        a = dbm["analyses"]["rrrc"]
        lines.append(
            f"  DBM (pseudovalues, random readers and cases): F = {a['f']:.4f}, "
            f"df (1, {_ddf(a['ddf'])}), p = {a['p_value']:.4g}"
        )
    lines.append(f"  convention: {mr['cov2_cov3_convention']}")
    for n in mr["notes"]:
        lines.append(f"  note: {n}")
    for w in mr.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    return lines


def model_lines(mvr: dict[str, Any]) -> list[str]:
    """Text lines for a ``model_vs_readers`` result (or its error)."""
    if "error" in mvr:
        return [f"Model vs readers: {mvr['error']}"]
    lines = [f"Model vs readers: {mvr['method']}, {_covariance_text(mvr)}:"]
    for m, v in mvr["by_modality"].items():
        ci = f"[{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
        lines.append(
            f"  {m}: model AUC {v['model_auc']:.4f}, mean reader AUC {v['mean_reader_auc']:.4f}; "
            f"readers - model {v['difference']:.4f} {ci}, t = {v['t']:.3f}, df {_ddf(v['ddf'])}, "
            f"p = {v['p_value']:.4g}"
        )
    for n in mvr["notes"]:
        lines.append(f"  note: {n}")
    for w in mvr.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    return lines
