"""The record of a run: ``RUN/run.json``, one shape for every kind of run.

Every command that writes a run folder (``train``, ``evaluate``, ``sweep``, ``attack``, later
``robustness``...) opens it with :meth:`RunDir.open`, which checks the folder's existing record and
records this invocation. ``run.json`` holds::

    kind            "train" | "evaluate" | "sweep" | "attack" | ...
    schema          version of this layout (SCHEMA)
    created/updated UTC times
    settings        everything the run was asked to do (result settings and the others)
    settings_hash   hash of the result settings (settings minus NON_RESULT_KEYS)
    provenance      model description, model file SHA-256, data selection and hash, versions
    invocations     [{"at", "argv", "options"}, ...]: every time the run was started or resumed;
                    ``options`` are that invocation's non-result settings (device, batch size...)
    ...             kind-specific fields (scope, status, summary...)

Which settings change results -- decided once, for every kind
-------------------------------------------------------------
A result setting is one that can change a stored number by more than float rounding. Everything in
``settings`` is one, except the keys in :data:`NON_RESULT_KEYS` (dotted paths: an entry drops that key
and everything below it). They are:

- where and how the arithmetic runs: ``device``, ``amp``, ``threads``, ``workers``, ``executor``,
  ``progress``, ``memory_limit_mb``, ``cache_dir``, ``checkpoint_every``, and the inference batch size
  (``inference_batch_size``; ``model.batch_size``), plus the model description's ``model.device``,
  ``model.providers``, ``model.threads`` and ``model.inference`` (precision, channels-last, compile,
  CUDA graphs: :mod:`dermadv.models.accel`). They change at most float rounding, so a run started on
  cuda may be resumed on cpu -- the same for sweeps and campaigns (and evaluation and training);
- where files are: ``out`` and the model's location (``model.path``, ``model.file``, ``model.source``,
  ``model.checkpoint.path``); the model file's *content* is the result setting ``model_file_sha256``;
- observations, not settings: ``model.metadata.defaults_used`` and ``model.metadata_defaults_note``
  (how often a metadata model had to use defaults) and ``model.exported_from`` (an ONNX file's notes);
- ``epochs``: a training run may be extended (with a cosine schedule, its length is the result setting
  ``lr_schedule_epochs``);
- ``allow_edited_split``: permission to use a split that fails verification; what the split holds is
  recorded by its hashes (``data.hash``, ``data.split_hash``).

Everything else is a result setting; in particular the training mini-batch ``batch_size`` (it changes
what is learned), attack settings, thresholds, the data location (``data.path``, ``data.split``,
``data.subset``) and, for kinds whose numbers cover the whole selection (train, evaluate, sweep), the
selection hash ``data.hash``. Campaign rows are per image, so a campaign records no selection hash in
its settings: a rerun may attack more or fewer images.

Opening an existing run with different result settings raises one :class:`DataError` naming the
differing keys. Sections named in ``extendable`` (a campaign's ``attacks``) may gain new entries;
entries already there must be identical. All writes are atomic (:mod:`dermadv.fileio`).

One writer per run folder
-------------------------
:meth:`RunDir.open` first takes the folder's lock (``RUN/.lock``, :mod:`dermadv.runs.lock`), then
checks the record and writes it, so two processes can never both pass the check. A second process
gets one DataError naming the holder's PID and command. The lock is held until :meth:`RunDir.close`
(or the end of a ``with RunDir.open(...)`` block), or, when this process already held the folder
(``with hold_run(out)``, ``@holding_run("out")``, as every run kind does for its whole run), until
that outer hold ends; a RunDir that is never closed holds it while it exists.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_json
from dermadv.runs.lock import RunHold, hold_run, is_held

RUN_FILE = "run.json"
SCHEMA = 1
#: Kinds of run folders (``kind`` in run.json).
KINDS: tuple[str, ...] = ("train", "evaluate", "sweep", "attack", "robustness", "defend", "transfer")
#: ``kind`` values written before run records had one shape.
LEGACY_KINDS: dict[str, str] = {"dermadv-attack-campaign": "attack", "perturbation": "sweep"}

#: Settings that do not change results (see the module docstring); dotted paths into ``settings``.
NON_RESULT_KEYS: frozenset[str] = frozenset(
    {
        # where and how the arithmetic runs
        "device",
        "amp",
        "threads",
        "workers",
        "executor",
        "progress",
        "memory_limit_mb",
        "cache_dir",
        "checkpoint_every",
        "inference_batch_size",
        "model.batch_size",
        "model.device",
        "model.providers",
        "model.threads",
        "model.inference",
        # where files are (a model file's content is model_file_sha256)
        "out",
        "model.path",
        "model.file",
        "model.source",
        "model.checkpoint.path",
        # observations recorded in a model description
        "model.metadata.defaults_used",
        "model.metadata_defaults_note",
        "model.exported_from",
        # a training run may be extended (a cosine schedule's length is lr_schedule_epochs)
        "epochs",
        # a permission; the split's content is in the data hashes
        "allow_edited_split",
    }
)


def _non_result(key: str) -> bool:
    parts = key.split(".")
    return any(".".join(parts[: i + 1]) in NON_RESULT_KEYS for i in range(len(parts)))


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": value}`` (lists and scalars are leaves)."""
    if isinstance(d, Mapping):
        if not d and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _json_value(value: Any) -> Any:
    """A value as it reads back from JSON (tuples as lists, numpy scalars as numbers...)."""
    from dermadv.fileio import json_default

    return json.loads(json.dumps(value, default=json_default))


