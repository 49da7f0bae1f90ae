"""The results store of a campaign: one SQLite row per (image, attack), committed as each finishes.

Layout of a RUN directory::

    RUN/results.sqlite   table ``results``: one row per (image_id, attack); PRIMARY KEY guards
                         against doing a job twice. WAL mode, one transaction per row.
    RUN/images/          ``<image_id>__original-<hash>.png`` and ``<image_id>__<attack>-<hash>.png``:
                         lossless PNG at the model's input size, written atomically before the row
                         naming it is committed. ``<hash>`` is the first 12 hex digits of the SHA-256
                         of the PNG's bytes, so a file's name fixes its content: a PNG never changes
                         once a row names it. (Runs written before had no ``-<hash>``.)
    RUN/run.json         what produced the results (model, data, settings, versions).

Each row records ``image_sha256``, the SHA-256 of the image file it was computed from
(:mod:`dermadv.runs.content`); a resumed campaign recomputes the rows of images whose file changed
since (:meth:`ResultsStore.changed_images`, :meth:`ResultsStore.delete_images`). Rows written before
rows carried the hash (schema 1) have NULL there and are kept as they are.

The store is the single source of truth for everything downstream (summaries, reports, the
reader study): read an image's path from its row (``original_path``, ``adversarial_path``),
relative to RUN so a run directory can be moved. Only one process writes a run (the run lock,
:mod:`dermadv.runs.lock`); should two writers still race for one row, the loser's new PNGs are
removed and the winner's row and PNGs stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_bytes
from dermadv.vocab import check_outcome

DB_NAME = "results.sqlite"
IMAGES_DIR = "images"
#: 2: rows record ``image_sha256`` (schema 1 stores gain the column, NULL in their old rows).
#: 3: rows record ``criterion``, ``search``, ``first_success_query``, ``first_threshold_query`` and
#: ``fittest`` (older stores gain the columns, NULL in their old rows: read as before).
SCHEMA_VERSION = 3

#: (column, SQL type); JSON columns hold lists/dicts.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("image_id", "TEXT NOT NULL"),
    ("attack", "TEXT NOT NULL"),
    ("direction", "TEXT"),
    ("outcome", "TEXT NOT NULL"),
    ("true_group", "TEXT"),
    ("diagnosis", "TEXT"),
    ("initial_probs", "TEXT"),
    ("final_probs", "TEXT"),
    ("initial_conf", "REAL"),
    ("final_conf", "REAL"),
    ("params", "TEXT"),
    ("queries", "INTEGER"),
    ("generations", "INTEGER"),
    ("seconds", "REAL"),
    ("error", "TEXT"),
    ("seed", "INTEGER"),
    ("original_path", "TEXT"),
    ("adversarial_path", "TEXT"),
    ("finished_at", "TEXT"),
    ("image_sha256", "TEXT"),
    ("criterion", "TEXT"),  # the success criterion that judged the row: "group" or "top1"
    ("search", "TEXT"),  # a black-box attack's search strategy: "de", "grid", "random", ...
    ("first_success_query", "INTEGER"),  # query index of the first candidate meeting the criterion
    ("first_threshold_query", "INTEGER"),  # ... of the first with P(target group) > threshold
    ("fittest", "TEXT"),  # JSON: the fittest member when the result is another (successful) one
    # how visible the change is (dermadv.perceptual): mean / 95th-percentile CIEDE2000 and SSIM between
    # the original and the adversarial image; NULL when no adversarial image was saved (and in older runs)
    ("delta_e_mean", "REAL"),
    ("delta_e_p95", "REAL"),
    ("ssim", "REAL"),
)
JSON_COLUMNS = frozenset({"initial_probs", "final_probs", "params", "fittest"})
COLUMN_NAMES: tuple[str, ...] = tuple(c for c, _ in COLUMNS)

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """A file-name-safe version of an image id or attack name (a short hash keeps odd ids unique)."""
    safe = _SAFE.sub("_", text)
    if safe != text or not safe:
        safe = f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return safe


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default, sort_keys=True)


def encode_png(image: np.ndarray, what: str = "image") -> bytes:
    """A uint8 H x W x 3 RGB array as lossless PNG bytes (ValueError naming ``what`` otherwise)."""
    import io

    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected a uint8 H x W x 3 image, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def content_relpath(stem: str, data: bytes) -> str:
    """``images/<stem>-<first 12 hex of SHA-256(data)>.png``: a name that fixes the file's content."""
    return f"{IMAGES_DIR}/{stem}-{hashlib.sha256(data).hexdigest()[:12]}.png"


def _get(result: Any, key: str, default: Any = None) -> Any:
    if isinstance(result, Mapping):
        return result.get(key, default)
    return getattr(result, key, default)


