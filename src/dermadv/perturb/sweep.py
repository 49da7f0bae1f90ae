"""The systematic perturbation sweep (the study's Supplementary Figure 1, and beyond).

Every image of a (validation) set goes through the model unmodified and after each fixed
perturbation (:mod:`dermadv.perturb.points`); for each perturbation we count correct
classifications, false negatives (melanoma called naevus) and false positives (naevus called
melanoma), the change in accuracy from the unmodified set with a paired 95% CI, and how many
predictions flipped.

Paired CI: the accuracy difference d = p_perturbed - p_unmodified of two proportions measured on the
same images, by Bonett & Price's adjusted Wald interval for paired proportions (2012), which depends
only on the discordant pairs (images right before and wrong after, and the reverse).
The exact McNemar test (binomial on the discordant pairs) gives a p-value beside it.

Run layout (``RUN`` = ``--out``): ``perturb/<spec>.json`` per perturbation (atomic; a rerun skips
those done with the same result settings; each records the SHA-256 of every image file it scored, and
a rerun scores again the images whose file changed since, saying so on stderr;
:mod:`dermadv.runs.content`), ``perturbation.csv`` / ``perturbation.json``
(summary), ``perturbation_scores.csv`` (per-image melanoma scores), ``perturbation.png`` (bar plot)
and ``run.json`` (a :mod:`dermadv.runs.record` record of kind ``sweep``: settings, provenance,
invocations).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_bytes, atomic_write_text
from dermadv.metrics import melanoma_score
from dermadv.perturb.points import SweepPoint, parse_specs
from dermadv.runs.content import changed_indices, read_unit_record, report_changed, sample_hashes
from dermadv.runs.executor import Executor, LocalExecutor, WorkerState, WorkUnit, absolute_sample
from dermadv.runs.lock import holding_run
from dermadv.runs.provenance import run_provenance, selection_hash
from dermadv.runs.record import RunDir, settings_hash
from dermadv.runs.specs import PerturbationSpec

if TYPE_CHECKING:
    from dermadv.data.dataset import Sample
    from dermadv.models.base import Classifier, Metadata

SUMMARY_COLUMNS: tuple[str, ...] = (
    "perturbation",
    "label",
    "n",
    "correct",
    "false_negatives",
    "false_positives",
    "accuracy",
    "delta_accuracy",
    "delta_ci_low",
    "delta_ci_high",
    "flipped",
    "flipped_to_benign",
    "flipped_to_melanoma",
    "sensitivity",
    "specificity",
    "mcnemar_p",
)
CI_METHOD = "Bonett-Price adjusted Wald interval for the difference of paired proportions, 95%"


# ----- statistics -------------------------------------------------------------------------------
def paired_difference_ci(
    base_ok: NDArray[Any], new_ok: NDArray[Any], z: float = 1.959963984540054
) -> tuple[float, float, float]:
    """Difference of paired proportions mean(new_ok) - mean(base_ok) with a 95% CI.

    The interval is Bonett & Price's adjusted Wald interval for paired proportions (J Educ Behav
    Stat 2012;37:479): with discordant counts b (right before, wrong after) and c (wrong before,
    right after), p_b = (b + 1)/(n + 2), p_c = (c + 1)/(n + 2) and the CI is
    (p_c - p_b) +- z sqrt((p_b + p_c - (p_c - p_b)^2) / (n + 2)). Unlike the plain Wald or
    Newcombe intervals it keeps a sensible width when no prediction changed (b = c = 0).
    Returns (observed difference (c - b)/n, low, high); ``base_ok``/``new_ok`` are per-image booleans.
    """
    base_ok = np.asarray(base_ok, dtype=bool)
    new_ok = np.asarray(new_ok, dtype=bool)
    n = len(base_ok)
    if n == 0 or len(new_ok) != n:
        raise ValueError(f"need two equal-length non-empty outcome vectors, got {n} and {len(new_ok)}")
    b = int(np.sum(base_ok & ~new_ok))
    c = int(np.sum(~base_ok & new_ok))
    pb, pc = (b + 1) / (n + 2), (c + 1) / (n + 2)
    centre = pc - pb
    half = z * math.sqrt(max(pb + pc - centre**2, 0.0) / (n + 2))
    return (c - b) / n, max(-1.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c."""
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(min(b, c), b + c, 0.5).pvalue)


