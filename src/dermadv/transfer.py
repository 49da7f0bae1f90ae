"""Transferability: do the adversarial images one campaign found fool other models too?

:func:`run_transfer` takes one or more campaign RUN folders (``dermadv attack``) and target models
(any adapter or defence :func:`dermadv.models.registry.load_model` loads) and scores every saved
adversarial image, with its original, on every target. Per (image, attack, target) it records:

- ``misclassified``: the target already called the *original* wrongly (not a transfer attempt);
- ``success``: the target called the original correctly and calls the adversarial image the other
  group (a melanoma called benign; for nv->mel campaigns, a naevus called melanoma);
- ``failure``: called the original correctly, and still does after the attack.

The images are the PNGs the campaign saved (at the source model's input size; each target resizes
them as it resizes any input). Per-image metadata (age, sex, site) is read from the data set the
campaign attacked when a target takes metadata; else the target's defaults are used and that is noted.

The transfer matrix, per attack: rows = source runs, columns = targets, cell = transfer rate among
the adversarial images that *succeeded on the source* and whose original the target called correctly,
with a Wilson 95% CI. Scoring a campaign on its own model reproduces the campaign's own outcomes
(row by row); that is a test.

Files in OUT: ``transfer.csv`` (the matrix, one line per attack x source x target),
``transfer_rows.csv`` (one line per image x attack x target), ``transfer.json`` (both, and what
produced them) and ``run.json`` (kind ``transfer``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_text, read_result
from dermadv.vocab import Group, Outcome

RUN_KIND = "transfer"
MATRIX_FILE = "transfer.json"
MATRIX_COLUMNS: tuple[str, ...] = (
    "attack",
    "source",
    "target",
    "transferred",
    "attempted",
    "rate",
    "ci_low",
    "ci_high",
    "source_successes",
    "target_misclassified",
)
ROW_COLUMNS: tuple[str, ...] = (
    "source",
    "image_id",
    "attack",
    "target",
    "source_outcome",
    "outcome",
    "original_score",
    "adversarial_score",
)


@dataclass
class TransferResult:
    """What :func:`run_transfer` computed: the matrix entries and the per-image rows."""

    out: Path
    matrix: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cell(self, attack: str, source: str, target: str) -> dict[str, Any]:
        """One matrix entry (KeyError when absent)."""
        for m in self.matrix:
            if (m["attack"], m["source"], m["target"]) == (attack, source, target):
                return m
        raise KeyError((attack, source, target))


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _metadata_by_id(info: Mapping[str, Any], notes: list[str], label: str) -> dict[str, Any]:
    """image_id -> metadata of the data set a campaign attacked (empty when it cannot be read)."""
    from dermadv.data import load_dataset

    data = (info.get("provenance") or {}).get("data") or (info.get("settings") or {}).get("data") or {}
    path = data.get("path") if isinstance(data, Mapping) else None
    if not path or not Path(path).exists():
        notes.append(f"{label}: data set not found ({path!r}); metadata-taking targets used their defaults")
        return {}
    try:
        ds = load_dataset(path, progress=False)
    except DataError as exc:
        notes.append(f"{label}: {exc}; metadata-taking targets used their defaults")
        return {}
    return {s.image_id: s.metadata() for s in ds.samples}


def _target_group(row: Mapping[str, Any]) -> str:
    """The group an attack on this row tries to reach (benign for melanomas, melanoma for naevi)."""
    return Group.BENIGN if row.get("true_group", Group.MELANOMA) == Group.MELANOMA else Group.MELANOMA


def _scores(model: Any, images: list[np.ndarray], metadata: list[Any] | None) -> np.ndarray:
    from dermadv.metrics import melanoma_score

    if not images:
        return np.zeros(0)
    return np.asarray(melanoma_score(model, model.predict_proba(images, metadata=metadata)), dtype=float)


def score_run_on(
    run_dir: Path, rows: Sequence[Mapping[str, Any]], model: Any, metadata: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Per-row outcome on ``model`` of a run's rows that saved an adversarial image (see module doc)."""
    usable = [r for r in rows if r.get("adversarial_path") and r.get("original_path")]
    meta = [metadata.get(r["image_id"]) for r in usable] if getattr(model, "needs_metadata", False) else None
    orig = _scores(model, [_load_png(run_dir / r["original_path"]) for r in usable], meta)
    adv = _scores(model, [_load_png(run_dir / r["adversarial_path"]) for r in usable], meta)
    out = []
    for r, so, sa in zip(usable, orig, adv, strict=True):
        true_mel = r.get("true_group", Group.MELANOMA) == Group.MELANOMA
        correct = (so >= 0.5) == true_mel
        flipped = (sa >= 0.5) == (_target_group(r) == Group.MELANOMA)
        outcome = Outcome.MISCLASSIFIED if not correct else Outcome.SUCCESS if flipped else Outcome.FAILURE
        out.append(
            {
                "image_id": r["image_id"],
                "attack": r["attack"],
                "source_outcome": r["outcome"],
                "outcome": str(outcome),
                "original_score": float(so),
                "adversarial_score": float(sa),
            }
        )
    return out


