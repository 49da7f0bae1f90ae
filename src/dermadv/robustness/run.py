"""``dermadv robustness``: how often the call flips under clinically plausible variation.

For every image and every transform (a registered :class:`~dermadv.perturb.base.Perturbation`,
over its whole clinical range or at one severity), the model scores the unmodified image once and
then up to ``samples`` parameter draws (:mod:`dermadv.robustness.sampling`). A draw *flips* when its
melanoma/benign call (melanoma score >= ``threshold``) differs from the unmodified image's call; the
image's flip probability is the share of draws that flip, with a Clopper-Pearson interval.

Sequential stopping: after every ``check_every`` draws an image stops drawing once its interval
settles the question -- its upper bound below ``stop_below`` (robust), its lower bound above
``stop_above`` (fragile), or, when asked, its half-width at most ``precision`` -- or at ``samples``
draws. With no flip in n draws the 95% upper bound is about 3.7 / n, so "below 2%" is settled after
about 185 draws and "below 1%" needs about 370 (more than the default 256 samples). The
draws are a fixed sequence, so stopping only shortens it; forwards are counted per image.

Benchmarks (``benchmarks=("sam-c", "sam-p")``): SAM-C's 14 corruptions at severities 1..5 (one
corrupted version of each image per corruption and severity; noise seeded per image) and SAM-P's 10
ordered 31-frame sequences, scored for the published metrics (:mod:`dermadv.robustness.published`).

Work is split into units of ``images_per_unit`` images x one transform (:class:`RobustnessUnit`), run
by any executor; the draws of all images of a unit are scored together in batches. Each finished
unit is written atomically to ``RUN/robustness/<transform>/<hash of its image ids>.json`` with the
result fingerprint and the SHA-256 of every image it scored: a rerun (or a resume after a kill)
reuses matching units and recomputes units whose images changed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_text
from dermadv.metrics import melanoma_score
from dermadv.perturb.base import PERTURBATIONS, Perturbation, check_severity, gpu_path, image_tensor
from dermadv.robustness.sampling import SAMPLERS, draw_seed, draws
from dermadv.robustness.stats import clopper_pearson, settled
from dermadv.runs.content import changed_indices, read_unit_record, report_changed, sample_hashes
from dermadv.runs.executor import Executor, LocalExecutor, WorkerState, WorkUnit, absolute_sample
from dermadv.runs.lock import holding_run
from dermadv.runs.provenance import run_provenance, selection_hash
from dermadv.runs.record import RunDir, settings_hash

if TYPE_CHECKING:
    from dermadv.data.dataset import Sample
    from dermadv.models.base import Classifier

RUN_KIND = "robustness"
BENCHMARKS: tuple[str, ...] = ("sam-c", "sam-p")
SAM_P_FRAMES = 31


# ----- what is measured -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformKey:
    """One thing a robustness run measures: a transform sampled over its range (``severity`` None) or
    at one severity, or a benchmark item (``mode`` ``sam-c``: a corruption at its five severities;
    ``sam-p``: a sequence)."""

    name: str
    severity: int | None = None
    mode: str = "sample"

    @property
    def key(self) -> str:
        base = self.name if self.severity is None else f"{self.name}@{self.severity}"
        return base if self.mode == "sample" else f"{self.mode}:{base}"


def parse_transforms(text: str | Sequence[str], severities: str | None = None) -> list[TransformKey]:
    """``color,rotation,gaussian_blur@3`` (``all``: every registered clinical transform) at
    ``severities`` (None: the whole clinical range; ``1-5`` or ``2,4``: each severity)."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    items = [t for t in items if t]
    if not items:
        raise ValueError("no transforms given (e.g. --transforms color,rotation)")
    levels = _severities(severities)
    out: dict[str, TransformKey] = {}
    for item in items:
        names = _all_transforms() if item.lower() == "all" else [item]
        for name in names:
            head, _, sev = name.partition("@")
            head = head.lower()
            if head not in PERTURBATIONS.names():
                raise ValueError(
                    f"unknown transform {name!r}; registered: {', '.join(PERTURBATIONS.names())}"
                )
            if sev:
                keys = [TransformKey(head, check_severity(_int(name, sev)))]
            else:
                keys = [TransformKey(head, s) for s in levels]
            for k in keys:
                out.setdefault(k.key, k)
    return list(out.values())


