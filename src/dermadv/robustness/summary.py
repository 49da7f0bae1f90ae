"""What a robustness run says: flip rates with lesion-level CIs, fragile shares, where flips happen,
performance under each transform against clean, strata, and the published benchmark metrics.

Definitions (per transform and severity; "call" = melanoma score >= threshold):

- an image's *flip probability*: the share of its draws whose call differs from its unmodified
  call, with a Clopper-Pearson interval;
- *flip rate*: the mean flip probability over images (each image counts once, whatever its number of
  draws), with a 95% CI that covers both sources of uncertainty: the percentile bootstrap over lesions
  (all images of a lesion drawn together; it sees how lesions differ, but collapses to a point when
  every image flips never, or always) joined with the Clopper-Pearson interval of all draws pooled
  (it sees that a finite number of draws was made): the CI runs from the lower of the two lows to the
  higher of the two highs;
- *fragile share*: the share of images with flip probability > 0, and > 0.5;
- accuracy, sensitivity, specificity and balanced error *under the transform*: each image counts by
  the share of its draws called correctly; *clean*: its unmodified call. The difference has a paired
  lesion bootstrap CI (the same lesions resampled for both);
- *flips by parameter*: flip share of all draws in 10 equal bins of each parameter; a 2-D map for
  the pair that matters most (green x red gain; angle x shift distance; otherwise the first two);
- strata: by data source and by skin tone from the individual typology angle (ITA) of the skin
  around the lesion -- an estimate from the image, never a recorded skin type.

Benchmarks: SAM-C's balanced corruption error per corruption and severity, mBCE and relative mBCE;
SAM-P's flip probability per sequence and mFR (:mod:`dermadv.robustness.published`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.fileio import atomic_write_bytes, atomic_write_text
from dermadv.robustness.stats import (
    balanced_error,
    clopper_pearson,
    lesion_bootstrap_ci,
    paired_correctness_bootstrap,
)

if TYPE_CHECKING:
    from dermadv.data.dataset import Sample
    from dermadv.models.base import Classifier
    from dermadv.robustness.run import StopRule, TransformKey

N_BOOT = 2000
BINS = 10
IMAGE_COLUMNS = (
    "transform",
    "image_id",
    "lesion_id",
    "source",
    "diagnosis",
    "skin_tone_estimate",
    "ita_estimate",
    "clean_score",
    "clean_call",
    "draws",
    "flips",
    "flip_probability",
    "ci_low",
    "ci_high",
    "stop",
    "forwards",
)
SUMMARY_COLUMNS = (
    "transform",
    "severity",
    "n_images",
    "flip_rate",
    "flip_ci_low",
    "flip_ci_high",
    "fragile_any",
    "fragile_any_ci_low",
    "fragile_any_ci_high",
    "fragile_half",
    "fragile_half_ci_low",
    "fragile_half_ci_high",
    "accuracy_clean",
    "accuracy",
    "accuracy_delta_ci_low",
    "accuracy_delta_ci_high",
    "sensitivity_clean",
    "sensitivity",
    "sensitivity_delta_ci_low",
    "sensitivity_delta_ci_high",
    "specificity_clean",
    "specificity",
    "specificity_delta_ci_low",
    "specificity_delta_ci_high",
    "balanced_error_clean",
    "balanced_error",
    "balanced_error_delta_ci_low",
    "balanced_error_delta_ci_high",
    "forwards",
    "forwards_fixed_n",
    "forwards_saved",
)


def _groups(samples: Sequence[Sample]) -> NDArray[np.int64]:
    """Lesion index per image (an image without a lesion id is its own lesion)."""
    keys = [s.lesion_id or f"image:{s.image_id}" for s in samples]
    _, inverse = np.unique(np.asarray(keys), return_inverse=True)
    out: NDArray[np.int64] = inverse.astype(np.int64)
    return out


def _rates(y: NDArray[np.bool_], correct: NDArray[np.float64]) -> dict[str, float | None]:
    """Accuracy, sensitivity, specificity and balanced error from per-image (expected) correctness."""
    sens = float(correct[y].mean()) if y.any() else None
    spec = float(correct[~y].mean()) if (~y).any() else None
    be = None if sens is None or spec is None else 1 - (sens + spec) / 2
    return {"accuracy": float(correct.mean()), "sensitivity": sens, "specificity": spec, "balanced_error": be}


def paired_delta_ci(
    y: NDArray[np.bool_],
    clean: NDArray[np.float64],
    perturbed: NDArray[np.float64],
    groups: NDArray[np.int64],
    metric: str,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """95% lesion-bootstrap CI of ``metric`` under the transform minus clean (same lesions for both),
    from per-image shares of correct calls (:func:`dermadv.robustness.stats.paired_correctness_bootstrap`).

    Replicates in which the metric is undefined (no melanoma or no naevus drawn) are left out; None
    when the metric is undefined on the whole selection (e.g. sensitivity without melanomas)."""
    if metric in ("sensitivity", "balanced_error") and not np.any(y):
        return None, None
    if metric in ("specificity", "balanced_error") and np.all(y):
        return None, None
    res = paired_correctness_bootstrap(y, clean, perturbed, groups, metric, n_boot=n_boot, seed=seed)
    lo, hi = res["ci"]
    if math.isnan(lo):
        return None, None
    return float(lo), float(hi)


def _image_rows(
    key: str,
    samples: Sequence[Sample],
    rows: Mapping[str, dict[str, Any]],
    threshold: float,
    sources: Mapping[str, str],
) -> list[dict[str, Any]]:
    out = []
    for s in samples:
        r = rows[s.image_id]
        scores = np.asarray(r["scores"], dtype=np.float64)
        clean_call = r["clean_score"] >= threshold
        flips = int(np.sum((scores >= threshold) != clean_call))
        n = len(scores)
        lo, hi = clopper_pearson(flips, n)
        out.append(
            {
                "transform": key,
                "image_id": s.image_id,
                "lesion_id": s.lesion_id,
                "source": sources.get(s.image_id, ""),
                "diagnosis": s.diagnosis,
                "skin_tone_estimate": r.get("ita_category"),
                "ita_estimate": r.get("ita"),
                "clean_score": r["clean_score"],
                "clean_call": "melanoma" if clean_call else "benign",
                "draws": n,
                "flips": flips,
                "flip_probability": flips / n if n else None,
                "ci_low": lo,
                "ci_high": hi,
                "stop": r["stop"],
                "forwards": r["forwards"],
            }
        )
    return out


def _transform_row(
    t: TransformKey,
    samples: Sequence[Sample],
    rows: Mapping[str, dict[str, Any]],
    image_rows: list[dict[str, Any]],
    stop: StopRule,
    threshold: float,
) -> dict[str, Any]:
    groups = _groups(samples)
    y = np.array([s.diagnosis == "mel" for s in samples])
    p = np.array([r["flip_probability"] for r in image_rows], dtype=np.float64)
    clean = np.array(
        [(rows[s.image_id]["clean_score"] >= threshold) == y[i] for i, s in enumerate(samples)], float
    )
    pert = np.array(
        [
            np.mean((np.asarray(rows[s.image_id]["scores"]) >= threshold) == y[i])
            for i, s in enumerate(samples)
        ]
    )
    est, lo, hi = lesion_bootstrap_ci(p, groups, n_boot=N_BOOT)
    n_draws = sum(int(r["draws"]) for r in image_rows)
    pooled_lo, pooled_hi = clopper_pearson(sum(int(r["flips"]) for r in image_rows), n_draws)
    lo, hi = min(lo, pooled_lo), max(hi, pooled_hi)
    any_, any_lo, any_hi = lesion_bootstrap_ci((p > 0).astype(float), groups, n_boot=N_BOOT)
    half, half_lo, half_hi = lesion_bootstrap_ci((p > 0.5).astype(float), groups, n_boot=N_BOOT)
    rc, rp = _rates(y, clean), _rates(y, pert)
    acc_lo, acc_hi = paired_delta_ci(y, clean, pert, groups, "accuracy")
    be_lo, be_hi = paired_delta_ci(y, clean, pert, groups, "balanced_error")
    se_lo, se_hi = paired_delta_ci(y, clean, pert, groups, "sensitivity")
    sp_lo, sp_hi = paired_delta_ci(y, clean, pert, groups, "specificity")
    forwards = int(sum(r["forwards"] for r in image_rows))
    fixed = len(samples) * (1 + stop.samples) if t.mode == "sample" else forwards
    return {
        "transform": t.key,
        "severity": t.severity,
        "n_images": len(samples),
        "flip_rate": est,
        "flip_ci_low": lo,
        "flip_ci_high": hi,
        "fragile_any": any_,
        "fragile_any_ci_low": any_lo,
        "fragile_any_ci_high": any_hi,
        "fragile_half": half,
        "fragile_half_ci_low": half_lo,
        "fragile_half_ci_high": half_hi,
        "accuracy_clean": rc["accuracy"],
        "accuracy": rp["accuracy"],
        "accuracy_delta_ci_low": acc_lo,
        "accuracy_delta_ci_high": acc_hi,
        "sensitivity_clean": rc["sensitivity"],
        "sensitivity": rp["sensitivity"],
        "sensitivity_delta_ci_low": se_lo,
        "sensitivity_delta_ci_high": se_hi,
        "specificity_clean": rc["specificity"],
        "specificity": rp["specificity"],
        "specificity_delta_ci_low": sp_lo,
        "specificity_delta_ci_high": sp_hi,
        "balanced_error_clean": rc["balanced_error"],
        "balanced_error": rp["balanced_error"],
        "balanced_error_delta_ci_low": be_lo,
        "balanced_error_delta_ci_high": be_hi,
        "forwards": forwards,
        "forwards_fixed_n": fixed,
        "forwards_saved": 1 - forwards / fixed if fixed else 0.0,
    }


def _map_axes(
    name: str, params: NDArray[np.float64]
) -> tuple[str, str, NDArray[np.float64], NDArray[np.float64]] | None:
    """The two axes of the 2-D flip map: green x red gain, angle x shift distance, else the first two."""
    if params.shape[1] < 2:
        return None
    if name == "color":
        return "c_g (green gain)", "c_r (red gain)", params[:, 1], params[:, 0]
    if name == "rotation":
        return "angle (degrees)", "shift distance (px)", params[:, 0], np.hypot(params[:, 1], params[:, 2])
    return "param 1", "param 2", params[:, 0], params[:, 1]


def _where(
    t: TransformKey, samples: Sequence[Sample], rows: Mapping[str, dict[str, Any]], threshold: float
) -> dict[str, Any]:
    """Flip share of all draws by parameter bin, and the 2-D map."""
    from dermadv.perturb.base import PERTURBATIONS

    names = list(PERTURBATIONS.create(t.name).param_names)
    params = np.concatenate(
        [np.asarray(rows[s.image_id]["params"], dtype=np.float64).reshape(-1, len(names)) for s in samples]
    )
    flipped = np.concatenate(
        [
            (np.asarray(rows[s.image_id]["scores"]) >= threshold)
            != (rows[s.image_id]["clean_score"] >= threshold)
            for s in samples
        ]
    )
    curves = {}
    for k, n in enumerate(names):
        col = params[:, k]
        lo, hi = float(col.min()), float(col.max())
        if hi <= lo:
            continue
        edges = np.linspace(lo, hi, BINS + 1)
        idx = np.clip(np.digitize(col, edges) - 1, 0, BINS - 1)
        counts = np.bincount(idx, minlength=BINS)
        flips = np.bincount(idx, weights=flipped, minlength=BINS)
        curves[n] = {
            "edges": edges.tolist(),
            "draws": counts.tolist(),
            "flip_share": [float(f / c) if c else None for f, c in zip(flips, counts, strict=True)],
        }
    out: dict[str, Any] = {"by_parameter": curves, "n_draws": int(len(flipped))}
    axes = _map_axes(t.name, params)
    if axes is not None and len(flipped):
        xl, yl, xv, yv = axes
        h_all, xe, ye = np.histogram2d(xv, yv, bins=BINS)
        h_flip, _, _ = np.histogram2d(xv, yv, bins=[xe, ye], weights=flipped.astype(float))
        share = np.where(h_all > 0, h_flip / np.maximum(h_all, 1), np.nan)
        out["map"] = {
            "x": xl,
            "y": yl,
            "x_edges": xe.tolist(),
            "y_edges": ye.tolist(),
            "flip_share": [[None if np.isnan(v) else float(v) for v in row] for row in share],
        }
    return out


def _strata(key: str, samples: Sequence[Sample], image_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    groups = _groups(samples)
    p = np.array([r["flip_probability"] for r in image_rows], dtype=np.float64)
    for column, label in (("source", "data source"), ("skin_tone_estimate", "skin tone (ITA estimate)")):
        values = np.array([str(r[column] or "unknown") for r in image_rows])
        for v in sorted(set(values)):
            m = values == v
            est, lo, hi = lesion_bootstrap_ci(p[m], groups[m], n_boot=N_BOOT)
            out.append(
                {
                    "transform": key,
                    "stratum": label,
                    "value": v,
                    "n_images": int(m.sum()),
                    "flip_rate": est,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return out


def _sam_c(
    samples: Sequence[Sample],
    keys: Sequence[TransformKey],
    results: Mapping[str, Mapping[str, dict[str, Any]]],
    threshold: float,
) -> dict[str, Any]:
    """SAM-C: balanced corruption error per corruption and severity, mBCE and relative mBCE."""
    from dermadv.robustness.published import (
        balanced_corruption_errors,
        mean_bce,
        relative_mbce,
        severity_errors,
    )

    y = np.array([s.diagnosis == "mel" for s in samples])
    first = results[keys[0].key]
    clean_bce = balanced_error(y, [first[s.image_id]["clean_score"] >= threshold for s in samples])
    preds: dict[str, dict[int, list[bool]]] = {}
    for k in keys:  # scores[s - 1]: the corruption at severity s
        preds[k.name] = {
            sev: [results[k.key][s.image_id]["scores"][sev - 1] >= threshold for s in samples]
            for sev in range(1, 6)
        }
    per = balanced_corruption_errors(y, preds)
    return {
        "clean_bce": clean_bce,
        "bce": {n: {str(sev): v for sev, v in by.items()} for n, by in severity_errors(y, preds).items()},
        "bce_per_corruption": per,
        "mbce": mean_bce(per),
        "relative_mbce": relative_mbce(per, clean_bce),
        "definition": "BCE = 1 - balanced accuracy of the calls under a corruption and severity; per "
        "corruption the mean over severities 1-5; mBCE the mean over corruptions; relative: BCE - clean "
        "BCE (Maron et al. 2021)",
    }


def _sam_p(
    samples: Sequence[Sample],
    keys: Sequence[TransformKey],
    results: Mapping[str, Mapping[str, dict[str, Any]]],
    threshold: float,
) -> dict[str, Any]:
    """SAM-P: flip probability per sequence (ImageNet-P) and mFR."""
    from dermadv.robustness.published import flip_probability, reference_for

    fp = {}
    for k in keys:
        labels = np.array(
            [np.asarray(results[k.key][s.image_id]["scores"]) >= threshold for s in samples]
        ).astype(int)
        fp[k.name] = float(flip_probability(labels, reference_for(k.name)))
    return {
        "flip_probability": fp,
        "mfr": float(np.mean(list(fp.values()))),
        "definition": "flip probability over 31-frame sequences: noise sequences against the first frame, "
        "the others frame to frame (Hendrycks & Dietterich 2019); mFR the mean over the 10 sequences "
        "(unadjusted)",
    }


def summarize_run(
    samples: Sequence[Sample],
    transforms: Sequence[TransformKey],
    results: Mapping[str, Mapping[str, dict[str, Any]]],
    *,
    stop: StopRule,
    threshold: float,
    sources: Mapping[str, str],
    model: Classifier | None = None,
) -> dict[str, Any]:
    """Everything a robustness run reports (see the module docstring), as plain JSON-able data."""
    image_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    where: dict[str, Any] = {}
    strata: list[dict[str, Any]] = []
    sampled = [t for t in transforms if t.mode == "sample"]
    for t in sampled:
        per_image = _image_rows(t.key, samples, results[t.key], threshold, sources)
        image_rows += per_image
        rows.append(_transform_row(t, samples, results[t.key], per_image, stop, threshold))
        where[t.key] = _where(t, samples, results[t.key], threshold)
        strata += _strata(t.key, samples, per_image)
    summary: dict[str, Any] = {
        "model": None if model is None else model.describe().get("name"),
        "n_images": len(samples),
        "rows": rows,
        "images": image_rows,
        "where": where,
        "strata": strata,
        "skin_tone_note": "skin tone is an estimate: the individual typology angle (ITA) of the skin "
        "around the lesion, measured on the image, not a recorded Fitzpatrick type",
    }
    sam_c = [t for t in transforms if t.mode == "sam-c"]
    sam_p = [t for t in transforms if t.mode == "sam-p"]
    if sam_c:
        summary["sam_c"] = _sam_c(samples, sam_c, results, threshold)
    if sam_p:
        summary["sam_p"] = _sam_p(samples, sam_p, results, threshold)
    forwards = sum(r["forwards"] for t in transforms for r in results[t.key].values())
    summary["forwards"] = int(forwards)
    summary["forwards_fixed_n"] = int(sum(r["forwards_fixed_n"] for r in rows)) + int(
        sum(r["forwards"] for t in transforms if t.mode != "sample" for r in results[t.key].values())
    )
    return summary


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(
            {
                k: "" if r.get(k) is None else (repr(r[k]) if isinstance(r.get(k), float) else r[k])
                for k in columns
            }
        )
    return buf.getvalue()


def write_outputs(out: Path, summary: Mapping[str, Any], model_name: str) -> dict[str, str]:
    """robustness.json, robustness.csv, robustness_images.csv, robustness_strata.csv and the figures."""
    from dermadv.report.figures import robustness_figures

    files = {
        "json": out / "robustness.json",
        "csv": out / "robustness.csv",
        "images_csv": out / "robustness_images.csv",
        "strata_csv": out / "robustness_strata.csv",
    }
    atomic_write_text(files["json"], json.dumps(summary, indent=1, default=float))
    atomic_write_text(files["csv"], _csv(summary["rows"], SUMMARY_COLUMNS))
    atomic_write_text(files["images_csv"], _csv(summary["images"], IMAGE_COLUMNS))
    atomic_write_text(
        files["strata_csv"],
        _csv(
            summary["strata"], ("transform", "stratum", "value", "n_images", "flip_rate", "ci_low", "ci_high")
        ),
    )
    names = {}
    for name, png in robustness_figures(summary, title=model_name).items():
        path = out / f"robustness_{name}.png"
        atomic_write_bytes(path, png)
        names[f"png_{name}"] = path
    return {k: str(v) for k, v in {**files, **names}.items()}


def read_robustness(run: str | Path) -> dict[str, Any]:
    """The summary of a finished robustness run (``robustness.json``)."""
    from dermadv.errors import DataError

    p = Path(run) / "robustness.json"
    if not p.exists():
        raise DataError(f"{run}: no robustness.json (not a finished robustness run)")
    data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    return data
