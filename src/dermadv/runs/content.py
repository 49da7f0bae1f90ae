"""Content hashes of input images, so that a resumed run recomputes what changed.

Every resumed row (evaluate's partial predictions, a sweep's per-perturbation scores, a campaign's
(image, attack) rows) records the SHA-256 of the image file it was computed from. On resume a row
whose image file now hashes differently is recomputed, and the run says so on stderr::

    2 image(s) changed since the last run: recomputed (ISIC_0000001, ISIC_0000007)

:class:`ContentHashes` hashes each file at most once per run (in threads: hashlib releases the GIL).
With a run folder it keeps ``RUN/.content-hashes.json``: for each file its size, mtime_ns, ctime_ns,
inode and SHA-256, so a rerun reads again only the files whose ``stat`` changed (any write changes
ctime, which no user can set back). A file modified less than :data:`RACY_SECONDS` before it was
hashed is not cached: a second write within the same timestamp tick could not be told apart.
A file that cannot be read hashes to :data:`UNREADABLE` (its row is an error; should the file come
back, its hash differs and the row is recomputed).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from dermadv.fileio import atomic_write_json
from dermadv.runs.provenance import file_sha256

CACHE_FILE = ".content-hashes.json"
UNREADABLE = "unreadable"
#: Files modified this recently (seconds) before hashing are not cached (see the module docstring).
RACY_SECONDS = 2.0
_CACHE_VERSION = 1


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class ContentHashes:
    """SHA-256 of files, each computed once; cached in ``run_dir/.content-hashes.json`` when given."""

    def __init__(self, run_dir: str | Path | None = None, workers: int = 4) -> None:
        self.run_dir = None if run_dir is None else Path(run_dir).expanduser()
        self.workers = max(1, int(workers))
        self._known: dict[str, str] = {}  # realpath -> sha256, this run
        self._cache: dict[str, list[Any]] = {}  # realpath -> [size, mtime_ns, ctime_ns, ino, sha256]
        self._dirty = False
        if self.cache_file is not None and self.cache_file.is_file():
            try:
                data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                data = {}  # a broken cache only costs a rehash
            if isinstance(data, dict) and data.get("version") == _CACHE_VERSION:
                files = data.get("files")
                if isinstance(files, dict):
                    self._cache = {k: v for k, v in files.items() if isinstance(v, list) and len(v) == 5}

    @property
    def cache_file(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CACHE_FILE

    def _hash(self, real: str) -> str:
        try:
            st = os.stat(real)
        except OSError:
            return UNREADABLE
        key = _stat_key(st)
        cached = self._cache.get(real)
        if cached is not None and cached[:4] == key:
            return str(cached[4])
        try:
            sha = file_sha256(real)
            after = os.stat(real)
        except OSError:
            return UNREADABLE
        if _stat_key(after) == key and time.time() - st.st_mtime > RACY_SECONDS:
            self._cache[real] = [*key, sha]
            self._dirty = True
        elif real in self._cache:
            del self._cache[real]
            self._dirty = True
        return sha

    def of_paths(self, paths: Iterable[str | Path]) -> dict[str, str]:
        """``{path as given: sha256 hex (or UNREADABLE)}``; each real file is read at most once per run."""
        given = [str(p) for p in paths]
        real = {p: os.path.realpath(Path(p).expanduser()) for p in given}
        todo = sorted({r for r in real.values() if r not in self._known})
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as pool:
                for r, sha in zip(todo, pool.map(self._hash, todo), strict=True):
                    self._known[r] = sha
        return {p: self._known[real[p]] for p in given}

    def of_samples(self, samples: Sequence[Any]) -> dict[str, str]:
        """``{image_id: sha256}`` of samples' image files (samples without a path: UNREADABLE)."""
        with_path = [s for s in samples if s.path is not None]
        by_path = self.of_paths([str(s.path) for s in with_path])
        out = {s.image_id: UNREADABLE for s in samples}
        out.update({s.image_id: by_path[str(s.path)] for s in with_path})
        return out

    def save(self) -> None:
        """Write the cache into the run folder (nothing without one, or when nothing new was hashed)."""
        if self.cache_file is None or not self._dirty:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.cache_file, {"version": _CACHE_VERSION, "files": self._cache})
        self._dirty = False


def sample_hashes(samples: Sequence[Any], run_dir: str | Path | None = None) -> dict[str, str]:
    """``{image_id: sha256}`` of the samples' image files, cached in ``run_dir`` (see the module)."""
    hashes = ContentHashes(run_dir)
    out = hashes.of_samples(samples)
    hashes.save()
    return out


def changed_message(image_ids: Sequence[str], shown: int = 5) -> str:
    """``"N image(s) changed since the last run: recomputed (a, b, ...)"``."""
    ids = list(image_ids)
    head = ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
    return f"{len(ids)} image(s) changed since the last run: recomputed ({head})"


def report_changed(image_ids: Sequence[str], stream: TextIO | None = None) -> None:
    """Print :func:`changed_message` on stderr (nothing when no image changed)."""
    if image_ids:
        print(changed_message(image_ids), file=stream if stream is not None else sys.stderr, flush=True)


def read_unit_record(path: Path, ids: Sequence[str], fingerprint: str | None = None) -> dict[str, Any] | None:
    """A work unit's stored file (JSON) if it holds results of exactly the images ``ids`` with one
    SHA-256 per image (``image_ids``, ``image_sha256``) and, when ``fingerprint`` is given, the same
    result-settings fingerprint; None when it is missing, unreadable, or holds something else.

    The one shape a resumable unit file has (sweep perturbations, robustness units): compare its
    hashes with today's using :func:`changed_indices` before reusing its rows."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(rec, dict) or rec.get("image_ids") != list(ids):
        return None
    if fingerprint is not None and rec.get("fingerprint") != fingerprint:
        return None
    stored = rec.get("image_sha256")
    if not isinstance(stored, list) or len(stored) != len(ids):
        return None
    return rec


def changed_indices(record: dict[str, Any], content: Sequence[str]) -> list[int]:
    """Positions of the images whose content hash differs from the one ``record`` was computed from."""
    return [k for k, (old, new) in enumerate(zip(record["image_sha256"], content, strict=True)) if old != new]
