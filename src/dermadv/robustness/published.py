"""Robustness metrics exactly as published, so that results compare with the literature.

**ImageNet-P** (Hendrycks & Dietterich 2019, "Benchmarking neural network robustness to common
corruptions and perturbations", ICLR; code: github.com/hendrycks/robustness, ``ImageNet-P/test.py``).
A perturbation sequence is frames x_1..x_m of one image. The flip probability of classifier f on
perturbation p is

    FP_p = 1 / (n (m - 1)) * sum_i sum_{j=2..m} 1[f(x_j^i) != f(x_ref(j)^i)]

over n sequences, with ref(j) = j - 1 (frame to frame) for the geometric, blur, brightness, ...
sequences and ref(j) = 1 (every frame against the first) for the noise sequences, whose frames are
independent noise draws around the clean image rather than a gradual change. The published code picks
the noise rule for every perturbation whose name contains "noise" (:func:`reference_for`). Its
``--difficulty`` d > 1 evaluates non-noise sequences with frame stride d (d interleaved sub-sequences,
x_i, x_{i+d}, ...), which ``step`` reproduces; it runs one difficulty per call, and combining
difficulties is left to the caller. The flip rate normalises by a baseline model (AlexNet):
FR_p = FP_p / FP_p^baseline, and mFR is the mean of FR_p over the perturbation types.

Left out: the top-5 distance (T5D) and Zipf distance of the same code, which compare full class
rankings between frames and carry nothing for a two-class (naevus/melanoma) classifier, whose top 5
always holds both classes; and the mean
corruption error (mCE) of ImageNet-C, whose SAM-C counterpart, mBCE, is here.

**SAM, SAM-C, SAM-P** (Maron et al. 2021, "A benchmark for neural network robustness in skin cancer
classification", Eur J Cancer 155:191-199; code and reference results:
github.com/DBO-DKFZ/SCP-Robustness-Benchmark). Melanoma vs naevus; the error of one image set is the
balanced error BCE = 1 - (sensitivity + specificity) / 2 (threshold 0.5 on the melanoma score).
SAM-C has 14 corruptions at 5 severities: BCE_c is the mean over severities, mBCE the mean over
corruptions, the relative BCE_c - BCE_clean. SAM-P has 10 sequences of 31 frames per image: mFR (as the
benchmark names it) is the mean flip probability over the sequences. The "adjusted" values divide by the
AlexNet baseline sequence by sequence, as ``code/evaluation.py`` of the benchmark does (see
:func:`benchmark_score`). The benchmark withholds its labels: scores come back from the organisers as one
CSV per dataset (:func:`read_sam_scores`) after a submission (:func:`write_sam_submission`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_text
from dermadv.robustness.stats import balanced_error

Reference = Literal["first", "previous"]

#: SAM-C corruptions, in the order of the benchmark's result files.
SAM_C_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "black_corner",
    "char",
    "brightness_up",
    "brightness_down",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
#: SAM-P perturbation sequences, in the order of the benchmark's result files.
SAM_P_SEQUENCES = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "char",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)
#: Columns of a SAM submission file.
SUBMISSION_COLUMNS = ("image_path", "nevus", "melanoma")


# ----- ImageNet-P flip probability ----------------------------------------------------------------
def reference_for(perturbation: str) -> Reference:
    """The published comparison rule: ``"first"`` for noise sequences, ``"previous"`` for the others."""
    return "first" if "noise" in perturbation else "previous"


def _label_matrix(predictions: ArrayLike) -> NDArray[np.int64]:
    a = np.asarray(predictions)
    if a.ndim != 2:
        raise ValueError(f"predictions must be (images, frames) predicted labels, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError("predictions hold no sequences")
    if a.dtype == bool:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        try:
            f = a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"predictions must be integer class labels, got dtype {a.dtype}") from exc
        if not (np.isfinite(f).all() and (f == np.round(f)).all()):
            raise ValueError("predictions must be integer class labels (argmax), not scores")
        return f.astype(np.int64)
    return a.astype(np.int64)


def flips_per_image(
    predictions: ArrayLike, reference: Reference = "previous", step: int = 1
) -> NDArray[np.float64]:
    """Fraction of the frame comparisons of each sequence whose predicted label differs from the reference.

    ``predictions`` is ``(n_images, n_frames)`` predicted labels of ordered frames. ``reference="first"``
    compares each later frame with the first, ``"previous"`` each frame with the one before. With
    ``step`` = d > 1 the sequence is split into the d interleaved sub-sequences (frames i, i+d, i+2d, ...)
    and each is compared within itself, as the published code does for difficulty d. Returns one value per
    image; :func:`flip_probability` is their mean. The values are per-image proportions, the unit a
    lesion bootstrap resamples.
    """
    p = _label_matrix(predictions)
    if reference not in ("first", "previous"):
        raise ValueError(f"reference must be 'first' or 'previous', got {reference!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive integer, got {step!r}")
    if p.shape[1] <= step:
        raise ValueError(f"sequences of {p.shape[1]} frames leave nothing to compare at step {step}")
    flips = []
    for i in range(step):
        sub = p[:, i::step]
        if sub.shape[1] < 2:
            continue
        ref = sub[:, :1] if reference == "first" else sub[:, :-1]
        flips.append(sub[:, 1:] != ref)
    per_image: NDArray[np.float64] = np.concatenate(flips, axis=1).mean(axis=1)
    return per_image


def flip_probability(predictions: ArrayLike, reference: Reference = "previous", step: int = 1) -> float:
    """ImageNet-P flip probability FP of one perturbation type (see the module docstring)."""
    return float(flips_per_image(predictions, reference, step).mean())


def flip_rate(fp: float, fp_baseline: float) -> float:
    """FR = FP / FP_baseline (ImageNet-P: the baseline is AlexNet)."""
    fp, fp_baseline = float(fp), float(fp_baseline)
    if not (math.isfinite(fp) and fp >= 0):
        raise ValueError(f"flip probability must be a finite number >= 0, got {fp!r}")
    if not (math.isfinite(fp_baseline) and fp_baseline > 0):
        raise ValueError(f"baseline flip probability must be a finite number > 0, got {fp_baseline!r}")
    return fp / fp_baseline


def _aligned(user: Mapping[str, float], baseline: Mapping[str, float]) -> list[str]:
    if not user:
        raise ValueError("no scores: the mapping of perturbation/corruption to score is empty")
    missing, extra = sorted(set(user) - set(baseline)), sorted(set(baseline) - set(user))
    if missing or extra:
        raise ValueError(
            f"user and baseline scores name different columns: only user {missing}, only baseline {extra}"
        )
    return list(user)


def mean_flip_rate(fp: Mapping[str, float], fp_baseline: Mapping[str, float]) -> float:
    """ImageNet-P mFR: the mean over perturbation types of FP_p / FP_p^baseline."""
    names = _aligned(fp, fp_baseline)
    return float(np.mean([flip_rate(fp[p], fp_baseline[p]) for p in names]))


# ----- SAM-C balanced corruption error -------------------------------------------------------------
def severity_errors(
    y_true: ArrayLike, predictions: Mapping[str, Mapping[int, ArrayLike]]
) -> dict[str, dict[int, float]]:
    """Balanced error of the predicted labels (1 = melanoma) under each corruption and severity."""
    if not predictions:
        raise ValueError("predictions name no corruption")
    out: dict[str, dict[int, float]] = {}
    for corruption, by_severity in predictions.items():
        if not by_severity:
            raise ValueError(f"corruption {corruption!r} has no severity")
        out[corruption] = {}
        for severity, pred in by_severity.items():
            try:
                out[corruption][severity] = balanced_error(y_true, pred)
            except ValueError as exc:
                raise ValueError(f"{corruption} severity {severity}: {exc}") from exc
    return out


def balanced_corruption_errors(
    y_true: ArrayLike, predictions: Mapping[str, Mapping[int, ArrayLike]]
) -> dict[str, float]:
    """SAM-C BCE per corruption: the balanced error averaged over the corruption's severities."""
    return {c: float(np.mean(list(by.values()))) for c, by in severity_errors(y_true, predictions).items()}


