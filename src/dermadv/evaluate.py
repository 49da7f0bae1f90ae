"""Evaluate any classifier on a dataset: melanoma vs naevus metrics with 95% CIs, and the files
that let anyone check them.

Images are decoded with the MODEL's decoder (``model.load_image``), resized by the model
(``predict_proba``) and each sample's clinical metadata is passed along. Every sample gets
probabilities; only melanoma (``mel``) and naevus (``nv``) samples enter the binary metrics, where
truth is ``diagnosis == "mel"`` and the prediction is ``melanoma_score >= threshold`` with
``melanoma_score = p_mel / (p_mel + p_ben)`` over the model's class groups.

Outputs (:func:`write_evaluation`): predictions.csv, metrics.json, confusion.txt / confusion.json,
roc.png, and optionally an ISIC 2019 challenge submission CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_bytes, atomic_write_text
from dermadv.labels import ISIC2019_COLUMNS, ISIC2019_DIAGNOSES, canonical_diagnosis
from dermadv.metrics import (
    binary_metrics,
    delong_auc_ci,
    format_confusion,
    format_metrics_table,
    melanoma_score,
)
from dermadv.runs.lock import holding_run
from dermadv.vocab import Group

#: ISIC 2019 column of each canonical diagnosis code (the columns: ``dermadv.labels.ISIC2019_COLUMNS``).
_CANONICAL_TO_ISIC = {code: column for column, code in ISIC2019_DIAGNOSES.items()}


@dataclass
class Evaluation:
    """Predictions of one model on a list of samples, and the binary metrics on the mel/nv ones."""

    samples: list[Any]
    classes: tuple[str, ...]
    probs: np.ndarray  # N x K over ``classes``
    scores: np.ndarray  # N melanoma scores
    included: np.ndarray  # N bool: sample is mel or nv
    threshold: float
    metrics: dict[str, Any]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def y_true(self) -> np.ndarray:
        """1 for melanoma, 0 for naevus, over the included samples."""
        return np.array([s.diagnosis == "mel" for s in self.samples], dtype=int)[self.included]

    def summary(self) -> dict[str, Any]:
        """The four metrics as {"value", "ci_low", "ci_high", "method"} plus confusion and n (``--json``)."""
        out: dict[str, Any] = {}
        for key in ("auc", "accuracy", "sensitivity", "specificity"):
            m = self.metrics[key]
            out[key] = {k: m[k] for k in ("value", "ci_low", "ci_high", "method")}
            if m.get("note"):  # e.g. a degenerate DeLong interval: never report [1, 1] without saying so
                out[key]["note"] = m["note"]
        for key in ("auc_melanoma_vs_naevus", "auc_raw_p_mel"):  # both named AUCs (see AUC_DEFINITIONS)
            if key in self.metrics:
                out[key] = {k: self.metrics[key][k] for k in ("value", "ci_low", "ci_high", "method")}
        out["confusion"] = dict(self.metrics["confusion"])
        out["n"] = self.metrics["n"]
        out["threshold"] = self.threshold
        out["n_predicted"] = len(self.samples)
        if self.extra.get("changed_images"):  # resumed, but these images' files changed: predicted again
            out["changed_images"] = list(self.extra["changed_images"])
        return out


def predict_samples(
    model: Any,
    samples: Sequence[Any],
    batch_size: int | None = None,
    progress: bool = True,
    io_workers: int = 2,
    done: Mapping[str, np.ndarray] | None = None,
    on_batch: Callable[[list[Any], np.ndarray], None] | None = None,
) -> np.ndarray:
    """Probabilities (N x K) for samples, decoding the next batch in threads while the model runs.

    ``done`` holds already-known probabilities by image id (those samples are not predicted again);
    ``on_batch(samples, probs)`` is called after every batch (e.g. to save progress).
    """
    from tqdm import tqdm

    missing = [s.image_id for s in samples if s.path is None]
    if missing:
        raise DataError(f"no image file for {len(missing)} sample(s), e.g. {missing[:3]}")
    bs = int(batch_size or model.batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be positive, got {bs}")
    known = dict(done or {})
    todo = [s for s in samples if s.image_id not in known]
    check_metadata(model, todo)
    batches = [todo[i : i + bs] for i in range(0, len(todo), bs)]
    bar = tqdm(
        total=len(samples),
        initial=len(samples) - len(todo),
        desc="predicting",
        unit="img",
        disable=not progress,
        leave=False,
    )
    with ThreadPoolExecutor(max_workers=max(1, io_workers)) as pool:

        def load_prepared(path: str) -> np.ndarray:
            # Resize in the loader thread: a batch of full-size originals (ISIC reaches 6000x4000,
            # 72 MB each decoded) is never held in memory, only images at the model's input size.
            return model.prepare([model.load_image(path)])[0]

        def submit(batch: list[Any]) -> list[Any]:
            return [pool.submit(load_prepared, str(s.path)) for s in batch]

        pending = submit(batches[0]) if batches else []
        for i, batch in enumerate(batches):
            images = [f.result() for f in pending]
            pending = submit(batches[i + 1]) if i + 1 < len(batches) else []
            meta = [s.metadata() for s in batch]
            probs = model.predict_proba(images, metadata=meta, batch_size=bs)
            for s, p in zip(batch, probs, strict=True):
                known[s.image_id] = p
            if on_batch is not None:
                on_batch(batch, probs)
            bar.update(len(batch))
    bar.close()
    if not samples:
        return np.zeros((0, len(model.classes)))
    return np.stack([np.asarray(known[s.image_id], dtype=np.float64) for s in samples])


def check_metadata(model: Any, samples: Sequence[Any]) -> None:
    """DataError naming the first sample whose metadata the model's encoder refuses (its ``validate``),
    before any image is predicted. Datasets read by :func:`dermadv.data.load_dataset` never hold such
    values (they are reported and ignored); this catches samples built elsewhere."""
    validate = getattr(getattr(model, "metadata_encoder", None), "validate", None)
    if validate is None or not getattr(model, "needs_metadata", False):
        return
    for s in samples:
        try:
            validate(s.metadata())
        except DataError as exc:
            raise DataError(f"image {s.image_id} ({s.path}): {exc}") from exc


class PartialPredictions:
    """Predictions appended per batch to ``OUT/.predictions.partial.jsonl``, so that an interrupted
    evaluation resumes where it stopped.

    The first line holds a key: the model's result description (:func:`dermadv.runs.record.
    result_settings`: device and file location left out), the model file's SHA-256, the classes and
    the image ids; a file with another key is ignored and replaced. Every row records the SHA-256 of
    the image file it was predicted from (``hashes``, computed when not given; see
    :mod:`dermadv.runs.content`): a row whose image changed since, or that records no hash, is
    predicted again (:attr:`changed` names those images).
    """

    def __init__(
        self,
        out: str | Path,
        model: Any,
        samples: Sequence[Any],
        model_file_hash: str | None = None,
        hashes: Mapping[str, str] | None = None,
    ) -> None:
        import hashlib

        from dermadv.runs.record import result_settings

        self.path = Path(out).expanduser() / ".predictions.partial.jsonl"
        ident = json.dumps(
            {
                "model": result_settings({"model": model.describe()}),
                "model_file_sha256": model_file_hash,
                "classes": list(model.classes),
                "ids": [s.image_id for s in samples],
            },
            sort_keys=True,
            default=str,
        )
        self.key = hashlib.sha256(ident.encode()).hexdigest()
        self.k = len(model.classes)
        if hashes is None:
            from dermadv.runs.content import sample_hashes

            hashes = sample_hashes(samples, out)
        self.hashes: dict[str, str] = dict(hashes)
        self.changed: list[str] = []

    def load(self) -> dict[str, np.ndarray]:
        """Saved probabilities by image id of the images that did not change (empty when the file is
        absent, stale or unreadable); images whose file changed are listed in :attr:`changed`."""
        self.changed = []
        if not self.path.is_file():
            return {}
        last: dict[str, tuple[Any, np.ndarray]] = {}  # the last row of an image wins
        with self.path.open(encoding="utf-8") as fh:
            try:
                if json.loads(fh.readline()).get("key") != self.key:
                    return {}
            except (json.JSONDecodeError, AttributeError):
                return {}
            for line in fh:
                try:
                    row = json.loads(line)
                    probs = np.asarray(row["p"], dtype=np.float64)
                    image_id = str(row["id"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    break  # a torn last line from a kill: everything before it is good
                if probs.shape == (self.k,):
                    last[image_id] = (row.get("sha"), probs)
        out: dict[str, np.ndarray] = {}
        for image_id, (sha, probs) in last.items():
            if sha != self.hashes.get(image_id):
                self.changed.append(image_id)
            else:
                out[image_id] = probs
        return out

    def start(self, keep: bool) -> None:
        """Begin the file (or keep appending to a matching one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not keep:
            with self.path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": self.key}) + "\n")

    def append(self, samples: Sequence[Any], probs: np.ndarray) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for s, p in zip(samples, probs, strict=True):
                row = {"id": s.image_id, "sha": self.hashes.get(s.image_id), "p": [float(v) for v in p]}
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@holding_run("resume_dir")  # the partial predictions are one writer's
def evaluate_model(
    model: Any,
    samples: Sequence[Any],
    threshold: float = 0.5,
    batch_size: int | None = None,
    progress: bool = True,
    resume_dir: str | Path | None = None,
    model_file_hash: str | None = None,
) -> Evaluation:
    """Predict every sample and compute the binary metrics on its melanoma and naevus samples.

    With ``resume_dir``, predictions are saved there batch by batch and an interrupted evaluation of
    the same model (``model_file_hash``: the SHA-256 of its file, when it has one) on the same images
    continues where it stopped; an image whose file changed since is predicted again, and the run
    says so on stderr (``extra["changed_images"]``).
    """
    samples = list(samples)
    if not samples:
        raise DataError("no images to evaluate (check --data, --split, --subset, --ids, --limit)")
    included = np.array([s.diagnosis in ("mel", "nv") for s in samples])
    y = np.array([s.diagnosis == "mel" for s in samples], dtype=int)[included]
    if not y.any() or y.all():
        raise DataError(
            f"the {int(included.sum())} melanoma/naevus image(s) selected are all "
            f"{'melanoma' if y.any() else 'naevus'}; AUC, sensitivity and specificity need both"
        )
    t0 = time.time()
    partial = None
    if resume_dir is not None:
        from dermadv.runs.content import report_changed, sample_hashes

        hashes = sample_hashes(samples, resume_dir)
        partial = PartialPredictions(resume_dir, model, samples, model_file_hash, hashes)
    done = partial.load() if partial is not None else {}
    if partial is not None:
        report_changed(partial.changed)
        partial.start(keep=bool(done) or bool(partial.changed))
    probs = predict_samples(
        model,
        samples,
        batch_size=batch_size,
        progress=progress,
        done=done,
        on_batch=partial.append if partial is not None else None,
    )
    seconds = time.time() - t0
    scores = melanoma_score(model, probs)
    metrics = binary_metrics(y, scores[included], threshold=threshold)
    metrics = two_aucs(metrics, y, model.classes, probs, included)
    extra: dict[str, Any] = {"resumed_predictions": len(done)} if done else {}
    if partial is not None and partial.changed:
        extra["changed_images"] = list(partial.changed)
    return Evaluation(
        samples=samples,
        classes=tuple(model.classes),
        probs=probs,
        scores=scores,
        included=included,
        threshold=float(threshold),
        metrics=metrics,
        seconds=seconds,
        extra=extra,
    )


#: What each AUC in metrics.json ranks (both on the same melanoma/naevus cases).
AUC_DEFINITIONS: dict[str, str] = {
    "auc_melanoma_vs_naevus": "the headline AUC (also under 'auc'): ranks melanoma_score = "
    "p_mel / (p_mel + p_benign) over the model's class groups",
    "auc_raw_p_mel": "the ISIC scorer's MEL AUC: ranks raw P(MEL), the ISIC submission's MEL column "
    "(model classes mapped to MEL, summed, clipped to [0, 1]); for a binary mel/nv model the two "
    "coincide up to float rounding",
}


def two_aucs(
    metrics: dict[str, Any], y: np.ndarray, classes: Sequence[str], probs: np.ndarray, included: np.ndarray
) -> dict[str, Any]:
    """``metrics`` (from :func:`binary_metrics` on ``y``, the included cases) plus both named AUCs with
    DeLong CIs, on the same cases: ``auc_melanoma_vs_naevus`` (= ``auc``, the headline) and
    ``auc_raw_p_mel`` (what the official ISIC scorer ranks)."""
    mel = isic_probabilities(classes, probs)[np.asarray(included, dtype=bool), ISIC2019_COLUMNS.index("MEL")]
    out = dict(metrics)
    head = AUC_DEFINITIONS["auc_melanoma_vs_naevus"]
    out["auc_melanoma_vs_naevus"] = {**metrics["auc"], "definition": head}
    out["auc_raw_p_mel"] = {**delong_auc_ci(y, mel), "definition": AUC_DEFINITIONS["auc_raw_p_mel"]}
    return out


# ----- output files -------------------------------------------------------------------------------


def predictions_csv(ev: Evaluation) -> str:
    """image_id, diagnosis, p_<class>..., melanoma_score, predicted (melanoma|benign), in_metrics."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["image_id", "diagnosis"]
        + [f"p_{c}" for c in ev.classes]
        + ["melanoma_score", "predicted", "in_metrics"]
    )
    for s, p, sc, inc in zip(ev.samples, ev.probs, ev.scores, ev.included, strict=True):
        pred = Group.MELANOMA if sc >= ev.threshold else Group.BENIGN
        w.writerow(
            [s.image_id, s.diagnosis] + [repr(float(v)) for v in p] + [repr(float(sc)), pred, int(inc)]
        )
    return buf.getvalue()


def isic_class_mapping(classes: Sequence[str]) -> dict[str, str]:
    """Model class -> ISIC 2019 column; classes that map to no ISIC diagnosis go to UNK."""
    mapping = {}
    for c in classes:
        code = canonical_diagnosis(c)
        mapping[c] = _CANONICAL_TO_ISIC.get(code or "", "UNK")
    return mapping


def isic_probabilities(classes: Sequence[str], probs: np.ndarray) -> np.ndarray:
    """N x 9 probabilities over :data:`ISIC2019_COLUMNS`: each model class added to its ISIC column
    (absent columns 0), clipped to [0, 1] (a sum may exceed 1 by a rounding error)."""
    mapping = isic_class_mapping(classes)
    col = {c: i for i, c in enumerate(ISIC2019_COLUMNS)}
    p = np.asarray(probs, dtype=np.float64)
    out = np.zeros((len(p), len(ISIC2019_COLUMNS)))
    for k, c in enumerate(classes):
        out[:, col[mapping[c]]] += p[:, k]
    return np.clip(out, 0.0, 1.0)


def isic_submission_csv(ev: Evaluation) -> str:
    """ISIC 2019 challenge submission: ``image`` + MEL..UNK probabilities (absent classes are 0).

    Values are written losslessly (shortest round-trip repr): rounding would create ties that change
    the official scorer's AUC (a saturated 0.9999995 is not 1.0).
    """
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", *ISIC2019_COLUMNS])
    for s, row in zip(ev.samples, isic_probabilities(ev.classes, ev.probs), strict=True):
        w.writerow([s.image_id] + [repr(float(v)) for v in row])
    return buf.getvalue()


def plot_roc(ev: Evaluation, path: Path, title: str = "", label: str = "model") -> None:
    """Write the evaluation's ROC curve as a PNG (:func:`dermadv.report.figures.roc_plot`): the AUC
    and its 95% CI in the legend, the operating point at ``ev.threshold`` marked."""
    from dermadv.report.figures import roc_curve_from_metrics, roc_plot

    m = ev.metrics
    curve = roc_curve_from_metrics(label, ev.y_true, ev.scores[ev.included], m)
    title = title or f"melanoma vs naevus, n = {m['n']} ({m['n_melanoma']} melanoma)"
    atomic_write_bytes(path, roc_plot([curve], title))


@holding_run("out")  # one writer per run folder, from the settings check to the last file
def write_evaluation(
    ev: Evaluation,
    model: Any,
    out: str | Path,
    data: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    isic_submission: bool = False,
    model_file_hash: str | None = None,
) -> dict[str, Path]:
    """Write every output file into ``out``; returns their paths by name.

    ``model_file_hash``: the SHA-256 of the model file when the caller has it (else it is computed
    from ``settings["model"]`` when that names a file).

    ``out/run.json`` is a :class:`dermadv.runs.record.RunDir` record of kind ``evaluate``; a folder
    holding an evaluation with other result settings (model, model file, data, threshold) is refused
    before any file is written; the folder is locked while it is written (``RUN/.lock``; the
    ``evaluate`` command holds it from the first prediction on). In ``settings``, ``model`` (what the
    user named) is provenance and ``batch_size`` the inference batch size.
    """
    from dermadv.runs.provenance import model_file_sha256, run_provenance, selection_hash, versions
    from dermadv.runs.record import RunDir

    out = Path(out).expanduser()
    options = dict(settings or {})
    model_spec = options.pop("model", None)
    if "batch_size" in options:
        options["inference_batch_size"] = options.pop("batch_size")
    selection = {k: v for k, v in dict(data or {}).items() if k != "n_selected"}
    if "hash" not in selection:
        selection["hash"] = selection_hash(ev.samples)
    file_hash = model_file_hash
    if file_hash is None and isinstance(model_spec, (str, Path)):
        file_hash = model_file_sha256(model_spec)
    run_settings = {
        **options,
        "model": model.describe(),
        "model_file_sha256": file_hash,
        "data": selection,
        "threshold": ev.threshold,
    }
    provenance = run_provenance(
        model, model_spec=model_spec, model_file_hash=file_hash, data=selection, samples=ev.samples
    )
    RunDir(out, "evaluate").check(run_settings)  # refuse before overwriting anything
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "predictions": out / "predictions.csv",
        "metrics": out / "metrics.json",
        "confusion_txt": out / "confusion.txt",
        "confusion_json": out / "confusion.json",
        "roc": out / "roc.png",
    }
    atomic_write_text(files["predictions"], predictions_csv(ev))
    atomic_write_text(files["confusion_txt"], format_confusion(ev.metrics["confusion"]) + "\n")
    atomic_write_text(files["confusion_json"], json.dumps(ev.metrics["confusion"], indent=2) + "\n")
    plot_roc(ev, files["roc"], label=str(getattr(model, "name", "") or "model"))
    if isic_submission:
        files["isic_submission"] = out / "isic_submission.csv"
        atomic_write_text(files["isic_submission"], isic_submission_csv(ev))
    excluded: dict[str, int] = {}
    for s, inc in zip(ev.samples, ev.included, strict=True):
        if not inc:
            excluded[s.diagnosis] = excluded.get(s.diagnosis, 0) + 1
    record = {
        "metrics": ev.metrics,
        "summary": ev.summary(),
        "model": model.describe(),
        "data": {
            **dict(data or {}),
            "n_images": len(ev.samples),
            "n_in_metrics": int(ev.included.sum()),
            "excluded_from_metrics": excluded,
        },
        "settings": dict(settings or {}),
        "truth": "melanoma = diagnosis 'mel', benign = 'nv'; other diagnoses excluded from the metrics",
        "score": "melanoma_score = p_mel / (p_mel + p_benign) over the model's class groups; "
        "predicted melanoma iff melanoma_score >= threshold",
        "isic_class_mapping": isic_class_mapping(ev.classes) if isic_submission else None,
        "versions": versions(),
        "seconds": round(ev.seconds, 3),
        **ev.extra,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {k: p.name for k, p in files.items() if k != "metrics"},
    }
    atomic_write_text(files["metrics"], json.dumps(record, indent=2, default=str) + "\n")
    RunDir.open(
        out,
        "evaluate",
        run_settings,
        provenance,
        extra={"n_images": len(ev.samples), "files": {k: p.name for k, p in files.items()}},
    )
    (out / ".predictions.partial.jsonl").unlink(missing_ok=True)  # complete: nothing left to resume
    return files


def format_report(ev: Evaluation, model_name: str = "") -> str:
    """The human-readable table the CLI prints."""
    head = f"model {model_name}: " if model_name else ""
    n_excl = int((~ev.included).sum())
    lines = [
        f"{head}{len(ev.samples)} image(s) predicted in {ev.seconds:.1f} s"
        + (f"; {n_excl} not melanoma/naevus, excluded from the metrics" if n_excl else "")
        + (
            f" ({ev.extra['resumed_predictions']} reused from an interrupted run)"
            if ev.extra.get("resumed_predictions")
            else ""
        ),
        "",
        format_metrics_table(ev.metrics),
    ]
    if ev.extra.get("changed_images"):
        from dermadv.runs.content import changed_message

        lines.insert(1, changed_message(ev.extra["changed_images"]))
    raw = ev.metrics.get("auc_raw_p_mel")
    if raw is not None:
        lines.append(
            f"ISIC scorer's MEL AUC (raw P(MEL)) {raw['value']:.3f}   [{raw['ci_low']:.3f}, "
            f"{raw['ci_high']:.3f}]  (auc above: melanoma vs naevus, p_mel/(p_mel+p_nv))"
        )
    lines.append("CIs: AUC DeLong; proportions Wilson score.")
    return "\n".join(lines)
