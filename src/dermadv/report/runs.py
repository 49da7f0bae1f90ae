"""Reading run directories for reports: what kind of run a folder is and what it holds.

The kind comes from the folder's ``run.json`` (``kind``: train, evaluate, sweep, attack; see
:mod:`dermadv.runs.record`). Folders written before run records had a kind are recognised by their
files, and may then be several kinds at once:

- ``training``: ``history.json`` / ``history.csv`` (``dermadv train``);
- ``evaluation``: ``metrics.json`` and/or ``predictions.csv`` (``dermadv evaluate``);
- ``perturbation``: ``perturbation.json`` (``dermadv perturb``);
- ``attack``: ``results.sqlite`` (``dermadv attack``);
- ``robustness``: ``robustness.json`` (``dermadv robustness``);
- ``transfer``: ``transfer.json`` (``dermadv transfer``);
- ``explanation``: ``explain.json`` (``dermadv explain``).

Readers are tolerant about column names so that predictions from other tools can be reported too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError
from dermadv.fileio import read_json

RUN_KINDS: tuple[str, ...] = ("training", "evaluation", "perturbation", "attack")
#: run.json ``kind`` -> the report's name for it.
RECORD_KINDS: dict[str, str] = {
    "train": "training",
    "evaluate": "evaluation",
    "sweep": "perturbation",
    "attack": "attack",
    "robustness": "robustness",
    "defend": "defence",
    "transfer": "transfer",
}
_TRUE_COLUMNS = ("y_true", "melanoma", "is_melanoma", "true_melanoma", "label", "target")
_SCORE_COLUMNS = ("melanoma_score", "score", "p_melanoma", "mel_score", "prob_melanoma", "y_score")


@dataclass
class Run:
    """One run folder and its kinds."""

    path: Path
    kinds: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # run.json, if any

    @property
    def model_name(self) -> str:
        """The model's name as recorded by whichever command wrote the run."""
        provenance = self.info.get("provenance")
        recorded = provenance.get("model") if isinstance(provenance, dict) else None
        for m in (self.info.get("model"), self.info.get("model_description"), recorded):
            if isinstance(m, dict) and m.get("name"):
                return model_label(m)
            if isinstance(m, str) and m:
                return m
        settings = self.info.get("settings")
        if isinstance(settings, dict) and settings.get("arch"):  # a `dermadv train` run (train.json)
            return f"{settings['arch']}:{self.path.name}/best.pt{_jitter_note(settings)}"
        metrics = self.path / "metrics.json"
        if metrics.exists():
            m = read_json(metrics)
            if isinstance(m, dict):
                for key in ("model", "model_name"):
                    v = m.get(key)
                    if isinstance(v, dict) and v.get("name"):
                        return model_label(v)
                    if isinstance(v, str) and v:
                        return v
        return self.path.name

    @property
    def label(self) -> str:
        name = self.model_name
        return name if name == self.path.name else f"{name} [{self.path.name}]"


def _jitter_note(training: dict[str, Any]) -> str:
    """' (colour jitter)' / ' (no colour jitter)' when a training record says which, else ''."""
    if "color_jitter" not in training:
        return ""
    return " (colour jitter)" if training["color_jitter"] else " (no colour jitter)"


def model_label(description: dict[str, Any]) -> str:
    """How reports name a model: its ``describe()`` name, made distinguishable for dermadv checkpoints.

    Every checkpoint of one architecture is named ``ARCH:best.pt``; two models trained with and
    without colour jitter (the study's Supplementary Table 2) would get the same column heading. For
    checkpoints the label is ``ARCH:PATH`` plus whether the training used colour jitter.
    """
    name = str(description.get("name") or "model")
    ckpt = description.get("checkpoint")
    if not isinstance(ckpt, dict) or not ckpt.get("path"):
        return name
    path = str(ckpt["path"])
    arch = ckpt.get("arch") or name.split(":", 1)[0]
    if name == f"{arch}:{Path(path).name}":
        name = f"{arch}:{path}"
    training = ckpt.get("training")
    return name + (_jitter_note(training) if isinstance(training, dict) else "")