def result_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The flat ``{dotted key: value}`` of the settings that change results."""
    return {k: v for k, v in flatten(_json_value(dict(settings))).items() if not _non_result(k)}


def non_result_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The flat ``{dotted key: value}`` of the settings that do not change results."""
    return {k: v for k, v in flatten(_json_value(dict(settings))).items() if _non_result(k)}


def settings_hash(settings: Mapping[str, Any]) -> str:
    """16-hex-digit hash of the result settings (independent of the non-result keys)."""
    blob = json.dumps(result_settings(settings), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_run(path: str | Path) -> dict[str, Any]:
    """The run.json of a run folder (or the file itself), with ``kind`` (legacy kinds mapped).

    DataError when it is missing or unreadable.
    """
    p = Path(path)
    file = p if p.name == RUN_FILE and not p.is_dir() else p / RUN_FILE
    if not file.is_file():
        raise DataError(f"{p}: no {RUN_FILE}; not a dermadv run folder")
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file}: unreadable run record ({exc})") from exc
    if not isinstance(info, dict):
        raise DataError(f"{file}: not a run record (a JSON object)")
    kind = info.get("kind")
    if isinstance(kind, str) and kind in LEGACY_KINDS:
        info["kind"] = LEGACY_KINDS[kind]
    return info


def _a(kind: Any) -> str:
    kind = str(kind)
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RunDir:
    """A run folder and its record; make one with :meth:`open`."""

    path: Path
    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] | None = None  # the record found when opening, if any
    _hold: RunHold | None = field(default=None, repr=False, compare=False)

    @property
    def file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def resumed(self) -> bool:
        return self.previous is not None

    @classmethod
    def open(
        cls,
        path: str | Path,
        kind: str,
        settings: Mapping[str, Any],
        provenance: Mapping[str, Any] | None = None,
        *,
        extendable: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
        argv: list[str] | None = None,
    ) -> RunDir:
        """Lock ``path``, check its record against ``settings`` and record this invocation.

        Raises DataError when another process holds the folder (naming its PID and command), or the
        folder holds a run of another kind or with different result settings (naming the differing
        keys). ``extendable`` names settings sections (mappings) that may gain new entries, e.g. a
        campaign's ``attacks``; ``extra`` are kind-specific fields. The lock is this RunDir's until
        :meth:`close` unless this process held the folder already (see the module docstring).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r}; one of {', '.join(KINDS)}")
        run = cls(Path(path), kind)
        if not is_held(run.path):
            run._hold = hold_run(run.path)
        try:
            run._record(settings, provenance, extendable, extra, argv)
        except BaseException:
            run.close()
            raise
        return run

    def _record(
        self,
        settings: Mapping[str, Any],
        provenance: Mapping[str, Any] | None,
        extendable: Iterable[str],
        extra: Mapping[str, Any] | None,
        argv: list[str] | None,
    ) -> None:
        """Check the record under the lock and write this invocation into it."""
        extendable = tuple(extendable)
        previous = self.check(settings, extendable)
        self.previous = previous
        merged = dict(settings)
        for section in extendable:
            if previous and isinstance(previous.get("settings", {}).get(section), Mapping):
                merged[section] = {**previous["settings"][section], **dict(settings.get(section) or {})}
        now = _now()
        invocation: dict[str, Any] = {"at": now, "argv": list(sys.argv[1:] if argv is None else argv)}
        options = non_result_settings(settings)
        if options:
            invocation["options"] = options
        old_invocations = (previous or {}).get("invocations", [])
        self.info = {
            "kind": self.kind,
            "schema": SCHEMA,
            "created": (previous or {}).get("created", now),
            "updated": now,
            "settings_hash": settings_hash(merged),
            "settings": _json_value(merged),
            "provenance": _json_value(dict(provenance or {})),
            **_json_value(dict(extra or {})),
            "invocations": [*(old_invocations if isinstance(old_invocations, list) else []), invocation],
        }
        self.write()

    def close(self) -> None:
        """Give up this RunDir's hold of the folder's lock (nothing if it borrowed an outer hold)."""
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit the lock dies with the process anyway
            pass

    def check(self, settings: Mapping[str, Any], extendable: Iterable[str] = ()) -> dict[str, Any] | None:
        """The existing record if its result settings agree with ``settings`` (None if there is none)."""
        if not self.file.exists():
            return None
        old = read_run(self.path)
        old_kind = old.get("kind")
        if old_kind is None:
            old_kind = self.kind  # a record written before run.json had a kind: trust the folder
        if old_kind != self.kind:
            raise DataError(
                f"{self.path} holds {_a(old_kind)} run, not {_a(self.kind)} run; "
                "choose another --out directory"
            )
        if "schema" not in old and old_kind == "sweep":
            return old  # pre-schema sweep records had another layout; its results carry fingerprints
        found = old.get("settings")
        old_settings: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        extendable = tuple(extendable)
        old_flat = result_settings(old_settings)
        new_flat = result_settings(settings)
        for section in extendable:  # only entries present in both runs must agree
            old_entries = old_settings.get(section) or {}
            new_entries = settings.get(section) or {}
            for key in list(old_flat) + list(new_flat):
                if key.startswith(section + "."):
                    entry = key[len(section) + 1 :].split(".")[0]
                    if entry not in old_entries or entry not in new_entries:
                        old_flat.pop(key, None)
                        new_flat.pop(key, None)
        diffs = [
            f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}"
            for k in sorted(set(old_flat) | set(new_flat))
            if old_flat.get(k) != new_flat.get(k)
        ]
        if diffs:
            shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
            raise DataError(
                f"{self.path} holds {_a(self.kind)} run with different settings ({shown}). Rerun with the "
                "same settings to resume it, or choose a new --out directory."
            )
        return old

    def update(self, **fields: Any) -> None:
        """Set kind-specific fields (status, summary...) and write the record again."""
        self.info.update(_json_value(fields))
        self.info["updated"] = _now()
        self.write()

    def write(self) -> None:
        """Write run.json, holding the folder's lock (DataError if another process holds it)."""
        with hold_run(self.path):
            atomic_write_json(self.file, self.info)