def round_fraction(numerator: int, denominator: int, digits: int = 3) -> float:
    """``numerator / denominator`` rounded half away from zero on the exact fraction.

    ``round(39 / 80, 3)`` gives 0.487 (the float nearest 0.4875 lies just below it) while
    ``round(37 / 80, 3)`` gives 0.463: counts reported to 3 decimals must not depend on that.
    """
    from decimal import ROUND_HALF_UP, Decimal

    q = Decimal(int(numerator)) / Decimal(int(denominator))
    return float(q.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def summarize(
    spec: str,
    label: str,
    y_true: NDArray[Any],
    scores: NDArray[np.float64],
    base_scores: NDArray[np.float64],
    threshold: float = 0.5,
) -> dict[str, Any]:
    """One row of the sweep table from melanoma scores (perturbed and unmodified) on the same images."""
    y = np.asarray(y_true, dtype=bool)
    pred = np.asarray(scores) >= threshold
    base = np.asarray(base_scores) >= threshold
    ok, base_ok = pred == y, base == y
    n = len(y)
    fn = int(np.sum(y & ~pred))
    fp = int(np.sum(~y & pred))
    _, lo, hi = paired_difference_ci(base_ok, ok)
    b = int(np.sum(base_ok & ~ok))
    c = int(np.sum(~base_ok & ok))
    n_mel, n_ben = int(y.sum()), int((~y).sum())
    baseline = spec == "none"
    return {
        "perturbation": spec,
        "label": label,
        "n": n,
        "correct": int(ok.sum()),
        "false_negatives": fn,
        "false_positives": fp,
        "accuracy": round_fraction(int(ok.sum()), n),
        "delta_accuracy": round_fraction(c - b, n),
        "delta_ci_low": None if baseline else round(lo, 3),
        "delta_ci_high": None if baseline else round(hi, 3),
        "flipped": int(np.sum(pred != base)),
        "flipped_to_benign": int(np.sum(base & ~pred)),
        "flipped_to_melanoma": int(np.sum(~base & pred)),
        "sensitivity": round_fraction(n_mel - fn, n_mel) if n_mel else None,
        "specificity": round_fraction(n_ben - fp, n_ben) if n_ben else None,
        "mcnemar_p": None if baseline else round(mcnemar_exact_p(b, c), 4),
    }


# ----- run files --------------------------------------------------------------------------------
RUN_KIND = "sweep"


def _slug(spec: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in spec.replace("+", "p"))


@dataclass
class SweepResult:
    """What a sweep produced: the summary rows (baseline first) and where files lie."""

    out: Path
    rows: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)  # specs resumed from disk
    computed: list[str] = field(default_factory=list)
    #: images whose file changed since the stored scores: scored again for every stored perturbation
    changed_images: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files(self) -> dict[str, str]:
        return {
            k: str(self.out / v)
            for k, v in (
                ("csv", "perturbation.csv"),
                ("json", "perturbation.json"),
                ("png", "perturbation.png"),
                ("scores", "perturbation_scores.csv"),
                ("run", "run.json"),
            )
        }


def _load_prepared(
    model: Classifier, samples: Sequence[Sample], decoder: str | None = None
) -> NDArray[np.uint8]:
    from dermadv.data.images import load_image

    imgs = [
        load_image(str(s.path), decoder=decoder) if decoder else model.load_image(str(s.path))
        for s in samples
    ]
    return model.prepare(imgs)


def load_prepared_images(
    model: Classifier, samples: Sequence[Sample], batch_size: int, progress: bool = False
) -> NDArray[np.uint8]:
    """Every sample decoded with the model's decoder and resized to its input size: uint8 N x H x W x 3."""
    from tqdm.auto import tqdm

    prepared = np.empty((len(samples), *model.input_size, 3), dtype=np.uint8)
    bar = tqdm(total=len(samples), desc="loading images", unit="img", file=sys.stderr, disable=not progress)
    for i in range(0, len(samples), batch_size):
        prepared[i : i + batch_size] = _load_prepared(model, samples[i : i + batch_size])
        bar.update(min(batch_size, len(samples) - i))
    bar.close()
    return prepared