def mean_bce(bce: Mapping[str, float]) -> float:
    """mBCE: the mean of the per-corruption BCE."""
    if not bce:
        raise ValueError("no corruption errors to average")
    return float(np.mean(list(bce.values())))


def relative_bce(bce: Mapping[str, float], clean: float) -> dict[str, float]:
    """Relative BCE per corruption: BCE_c - BCE_clean (how much the corruption adds to the clean error)."""
    return {c: v - clean for c, v in bce.items()}


def relative_mbce(bce: Mapping[str, float], clean: float) -> float:
    """Relative mBCE: the mean of BCE_c - BCE_clean."""
    return mean_bce(relative_bce(bce, clean))


def benchmark_score(
    user: Mapping[str, float],
    baseline: Mapping[str, float],
    user_clean: float | None = None,
    baseline_clean: float | None = None,
) -> dict[str, float]:
    """Unadjusted and baseline-adjusted score, as ``evaluate`` in the benchmark's ``code/evaluation.py``.

    With u_c, b_c the user's and the baseline's score on column c (a corruption's BCE or a sequence's flip
    probability) and, for the relative metric, u0, b0 their clean BCE (0 otherwise):

        unadjusted = mean_c (u_c - u0),   adjusted = mean_c (u_c - u0) / (b_c - b0).

    So mBCE and mFR are ``benchmark_score(user, base)``, the relative mBCE is
    ``benchmark_score(user, base, user_clean, baseline_clean)``. Columns are matched by name (the
    published code matches them by position after a weak name check); both clean values or neither.
    """
    if (user_clean is None) != (baseline_clean is None):
        raise ValueError("the relative metric needs both clean scores (user and baseline), or neither")
    names = _aligned(user, baseline)
    u0 = 0.0 if user_clean is None else float(user_clean)
    b0 = 0.0 if baseline_clean is None else float(baseline_clean)
    u = np.array([user[c] for c in names], dtype=np.float64) - u0
    b = np.array([baseline[c] for c in names], dtype=np.float64) - b0
    if (b == 0).any():
        zero = [c for c, v in zip(names, b, strict=True) if v == 0]
        raise ValueError(f"baseline score is zero (after the clean adjustment) for {zero}: cannot adjust")
    return {"unadjusted": float(np.mean(u)), "adjusted": float(np.mean(u / b))}