def _int(what: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what}: severity {text!r} is not an integer 1..5") from None


def _severities(text: str | None) -> list[int | None]:
    if text is None or str(text).strip().lower() in ("", "none", "range"):
        return [None]
    t = str(text).strip().lower()
    if t == "all":
        return [1, 2, 3, 4, 5]
    if "-" in t:
        lo, _, hi = t.partition("-")
        return list(range(check_severity(_int("--severity", lo)), check_severity(_int("--severity", hi)) + 1))
    return [check_severity(_int("--severity", s)) for s in t.split(",") if s.strip()]


def _all_transforms() -> list[str]:
    """Registered transforms that are clinical variations (not the few-pixel search space)."""
    return [n for n in PERTURBATIONS.names() if getattr(PERTURBATIONS.get(n), "clinical", True)]


def benchmark_keys(names: Sequence[str]) -> list[TransformKey]:
    """The benchmark items of ``sam-c`` (14 corruptions, each at severities 1..5) and ``sam-p`` (10
    sequences)."""
    from dermadv.perturb.benchmarks import SAM_C, SAM_P

    out: list[TransformKey] = []
    for b in names:
        if b == "sam-c":
            out += [TransformKey(n, None, "sam-c") for n in SAM_C]  # severities 1..5 scored in one unit
        elif b == "sam-p":
            out += [TransformKey(n, None, "sam-p") for n in SAM_P]
        else:
            raise ValueError(f"unknown benchmark {b!r}; known: {', '.join(BENCHMARKS)}")
    return out