def score_point(
    model: Classifier,
    c: SweepPoint,
    samples: Sequence[Sample],
    prepared: NDArray[np.uint8] | None,
    metadata: Sequence[Metadata] | None,
    batch_size: int,
    bar: Any = None,
) -> NDArray[np.float64]:
    """Melanoma scores of ``samples`` after ``c`` (what a :class:`SweepUnit` computes).

    ``prepared``: the images from :func:`load_prepared_images`, or None to load each batch."""
    if bar is not None:
        bar.set_postfix_str(c.spec)
    scores = np.empty(len(samples), dtype=np.float64)
    for i in range(0, len(samples), batch_size):
        j = min(i + batch_size, len(samples))
        if c.file_level:
            batch = _load_prepared(model, samples[i:j], decoder=c.decoder_for(model.decoder))
        else:
            inputs = prepared[i:j] if prepared is not None else _load_prepared(model, samples[i:j])
            batch = c.apply(inputs, decoder=model.decoder)
        meta = None if metadata is None else metadata[i:j]
        probs = model.predict_proba(batch, metadata=meta, batch_size=batch_size)
        scores[i:j] = melanoma_score(model, probs)
        if bar is not None:
            bar.update(j - i)
    return scores


@dataclass(frozen=True)
class SweepUnit(WorkUnit):
    """A sweep work unit: the melanoma scores of every sample after one perturbation.

    The prepared (decoded, resized) images are kept by the worker between units when they fit in
    ``memory_limit_mb``; otherwise (and for file-level perturbations) each batch is decoded again.
    """

    kind: ClassVar[str] = "sweep"
    perturbation: PerturbationSpec
    samples: tuple[Sample, ...]
    batch_size: int
    memory_limit_mb: float = 2048

    def run(self, state: WorkerState) -> NDArray[np.float64]:
        model = state.model
        point = self.perturbation.build()
        prepared = None
        need_bytes = len(self.samples) * int(np.prod(model.input_size)) * 3
        if not point.file_level and need_bytes <= self.memory_limit_mb * 2**20:
            prepared = state.kept(
                "sweep-images",
                tuple(s.image_id for s in self.samples),
                lambda: load_prepared_images(model, self.samples, self.batch_size),
            )
        metadata = [s.metadata() for s in self.samples] if getattr(model, "needs_metadata", False) else None
        return score_point(model, point, self.samples, prepared, metadata, self.batch_size)

    def label(self) -> str:
        return f"perturbation {self.perturbation.spec}"

    def paths(self) -> list[str]:
        return [str(s.path) for s in self.samples if s.path is not None]

    def for_workers(self) -> SweepUnit:
        return replace(self, samples=tuple(absolute_sample(s) for s in self.samples))

    def image_keys(self) -> list[tuple[str, str]]:
        return [(self.perturbation.spec, s.image_id) for s in self.samples]


def _stored_record(path: Path, fingerprint: str, ids: Sequence[str]) -> dict[str, Any] | None:
    """A perturbation's stored file if it holds scores of these images with these result settings,
    and each image's hash (:func:`dermadv.runs.content.read_unit_record`)."""
    return read_unit_record(path, ids, fingerprint)


def _stale_images(records: Mapping[str, Mapping[str, Any]], content: Sequence[str]) -> dict[str, set[int]]:
    """For each stored perturbation whose images changed: the indices of those images."""
    stale = {spec: set(changed_indices(dict(rec), content)) for spec, rec in records.items()}
    return {spec: ks for spec, ks in stale.items() if ks}