def sam_c_summary(
    user_c: Mapping[str, float],
    baseline_c: Mapping[str, float],
    user_clean: float,
    baseline_clean: float,
) -> dict[str, float]:
    """Every published SAM-C figure: mBCE and relative mBCE, each unadjusted and AlexNet-adjusted."""
    absolute = benchmark_score(user_c, baseline_c)
    relative = benchmark_score(user_c, baseline_c, user_clean, baseline_clean)
    return {
        "clean_BCE": float(user_clean),
        "mBCE": absolute["unadjusted"],
        "mBCE_adjusted": absolute["adjusted"],
        "relative_mBCE": relative["unadjusted"],
        "relative_mBCE_adjusted": relative["adjusted"],
    }


def sam_p_summary(user_p: Mapping[str, float], baseline_p: Mapping[str, float]) -> dict[str, float]:
    """The published SAM-P figures: mFR (mean flip probability) unadjusted and AlexNet-adjusted."""
    score = benchmark_score(user_p, baseline_p)
    return {"mFR": score["unadjusted"], "mFR_adjusted": score["adjusted"]}


# ----- benchmark files ----------------------------------------------------------------------------
def read_sam_scores(path: str | Path) -> dict[str, float]:
    """Read a SAM result file: one header row of column names, one row of values (``clean`` for SAM)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read SAM result file: {exc}") from exc
    rows = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    if len(rows) != 2:
        raise DataError(
            f"{path}: a SAM result file has a header row and one row of values, found {len(rows)} rows"
        )
    names, cells = [c.strip() for c in rows[0]], [c.strip() for c in rows[1]]
    if len(names) != len(cells):
        raise DataError(f"{path}: {len(names)} column names but {len(cells)} values")
    if "" in names or len(set(names)) != len(names):
        raise DataError(f"{path}: column names must be non-empty and distinct, got {names}")
    scores: dict[str, float] = {}
    for name, cell in zip(names, cells, strict=True):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{path}: column {name!r} holds {cell!r}, not a finite number")
        scores[name] = value
    return scores


def _probabilities(name: str, x: ArrayLike, n: int) -> NDArray[np.float64]:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers") from exc
    if a.shape != (n,):
        raise ValueError(f"{name} must hold one value per image ({n}), got shape {a.shape}")
    bad = ~(np.isfinite(a) & (a >= 0.0) & (a <= 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {float(a[i])!r} is not a probability in [0, 1]")
    return a


def write_sam_submission(
    path: str | Path, image_paths: Sequence[str], nevus: ArrayLike, melanoma: ArrayLike
) -> Path:
    """Write a SAM benchmark submission: ``image_path,nevus,melanoma``, one row per image, atomically.

    ``image_paths`` are the template's paths, unchanged; ``nevus`` and ``melanoma`` the confidence scores
    in [0, 1] (the benchmark thresholds the melanoma score at 0.5). The file name must follow the
    benchmark's ``[CustomText]_DatasetName.csv`` pattern; that is the caller's business.
    """
    paths = list(image_paths)
    if not paths:
        raise ValueError("a submission needs at least one image")
    for i, p in enumerate(paths):
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"image_paths[{i}] = {p!r} is not a non-empty path string")
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise ValueError(f"image path {dup!r} appears more than once")
    nev = _probabilities("nevus", nevus, len(paths))
    mel = _probabilities("melanoma", melanoma, len(paths))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUBMISSION_COLUMNS)
    for p, a, b in zip(paths, nev.tolist(), mel.tolist(), strict=True):
        writer.writerow([p, repr(float(a)), repr(float(b))])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def summary_from_files(paths: Mapping[str, str | Path]) -> dict[str, Any]:
    """Published figures from the benchmark's result files.

    ``paths`` maps ``user_clean``, ``baseline_clean``, ``user_c``, ``baseline_c`` (SAM-C) and/or
    ``user_p``, ``baseline_p`` (SAM-P) to files; returns the :func:`sam_c_summary` and/or
    :func:`sam_p_summary` figures that the given files allow.
    """
    known = {"user_clean", "baseline_clean", "user_c", "baseline_c", "user_p", "baseline_p"}
    unknown = sorted(set(paths) - known)
    if unknown:
        raise ValueError(f"unknown result file role(s) {unknown}; known: {sorted(known)}")
    scores = {role: read_sam_scores(p) for role, p in paths.items()}
    out: dict[str, Any] = {}
    c_roles = {"user_clean", "baseline_clean", "user_c", "baseline_c"}
    if c_roles & set(paths):
        missing = sorted(c_roles - set(paths))
        if missing:
            raise ValueError(f"SAM-C figures need all of {sorted(c_roles)}; missing {missing}")
        for role in ("user_clean", "baseline_clean"):
            if "clean" not in scores[role]:
                raise DataError(f"{paths[role]}: a SAM (clean) result file has a 'clean' column")
        out.update(
            sam_c_summary(
                scores["user_c"],
                scores["baseline_c"],
                scores["user_clean"]["clean"],
                scores["baseline_clean"]["clean"],
            )
        )
    if {"user_p", "baseline_p"} & set(paths):
        if not {"user_p", "baseline_p"} <= set(paths):
            raise ValueError("SAM-P figures need both user_p and baseline_p")
        out.update(sam_p_summary(scores["user_p"], scores["baseline_p"]))
    return out