@dataclass(frozen=True)
class StopRule:
    """Sequential stopping (see the module docstring); ``enabled=False`` draws ``samples`` always."""

    samples: int = 256
    check_every: int = 16
    stop_below: float = 0.02
    stop_above: float = 0.5
    precision: float | None = None
    confidence: float = 0.95
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.samples < 1 or self.check_every < 1:
            raise ValueError(f"samples and check_every must be >= 1, got {self.samples}, {self.check_every}")
        if not (0 <= self.stop_below <= 1 and 0 <= self.stop_above <= 1):
            raise ValueError("stop_below and stop_above must be in [0, 1]")
        if self.precision is not None and not 0 < self.precision <= 1:
            raise ValueError(f"precision must be in (0, 1] (or None: off), got {self.precision}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    def decide(self, flips: int, n: int) -> str | None:
        """Why an image with ``flips`` of ``n`` draws stops now, or None to go on."""
        if n >= self.samples:
            return "max_samples"
        if not self.enabled or n % self.check_every:
            return None
        verdict = settled(flips, n, self.stop_below, self.stop_above, self.confidence)
        if verdict is not None:
            return verdict
        if self.precision is None:
            return None
        lo, hi = clopper_pearson(flips, n, self.confidence)
        return "precise" if (hi - lo) / 2 <= self.precision else None


# ----- one unit of work -----------------------------------------------------------------------------
def _plan(
    key: TransformKey, image_id: str, shape: tuple[int, ...], stop: StopRule, sampler: str, seed: int
) -> tuple[Perturbation, NDArray[np.float64]]:
    """The transform and the full parameter sequence of one image (drawn, or the benchmark's)."""
    if key.mode == "sample":
        t = PERTURBATIONS.create(key.name)
        space = t.space(shape) if key.severity is None else t.severity_space(key.severity, shape)
        return t, draws(space, stop.samples, sampler=sampler, seed=seed, image_id=image_id, key=key.key)
    from dermadv.perturb.benchmarks import sam_c_point, sam_p_sequence

    if key.mode == "sam-c":  # the five severities, in order
        points = [sam_c_point(key.name, sev, shape) for sev in range(1, 6)]
        t, params = points[0][0], np.concatenate([p for _, p in points])
    else:
        t, params, _ = sam_p_sequence(key.name, shape, SAM_P_FRAMES)
    params = np.array(params, dtype=np.float64)
    if "seed" in t.param_names:  # every image its own noise (one corrupted version per image)
        k = t.param_names.index("seed")
        params[:, k] = params[:, k] + draw_seed(seed, image_id, key.key) % (2**31 - 2**16)
    return t, params


@dataclass(frozen=True)
class RobustnessUnit(WorkUnit):
    """The draws of one transform on a few images, scored together (see the module docstring)."""

    kind: ClassVar[str] = "robustness"
    transform: TransformKey
    samples: tuple[Sample, ...]
    stop: StopRule
    sampler: str = "sobol"
    seed: int = 0
    threshold: float = 0.5
    batch_size: int = 32
    decoder_aware: bool = True

    def run(self, state: WorkerState) -> list[dict[str, Any]]:
        model = state.model
        images = [state.prepared(s) for s in self.samples]
        meta = [s.metadata() for s in self.samples] if getattr(model, "needs_metadata", False) else None
        clean = melanoma_score(
            model, model.predict_proba(np.stack(images), metadata=meta, batch_size=self.batch_size)
        )
        plans = [
            _plan(self.transform, s.image_id, img.shape, self.stop, self.sampler, self.seed)
            for s, img in zip(self.samples, images, strict=True)
        ]
        transform = plans[0][0].with_decoder(getattr(model, "decoder", "pil"))
        benchmark = self.transform.mode != "sample"
        scores: list[list[float]] = [[] for _ in images]
        stops: list[str | None] = [None] * len(images)
        step = len(plans[0][1]) if benchmark else self.stop.check_every
        on_device = gpu_path(model, transform) and meta is None
        device_images: dict[int, Any] = {}
        tensor_model: Any = model  # has .device and .predict_tensor when on_device
        while any(s is None for s in stops):
            active = [i for i, s in enumerate(stops) if s is None]
            batch: list[Any] = []
            owner: list[int] = []
            metas: list[Any] = []
            for i in active:
                n = len(scores[i])
                params = plans[i][1][n : n + step]
                if on_device:  # perturbed and scored on the GPU; only probabilities come back
                    if i not in device_images:
                        device_images[i] = image_tensor(images[i], tensor_model.device)
                    batch.append(transform.transform_tensor(device_images[i], params))
                else:
                    batch.append(transform.apply(images[i], params, device=getattr(model, "device", None)))
                owner += [i] * len(params)
                if meta is not None:
                    metas += [meta[i]] * len(params)
            if on_device:
                import torch

                probs = tensor_model.predict_tensor(torch.cat(batch), None, batch_size=self.batch_size)
            else:
                probs = model.predict_proba(
                    np.concatenate(batch), metadata=metas or None, batch_size=self.batch_size
                )
            for i, score in zip(owner, melanoma_score(model, probs), strict=True):
                scores[i].append(float(score))
            for i in active:
                n = len(scores[i])
                if benchmark:
                    stops[i] = "complete"
                    continue
                flips = int(np.sum((np.asarray(scores[i]) >= self.threshold) != (clean[i] >= self.threshold)))
                stops[i] = self.stop.decide(flips, n)
        from dermadv.robustness.skin_tone import estimate_ita

        tones = [estimate_ita(img) for img in images]
        return [
            {
                "image_id": s.image_id,
                "clean_score": float(clean[i]),
                "ita": tones[i]["ita"],
                "ita_category": tones[i]["category"],
                "scores": scores[i],
                "params": plans[i][1][: len(scores[i])].tolist(),
                "stop": stops[i],
                "forwards": 1 + len(scores[i]),
            }
            for i, s in enumerate(self.samples)
        ]

    def label(self) -> str:
        return f"robustness {self.transform.key} ({len(self.samples)} images)"

    def paths(self) -> list[str]:
        return [str(s.path) for s in self.samples if s.path is not None]

    def for_workers(self) -> RobustnessUnit:
        return replace(self, samples=tuple(absolute_sample(s) for s in self.samples))

    def image_keys(self) -> list[tuple[str, str]]:
        return [(self.transform.key, s.image_id) for s in self.samples]


# ----- the run --------------------------------------------------------------------------------------
@dataclass
class RobustnessResult:
    out: Path
    summary: dict[str, Any]
    files: dict[str, str]
    computed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    changed_images: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-.@" else "_" for ch in text)


def _unit_file(out: Path, key: TransformKey, ids: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return out / "robustness" / _slug(key.key) / f"{digest}.json"


def _stored(path: Path, fingerprint: str, ids: list[str], content: list[str]) -> list[dict[str, Any]] | None:
    """The unit file's rows if they were computed with these settings from these very images."""
    rec = read_unit_record(path, ids, fingerprint)
    if rec is None or changed_indices(rec, content):
        return None
    rows = rec.get("rows")
    return rows if isinstance(rows, list) else None


def _chunks(samples: Sequence[Sample], size: int) -> Iterator[tuple[Sample, ...]]:
    for i in range(0, len(samples), size):
        yield tuple(samples[i : i + size])


def _check_samples(samples: Sequence[Sample]) -> None:
    if not samples:
        raise DataError("no images selected for the robustness run (check --data/--split/--ids/--limit)")
    bad = [s.image_id for s in samples if s.diagnosis not in ("mel", "nv")]
    if bad:
        raise DataError(
            f"the robustness run scores melanoma vs naevus, but {len(bad)} selected image(s) have other "
            f"diagnoses (first: {bad[0]}); select classes mel and nv only"
        )
    missing = [s.image_id for s in samples if s.path is None]
    if missing:
        raise DataError(f"{len(missing)} selected image(s) have no image file (first: {missing[0]})")
    seen: set[str] = set()
    for s in samples:
        if s.image_id in seen:
            raise DataError(f"image id {s.image_id} appears twice in the selection (two data sets?)")
        seen.add(s.image_id)


@holding_run("out")
def run_robustness(
    model: Classifier,
    samples: Sequence[Sample],
    out: str | Path,
    transforms: Sequence[TransformKey],
    *,
    stop: StopRule | None = None,
    sampler: str = "sobol",
    seed: int = 0,
    threshold: float = 0.5,
    batch_size: int | None = None,
    images_per_unit: int = 8,
    sources: Mapping[str, str] | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    data_info: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    model_file_hash: str | None = None,
    extra_settings: Mapping[str, Any] | None = None,
) -> RobustnessResult:
    """Run (or resume) a robustness run of ``transforms`` over ``samples``; write ``out``.

    ``sources`` maps image ids to their data source (for the per-source tables; default: one
    source). ``images_per_unit`` images share a unit (what a kill can lose). Returns the summary
    (also written: see :func:`dermadv.robustness.summary.write_outputs`).
    """
    from tqdm.auto import tqdm

    from dermadv.robustness.summary import summarize_run, write_outputs

    t0 = time.perf_counter()
    stop = stop or StopRule()
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if not transforms:
        raise ValueError("no transforms to measure")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    samples = list(samples)
    _check_samples(samples)
    bs = int(batch_size or getattr(model, "batch_size", 32) or 32)
    out = Path(out)
    settings = {
        "model": model.describe(),
        "model_file_sha256": model_file_hash,
        "data": {**dict(data_info or {}), "hash": selection_hash(samples)},
        "transforms": {t.key: {"name": t.name, "severity": t.severity, "mode": t.mode} for t in transforms},
        "stop": {**stop.__dict__},
        "sampler": sampler,
        "seed": int(seed),
        "threshold": threshold,
        "images_per_unit": int(images_per_unit),
        "inference_batch_size": bs,
        **dict(extra_settings or {}),
    }
    fingerprint = settings_hash({k: v for k, v in settings.items() if k != "transforms"})
    run = RunDir.open(
        out,
        RUN_KIND,
        settings,
        {
            **run_provenance(model, model_file_hash=model_file_hash, data=data_info or {}, samples=samples),
            **dict(provenance or {}),
        },
        extra={"fingerprint": fingerprint, "status": "running"},
        extendable=("transforms",),
    )
    hashes = sample_hashes(samples, out)
    planned: list[tuple[RobustnessUnit, Path, list[str]]] = []
    results: dict[str, dict[str, dict[str, Any]]] = {t.key: {} for t in transforms}
    resumed: list[str] = []
    changed: set[str] = set()
    for t in transforms:
        for chunk in _chunks(samples, images_per_unit):
            ids = [s.image_id for s in chunk]
            content = [hashes[i] for i in ids]
            path = _unit_file(out, t, ids)
            rows = _stored(path, fingerprint, ids, content)
            if rows is not None:
                results[t.key].update({r["image_id"]: r for r in rows})
                resumed.append(f"{t.key}:{path.stem}")
                continue
            if path.exists():
                changed.update(_changed_ids(path, ids, content))
            unit = RobustnessUnit(t, chunk, stop, sampler, int(seed), threshold, bs)
            planned.append((unit, path, content))
    report_changed(sorted(changed))
    executor = executor if executor is not None else LocalExecutor(model)
    bar = tqdm(
        total=sum(len(u.samples) for u, _, _ in planned),
        desc="robustness",
        unit="img",
        file=sys.stderr,
        disable=not progress,
    )
    by_unit = {id(u): (p, c) for u, p, c in planned}
    computed: list[str] = []
    for done, rows in executor.run([u for u, _, _ in planned]):
        assert isinstance(done, RobustnessUnit)
        unit = done
        path, content = by_unit[id(unit)] if id(unit) in by_unit else _lookup(planned, unit)
        record = {
            "fingerprint": fingerprint,
            "transform": unit.transform.key,
            "image_ids": [s.image_id for s in unit.samples],
            "image_sha256": content,
            "rows": rows,
        }
        atomic_write_text(path, json.dumps(record))
        results[unit.transform.key].update({r["image_id"]: r for r in rows})
        computed.append(f"{unit.transform.key}:{path.stem}")
        bar.set_postfix_str(unit.transform.key, refresh=False)
        bar.update(len(unit.samples))
    bar.close()
    summary = summarize_run(
        samples, transforms, results, stop=stop, threshold=threshold, sources=sources or {}, model=model
    )
    summary["settings"] = {k: settings[k] for k in ("transforms", "stop", "sampler", "seed", "threshold")}
    files = write_outputs(out, summary, model.describe().get("name", "model"))
    seconds = time.perf_counter() - t0
    run.update(
        status="complete", seconds_last_run=round(seconds, 2), computed=len(computed), resumed=len(resumed)
    )
    return RobustnessResult(out, summary, files, computed, resumed, sorted(changed), seconds)


def _lookup(
    planned: Sequence[tuple[RobustnessUnit, Path, list[str]]], unit: RobustnessUnit
) -> tuple[Path, list[str]]:
    """The file and image hashes of a unit that came back from another process (a copy, not ``is``)."""
    ids = [s.image_id for s in unit.samples]
    for u, path, content in planned:
        if u.transform == unit.transform and [s.image_id for s in u.samples] == ids:
            return path, content
    raise RuntimeError(f"a result came back for a unit that was not planned: {unit.label()}")


def _changed_ids(path: Path, ids: list[str], content: list[str]) -> list[str]:
    """The images of a stored unit whose files changed since (whatever its settings)."""
    rec = read_unit_record(path, ids)
    return [] if rec is None else [ids[k] for k in changed_indices(rec, content)]