@holding_run("out")  # one writer per run folder, from the settings check to the last file
def run_sweep(
    model: Classifier,
    samples: Sequence[Sample],
    out: str | Path,
    perturbations: str | Sequence[str] | None = None,
    batch_size: int | None = None,
    threshold: float = 0.5,
    progress: bool = True,
    extra_settings: dict[str, Any] | None = None,
    memory_limit_mb: float = 2048,
    executor: Executor | None = None,
    *,
    data_info: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    model_file_hash: str | None = None,
) -> SweepResult:
    """Run (or resume) the sweep of ``perturbations`` over ``samples`` with ``model``; write ``out``.

    ``samples`` are :class:`dermadv.data.Sample` records (diagnosis ``mel`` or ``nv``, with a path).
    The unmodified set is always evaluated first. Each perturbation's per-image scores are stored in
    ``out/perturb/<spec>.json`` as soon as it finishes; a rerun with the same model, data and
    threshold reuses them. Returns the summary rows (also written to CSV/JSON/PNG).

    Images are decoded once and kept at input size when they fit in ``memory_limit_mb`` (about
    3,500 images at 299 px need 0.9 GB); otherwise every perturbation decodes them again.
    ``executor`` (default: a :class:`~dermadv.runs.executor.LocalExecutor` on ``model``) runs one
    :class:`SweepUnit` per perturbation; only this process writes the results.

    ``run.json`` is a :class:`dermadv.runs.record.RunDir` record of kind ``sweep``: its settings are
    the model, ``model_file_hash``, the data (``data_info`` + selection hash), the threshold and
    ``extra_settings``; a rerun must match them (device and batch size may differ), and may add or
    drop perturbations. ``provenance`` adds fields to the record's provenance (e.g. ``model_spec``).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    points: list[SweepPoint] = parse_specs(perturbations if perturbations is not None else None)
    samples = list(samples)
    if not samples:
        raise DataError("no images selected for the perturbation sweep (check --data/--split/--subset)")
    bad = [s.image_id for s in samples if s.diagnosis not in ("mel", "nv")]
    if bad:
        raise DataError(
            f"the perturbation sweep scores melanoma vs naevus, but {len(bad)} selected image(s) have other "
            f"diagnoses (first: {bad[0]}); select classes mel and nv only"
        )
    missing = [s.image_id for s in samples if s.path is None]
    if missing:
        raise DataError(f"{len(missing)} selected image(s) have no image file (first: {missing[0]})")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    bs = int(batch_size or getattr(model, "batch_size", 32) or 32)
    if bs < 1:
        raise ValueError(f"batch size must be >= 1, got {bs}")

    out = Path(out)
    (out / "perturb").mkdir(parents=True, exist_ok=True)
    description = model.describe()
    data_hash = selection_hash(samples)
    settings = {
        "model": description,
        "model_file_sha256": model_file_hash,
        "data": {**dict(data_info or {}), "hash": data_hash},
        "threshold": threshold,
        "ci_method": CI_METHOD,
        "inference_batch_size": bs,
        **(extra_settings or {}),
    }
    # Per-perturbation files carry the hash of the result settings: any of them computed with other
    # settings is not reused (a run folder with other settings is refused by RunDir.open below).
    fingerprint = settings_hash(settings)
    run = RunDir.open(
        out,
        RUN_KIND,
        settings,
        {
            **run_provenance(model, model_file_hash=model_file_hash, data=data_info or {}, samples=samples),
            **dict(provenance or {}),
        },
        extra={
            "scope": {"perturbations": [c.spec for c in points], "n_images": len(samples)},
            "fingerprint": fingerprint,
            "status": "running",
        },
    )

    ids = [s.image_id for s in samples]
    y_true = np.array([s.diagnosis == "mel" for s in samples])

    def done_file(c: SweepPoint) -> Path:
        return out / "perturb" / f"{_slug(c.spec)}.json"

    # Every per-perturbation file records the SHA-256 of each image it scored: images whose file
    # changed since are scored again (for every perturbation), the others are reused.
    hashes = sample_hashes(samples, out)
    content = [hashes[i] for i in ids]
    records = {
        c.spec: rec for c in points if (rec := _stored_record(done_file(c), fingerprint, ids)) is not None
    }
    stale = _stale_images(records, content)  # spec -> indices of the images that changed since
    skipped = [spec for spec in records if spec not in stale]
    changed = [i for k, i in enumerate(ids) if any(k in ks for ks in stale.values())]
    report_changed(changed)
    pending = [c for c in points if c.spec not in records]

    computed: list[str] = []
    bar = tqdm(
        total=len(pending) * len(samples) + sum(len(ks) for ks in stale.values()),
        desc="perturbation sweep",
        unit="img",
        file=sys.stderr,
        disable=not progress,
    )
    executor = executor if executor is not None else LocalExecutor(model)
    by_spec = {c.spec: c for c in points}
    units = [SweepUnit(PerturbationSpec(c.spec), tuple(samples), bs, memory_limit_mb) for c in pending]
    units += [  # only the images that changed, merged into the stored scores below
        SweepUnit(PerturbationSpec(spec), tuple(samples[k] for k in sorted(ks)), bs, memory_limit_mb)
        for spec, ks in stale.items()
    ]
    for unit, scores in executor.run(units):
        c = by_spec[unit.perturbation.spec]  # type: ignore[attr-defined]
        bar.set_postfix_str(c.spec, refresh=False)
        bar.update(len(unit.samples))  # type: ignore[attr-defined]
        if c.spec in stale:
            merged = [float(s) for s in records[c.spec]["scores"]]
            for k, score in zip(sorted(stale[c.spec]), scores, strict=True):
                merged[k] = float(score)
            scores = merged
        rec = {
            "spec": c.spec,
            "label": c.label,
            "perturbation": c.perturbation,
            "values": None if c.values is None else list(c.values),
            "severity": c.severity,
            "decoder": c.decoder,
            "file_level": c.file_level,
            "fingerprint": fingerprint,
            "image_ids": ids,
            "image_sha256": content,
            "scores": [float(s) for s in scores],
        }
        if c.file_level:
            rec["decoder"] = c.decoder_for(model.decoder)
        atomic_write_text(done_file(c), json.dumps(rec))
        records[c.spec] = rec
        computed.append(c.spec)
    bar.close()

    base = np.asarray(records["none"]["scores"])
    rows = [
        summarize(c.spec, c.label, y_true, np.asarray(records[c.spec]["scores"]), base, threshold)
        for c in points
    ]
    _write_outputs(out, rows, points, records, ids, y_true, description)
    result = SweepResult(
        out=out,
        rows=rows,
        skipped=skipped,
        computed=computed,
        changed_images=changed,
        seconds=time.perf_counter() - t0,
    )
    run.update(
        status="complete",
        seconds_last_run=round(result.seconds, 2),
        resumed=skipped,
        computed=computed,
        changed_images=changed,
    )
    return result


_THREE_DECIMALS = (
    "accuracy",
    "delta_accuracy",
    "delta_ci_low",
    "delta_ci_high",
    "sensitivity",
    "specificity",
)


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """Proportions written with exactly three decimals (0.780, not 0.78); missing values empty."""
    return {k: ("" if v is None else f"{v:.3f}" if k in _THREE_DECIMALS else v) for k, v in row.items()}


def _write_outputs(
    out: Path,
    rows: list[dict[str, Any]],
    points: list[SweepPoint],
    records: dict[str, dict[str, Any]],
    ids: list[str],
    y_true: NDArray[Any],
    description: dict[str, Any],
) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS))
    w.writeheader()
    w.writerows(_csv_row(r) for r in rows)
    atomic_write_text(out / "perturbation.csv", buf.getvalue())
    buf = io.StringIO()
    w2 = csv.writer(buf)
    w2.writerow(["image_id", "melanoma", *[c.spec for c in points]])
    for k, image_id in enumerate(ids):
        w2.writerow([image_id, int(y_true[k]), *[repr(float(records[c.spec]["scores"][k])) for c in points]])
    atomic_write_text(out / "perturbation_scores.csv", buf.getvalue())
    atomic_write_text(
        out / "perturbation.json",
        json.dumps({"model": description.get("name"), "ci_method": CI_METHOD, "rows": rows}, indent=2),
    )
    from dermadv.report.figures import perturbation_bar_plot

    png = perturbation_bar_plot(rows, title=f"Perturbation sweep: {description.get('name', 'model')}")
    atomic_write_bytes(out / "perturbation.png", png)


def read_sweep(run: str | Path) -> list[dict[str, Any]]:
    """Summary rows of a finished sweep (``perturbation.json``)."""
    p = Path(run) / "perturbation.json"
    if not p.exists():
        raise DataError(f"{run}: no perturbation.json (not a finished perturbation run)")
    rows: list[dict[str, Any]] = json.loads(p.read_text(encoding="utf-8"))["rows"]
    return rows