def detect_run(path: str | Path) -> Run:
    """Classify a run folder; DataError if it is none of the known kinds."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"{p}: not a directory (give run folders written by dermadv evaluate/perturb/attack)")
    if (p / "run.json").exists():
        from dermadv.runs.record import read_run

        info = read_run(p)
        kind = info.get("kind")
        if kind is not None:
            if kind not in RECORD_KINDS:
                raise DataError(f"{p}: a {kind!r} run; reports cover {', '.join(RECORD_KINDS)} runs")
            return Run(path=p, kinds=[RECORD_KINDS[kind]], info=info)
    return _sniff_run(p)


def _sniff_run(p: Path) -> Run:
    """A folder without a run kind on record: classified by the files it holds."""
    kinds = []
    if (p / "history.json").exists() or (p / "history.csv").exists():
        kinds.append("training")
    if (p / "metrics.json").exists() or (p / "predictions.csv").exists():
        kinds.append("evaluation")
    if (p / "perturbation.json").exists():
        kinds.append("perturbation")
    if (p / "results.sqlite").exists():
        kinds.append("attack")
    if (p / "robustness.json").exists():
        kinds.append("robustness")
    if (p / "transfer.json").exists():
        kinds.append("transfer")
    if (p / "explain.json").exists():
        kinds.append("explanation")
    if not kinds:
        raise DataError(
            f"{p}: not a dermadv run (expected history.json, metrics.json/predictions.csv, perturbation.json "
            "or results.sqlite)"
        )
    info_file = next((p / n for n in ("run.json", "train.json") if (p / n).exists()), None)
    info = read_json(info_file) if info_file else {}
    return Run(path=p, kinds=kinds, info=info if isinstance(info, dict) else {})


def read_metrics(run: Run) -> dict[str, Any] | None:
    """The binary_metrics dict of an evaluation run (accuracy/sensitivity/... with CIs), or None."""
    p = run.path / "metrics.json"
    if not p.exists():
        return None
    m = read_json(p)
    if isinstance(m, dict) and "accuracy" not in m:
        for key in ("metrics", "binary", "val", "validation"):
            if isinstance(m.get(key), dict) and "accuracy" in m[key]:
                return m[key]
    return m if isinstance(m, dict) and "accuracy" in m else None


def _truthy(v: str) -> int:
    s = str(v).strip().lower()
    if s in ("1", "1.0", "true", "mel", "melanoma", "yes"):
        return 1
    if s in ("0", "0.0", "false", "nv", "naevus", "nevus", "benign", "no"):
        return 0
    raise ValueError(v)


def read_predictions(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(y_true 1=melanoma, melanoma score) from ``predictions.csv``, or None when absent.

    Rows whose diagnosis is neither melanoma nor naevus are left out (the study's two classes).
    """
    p = run.path / "predictions.csv"
    if not p.exists():
        return None
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        rows = list(reader)
    score_col = next((c for c in _SCORE_COLUMNS if c in cols), None)
    true_col = next((c for c in _TRUE_COLUMNS if c in cols), None)
    diag_col = "diagnosis" if "diagnosis" in cols else None
    if score_col is None or (true_col is None and diag_col is None):
        raise DataError(
            f"{p}: need a melanoma score column (one of {', '.join(_SCORE_COLUMNS)}) and a truth column "
            f"(one of {', '.join(_TRUE_COLUMNS)}, or diagnosis); found {cols}"
        )
    y, s = [], []
    for i, r in enumerate(rows, start=2):
        try:
            if true_col is not None:
                truth = _truthy(r[true_col])
            else:
                d = r[diag_col].strip().lower()
                if d not in ("mel", "nv"):
                    continue
                truth = int(d == "mel")
            y.append(truth)
            s.append(float(r[score_col]))
        except (ValueError, KeyError) as exc:
            raise DataError(f"{p}, line {i}: unreadable value ({exc})") from exc
    return np.asarray(y, dtype=int), np.asarray(s, dtype=float)


def read_history(run: Run) -> list[dict[str, Any]] | None:
    """Per-epoch training history (list of flat dicts) from history.csv / history.json, or None.

    Nested JSON entries (e.g. ``{"val": {"auc": {"value": ...}}}``) are flattened to ``val_auc``.
    """
    p = run.path / "history.csv"
    if p.exists():
        with p.open(newline="", encoding="utf-8") as fh:
            out = []
            for r in csv.DictReader(fh):
                row: dict[str, Any] = {}
                for k, v in r.items():
                    try:
                        row[k] = float(v)
                    except (TypeError, ValueError):
                        row[k] = v
                out.append(row)
            if out:
                return out
    p = run.path / "history.json"
    if p.exists():
        h = read_json(p)
        if isinstance(h, dict):
            h = h.get("history") or h.get("epochs")
        if isinstance(h, list) and h and isinstance(h[0], dict):
            return [_flatten(e) for e in h]
    return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if "value" in v and isinstance(v["value"], (int, float)):
                out[key] = v["value"]
            else:
                out.update(_flatten(v, key + "_"))
        else:
            out[key] = v
    return out


def find_paths(obj: Any, limit: int = 200) -> list[Path]:
    """Existing filesystem paths mentioned anywhere in a JSON-like object (for provenance checks)."""
    found: list[Path] = []

    def walk(o: Any) -> None:
        if len(found) >= limit:
            return
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str) and ("/" in o or "\\" in o) and len(o) < 1000:
            try:
                p = Path(o)
                if p.exists():
                    found.append(p)
            except OSError:
                pass

    walk(obj)
    return found