class ResultsStore:
    """Resumable, append-only store of attack results in ``run_dir``.

    ``add`` is atomic and idempotent: a job already in the store is left untouched, so a rerun
    after a crash (or two writers racing) never duplicates or changes a result.
    """

    def __init__(self, run_dir: str | Path, create: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.db_path = self.run_dir / DB_NAME
        self.images_dir = self.run_dir / IMAGES_DIR
        if not create and not self.db_path.exists():
            raise DataError(f"{self.run_dir}: not a campaign run directory (no {DB_NAME} in it)")
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise DataError(f"{self.run_dir}: exists and is not a directory")
        if create:
            self.images_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.db_path}: cannot open results database ({exc})") from exc

    # ----- schema -------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        cols = ",\n  ".join(f"{name} {typ}" for name, typ in COLUMNS)
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS results (\n  {cols},\n  PRIMARY KEY (image_id, attack))"
        )
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DataError(
                f"{self.db_path}: written by a newer dermadv (schema {version} > {SCHEMA_VERSION}); upgrade"
            )
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(results)")}
        for name, typ in COLUMNS:  # an older store gains the newer columns (NULL in its rows)
            if name not in have:
                try:
                    self._conn.execute(f"ALTER TABLE results ADD COLUMN {name} {typ}")
                except sqlite3.OperationalError:  # another connection added it just now
                    if not any(r[1] == name for r in self._conn.execute("PRAGMA table_info(results)")):
                        raise
        if version < SCHEMA_VERSION:
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- paths --------------------------------------------------------------------------------
    def original_relpath(self, image_id: str, png: bytes) -> str:
        """Path, relative to the run directory, of an image's unperturbed PNG with bytes ``png``."""
        return content_relpath(f"{safe_name(image_id)}__original", png)

    def adversarial_relpath(self, image_id: str, attack: str, png: bytes) -> str:
        """Path, relative to the run directory, of an image's PNG (bytes ``png``) after ``attack``."""
        return content_relpath(f"{safe_name(image_id)}__{safe_name(attack)}", png)

    def path(self, relpath: str | None) -> Path | None:
        """Absolute path of a row's ``original_path`` / ``adversarial_path``."""
        return None if relpath is None else self.run_dir / relpath

    # ----- writing ------------------------------------------------------------------------------
    def has(self, image_id: str, attack: str) -> bool:
        """Whether the job (image_id, attack) is already stored."""
        cur = self._conn.execute("SELECT 1 FROM results WHERE image_id=? AND attack=?", (image_id, attack))
        return cur.fetchone() is not None

    def add(
        self,
        result: Any,
        *,
        seed: int | None = None,
        diagnosis: str | None = None,
        image_sha256: str | None = None,
    ) -> bool:
        """Store one finished job (an AttackResult, or a mapping with its fields).

        ``image_sha256`` is the SHA-256 of the image file the job read (see :meth:`changed_images`).

        Images are written (atomically, under content-unique names) first, then the row naming them
        is committed in one transaction. Returns False, changing nothing, when the (image_id, attack)
        row already exists -- also when another writer commits it between the check and the insert:
        then the PNGs this call wrote and no row names are removed again.
        """
        image_id, attack = str(_get(result, "image_id")), str(_get(result, "attack"))
        try:
            outcome = check_outcome(_get(result, "outcome"))
        except ValueError as exc:
            raise ValueError(f"result for {image_id}/{attack}: {exc}") from None
        if self.has(image_id, attack):
            return False
        written: list[str] = []  # PNGs this call created (not those already there)
        original_path = adversarial_path = None
        original = _get(result, "original")
        if original is not None:  # identical for every attack of the image: one file
            png = encode_png(original, f"original image of {image_id}")
            original_path = self._put(self.original_relpath(image_id, png), png, written)
        adversarial = _get(result, "adversarial")
        if adversarial is not None:
            png = encode_png(adversarial, f"adversarial image of {image_id}/{attack}")
            adversarial_path = self._put(self.adversarial_relpath(image_id, attack, png), png, written)
        row = {
            "image_id": image_id,
            "attack": attack,
            "direction": _get(result, "direction"),
            "outcome": outcome,
            "true_group": _get(result, "true_group"),
            "diagnosis": diagnosis if diagnosis is not None else _get(result, "diagnosis"),
            "initial_probs": _dumps(_get(result, "initial_probs")),
            "final_probs": _dumps(_get(result, "final_probs")),
            "initial_conf": _float_or_none(_get(result, "initial_conf")),
            "final_conf": _float_or_none(_get(result, "final_conf")),
            "params": _dumps(_get(result, "params") or {}),
            "queries": int(_get(result, "queries") or 0),
            "generations": int(_get(result, "generations") or 0),
            "seconds": float(_get(result, "seconds") or 0.0),
            "error": _get(result, "error"),
            "seed": seed if seed is not None else _get(result, "seed"),
            "original_path": original_path,
            "adversarial_path": adversarial_path,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "image_sha256": image_sha256 if image_sha256 is not None else _get(result, "image_sha256"),
            "criterion": _get(result, "criterion"),
            "search": _get(result, "search"),
            "first_success_query": _int_or_none(_get(result, "first_success_query")),
            "first_threshold_query": _int_or_none(_get(result, "first_threshold_query")),
            "fittest": _dumps(_get(result, "fittest")),
            **_perceptual(original, adversarial),
        }
        placeholders = ", ".join("?" for _ in COLUMN_NAMES)
        cur = self._conn.execute(
            f"INSERT OR IGNORE INTO results ({', '.join(COLUMN_NAMES)}) VALUES ({placeholders})",
            [row[c] for c in COLUMN_NAMES],
        )
        if cur.rowcount == 1:
            return True
        for relpath in written:  # lost the race: the winner's row names its own PNGs
            if not self._referenced(relpath):
                (self.run_dir / relpath).unlink(missing_ok=True)
        return False

    def _put(self, relpath: str, png: bytes, written: list[str]) -> str:
        """Write ``png`` at ``relpath`` unless it is there (its name fixes its content)."""
        target = self.run_dir / relpath
        if not target.exists():
            atomic_write_bytes(target, png)
            written.append(relpath)
        return relpath

    def _referenced(self, relpath: str) -> bool:
        cur = self._conn.execute(
            "SELECT 1 FROM results WHERE original_path=? OR adversarial_path=? LIMIT 1", (relpath, relpath)
        )
        return cur.fetchone() is not None

    def changed_images(self, current: Mapping[str, str]) -> tuple[list[str], int]:
        """Images of ``current`` (image_id -> SHA-256 of its file now) with a row computed from other
        content, sorted; and how many rows of those images record no hash (kept: written before rows
        carried one)."""
        changed: set[str] = set()
        unknown = 0
        for image_id, sha in self._conn.execute("SELECT image_id, image_sha256 FROM results"):
            if image_id not in current:
                continue
            if sha is None:
                unknown += 1
            elif sha != current[image_id]:
                changed.add(image_id)
        return sorted(changed), unknown

    def delete_images(self, image_ids: Iterable[str]) -> int:
        """Delete every row of these images (to compute them again) and the PNGs no row names any
        more; returns how many rows."""
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            return 0
        paths: set[str] = set()
        deleted = 0
        for start in range(0, len(ids), 500):  # SQLite limits the number of parameters
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for original, adversarial in self._conn.execute(
                f"SELECT original_path, adversarial_path FROM results WHERE image_id IN ({marks})", chunk
            ):
                paths.update(p for p in (original, adversarial) if p)
            deleted += self._conn.execute(f"DELETE FROM results WHERE image_id IN ({marks})", chunk).rowcount
        for relpath in sorted(paths):
            if not self._referenced(relpath):
                (self.run_dir / relpath).unlink(missing_ok=True)
        return deleted

    def delete(self, outcome: str) -> int:
        """Delete every row with ``outcome`` (e.g. "error" to retry them); returns how many."""
        cur = self._conn.execute("DELETE FROM results WHERE outcome=?", (outcome,))
        return cur.rowcount

    # ----- reading ------------------------------------------------------------------------------
    def done_keys(self) -> set[tuple[str, str]]:
        """The (image_id, attack) jobs already stored."""
        return {(i, a) for i, a in self._conn.execute("SELECT image_id, attack FROM results")}

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def rows(self, attack: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
        """Stored rows as dicts (JSON columns decoded), ordered by image_id then attack."""
        where, args = [], []
        if attack is not None:
            where.append("attack=?")
            args.append(attack)
        if outcome is not None:
            check_outcome(outcome)
            where.append("outcome=?")
            args.append(outcome)
        sql = f"SELECT {', '.join(COLUMN_NAMES)} FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY image_id, attack"
        out = []
        for values in self._conn.execute(sql, args):
            row = dict(zip(COLUMN_NAMES, values, strict=True))
            for col in JSON_COLUMNS:
                if row[col] is not None:
                    row[col] = json.loads(row[col])
            out.append(row)
        return out

    def attacks(self) -> list[str]:
        """Attack names present in the store, sorted."""
        return [a for (a,) in self._conn.execute("SELECT DISTINCT attack FROM results ORDER BY attack")]


def _perceptual(original: Any, adversarial: Any) -> dict[str, float | None]:
    """The row's perceptual-distance columns (None when either image is missing or sizes differ)."""
    from dermadv.perceptual import PERCEPTUAL_KEYS, perceptual_distance

    if original is None or adversarial is None or np.shape(original) != np.shape(adversarial):
        return dict.fromkeys(PERCEPTUAL_KEYS)
    return dict(perceptual_distance(original, adversarial))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