def transfer_matrix(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Matrix entries (attack x source x target) from per-image rows: transfer rate among source
    successes the target called correctly, Wilson 95% CI (nan when there were none)."""
    from dermadv.metrics import wilson_ci

    keys = sorted({(r["attack"], r["source"], r["target"]) for r in rows})
    out = []
    for attack, source, target in keys:
        pool = [
            r
            for r in rows
            if (r["attack"], r["source"], r["target"]) == (attack, source, target)
            and r["source_outcome"] == Outcome.SUCCESS
        ]
        attempted = [r for r in pool if r["outcome"] != Outcome.MISCLASSIFIED]
        k, n = sum(r["outcome"] == Outcome.SUCCESS for r in attempted), len(attempted)
        lo, hi = wilson_ci(k, n) if n else (float("nan"), float("nan"))
        out.append(
            {
                "attack": attack,
                "source": source,
                "target": target,
                "transferred": k,
                "attempted": n,
                "rate": k / n if n else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
                "source_successes": len(pool),
                "target_misclassified": len(pool) - n,
            }
        )
    return out


def _csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(r[k], float) and np.isnan(r[k]) else r[k]) for k in columns})
    return buf.getvalue()


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def run_transfer(
    runs: Sequence[str | Path],
    models: Mapping[str, Any] | Sequence[str],
    out: str | Path,
    *,
    log: Callable[[str], None] = lambda _m: None,
) -> TransferResult:
    """Score the adversarial images of campaign ``runs`` on ``models`` (label -> Classifier, or
    load_model specs); write the matrix and rows into ``out`` (see the module docstring)."""
    from dermadv.campaign.store import ResultsStore
    from dermadv.report.runs import detect_run
    from dermadv.runs.record import RunDir

    if not runs:
        raise DataError("give at least one campaign RUN folder (written by dermadv attack)")
    if not models:
        raise DataError("give at least one target model (--models A,B,...)")
    targets = _targets(models)
    sources = []
    for r in runs:
        run = detect_run(r)
        if "attack" not in run.kinds:
            raise DataError(f"{run.path}: not a campaign run (no results.sqlite); transfer needs attack runs")
        sources.append(run)
    labels = _source_labels(sources)
    out = Path(out)
    settings = {
        "sources": [
            {"path": str(s.path.resolve()), "settings_hash": s.info.get("settings_hash")} for s in sources
        ],
        "targets": {name: m.describe() for name, m in targets.items()},
        "threshold": 0.5,
    }
    result = TransferResult(out)
    with RunDir.open(out, RUN_KIND, settings, {"sources": labels}):
        for run, label in zip(sources, labels, strict=True):
            with ResultsStore(run.path, create=False) as store:
                rows = store.rows()
            metadata: dict[str, Any] = {}
            if any(getattr(m, "needs_metadata", False) for m in targets.values()):
                metadata = _metadata_by_id(run.info, result.notes, label)
            for name, model in targets.items():
                log(f"{label} -> {name}")
                for row in score_run_on(run.path, rows, model, metadata):
                    result.rows.append({"source": label, "target": name, **row})
        result.matrix = transfer_matrix(result.rows)
        atomic_write_text(out / "transfer.csv", _csv(MATRIX_COLUMNS, result.matrix))
        atomic_write_text(out / "transfer_rows.csv", _csv(ROW_COLUMNS, result.rows))
        doc = {
            "sources": labels,
            "targets": list(targets),
            "matrix": result.matrix,
            "rows": result.rows,
            "notes": result.notes,
            "definition": "transfer rate = adversarial images that succeeded on the source, whose "
            "original the target called correctly, and that the target calls the attack's target group; "
            "Wilson 95% CI",
        }
        atomic_write_text(out / MATRIX_FILE, json.dumps(_json_safe(doc), indent=2) + "\n")
    return result


def _targets(models: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    if isinstance(models, Mapping):
        return dict(models)
    from dermadv.models.registry import load_model
    from dermadv.report.runs import model_label

    out: dict[str, Any] = {}
    for spec in dict.fromkeys(models):
        model = load_model(spec)
        label = model_label(model.describe())  # as reports name the model of a campaign run
        out[label if label not in out else f"{label} [{spec}]"] = model
    return out


def _source_labels(sources: Sequence[Any]) -> list[str]:
    """The runs' model labels, made unique with the folder name when two coincide."""
    labels: list[str] = []
    for s in sources:
        label = s.model_name
        labels.append(label if label not in labels else f"{label} [{s.path.name}]")
    return labels


def read_transfer(run_dir: str | Path) -> dict[str, Any]:
    """The ``transfer.json`` of a transfer run."""
    return read_result(Path(run_dir) / MATRIX_FILE, "transfer results", "transfer", "matrix")
