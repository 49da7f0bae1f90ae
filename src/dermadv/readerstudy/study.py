"""A reader study on disk: opaque images, a hidden manifest (ground truth + provenance), settings.

Layout of a STUDY directory::

    STUDY/study.json      settings (choices, confidence scale, change policy) and how it was built
    STUDY/manifest.csv    one row per image: opaque key, ground truth, condition, attack, provenance.
                          Never served to readers.
    STUDY/images/<key>.png  the images readers see, re-encoded as PNG without any metadata; ``key`` is
                          random (``secrets.token_hex``) and says nothing about the image.
    STUDY/answers.sqlite  readers and answers (created by ``serve`` / ``readers add``)
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_text

STUDY_FILE = "study.json"
MANIFEST_FILE = "manifest.csv"
IMAGES_DIR = "images"
FORMAT_VERSION = 1

#: Ground-truth groups of the study's question.
MELANOMA, NAEVUS = "melanoma", "naevus"
GROUPS = (MELANOMA, NAEVUS)
UNMODIFIED, ADVERSARIAL = "unmodified", "adversarial"
CONDITIONS = (UNMODIFIED, ADVERSARIAL)

#: The two choices readers are offered: value stored, label shown, keyboard key.
DEFAULT_CHOICES: tuple[dict[str, str], ...] = (
    {"value": MELANOMA, "label": "Melanoma", "key": "m"},
    {"value": NAEVUS, "label": "Benign naevus", "key": "b"},
)
CONFIDENCE_MODES = ("required", "optional", "off")

MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_key",
    "file",
    "ground_truth",
    "condition",
    "attack",
    "source_image_id",
    "diagnosis",
    "direction",
    "initial_conf",
    "final_conf",
    "params",
    "source",
)

KEY_RE = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class StudyImage:
    """One image of the study as the server and the analysis know it (readers only see ``key``)."""

    key: str
    file: str
    ground_truth: str
    condition: str
    attack: str = ""
    source_image_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """A loaded STUDY directory."""

    root: Path
    settings: dict[str, Any]
    images: list[StudyImage]
    _by_key: dict[str, StudyImage] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def study_id(self) -> str:
        """Random id written at build time; the answers database is bound to it."""
        return str(self.settings["study_id"])

    @property
    def allow_change(self) -> bool:
        """Whether readers may go back and change an answer (every change is logged)."""
        return bool(self.settings.get("allow_change", False))

    @property
    def confidence(self) -> str:
        """'required', 'optional' or 'off': the 1-5 confidence rating."""
        return str(self.settings.get("confidence", "required"))

    @property
    def choices(self) -> list[dict[str, str]]:
        """The two answers offered (value, label, key)."""
        return list(self.settings.get("choices", DEFAULT_CHOICES))

    @property
    def title(self) -> str:
        """Title shown to readers."""
        return str(self.settings.get("title", "Dermoscopy reader study"))

    def by_key(self) -> dict[str, StudyImage]:
        """Images indexed by their opaque key."""
        if self._by_key is None or len(self._by_key) != len(self.images):
            self._by_key = {im.key: im for im in self.images}
        return self._by_key

    def image_path(self, key: str) -> Path:
        """File of an image, looked up from the manifest (never built from a URL)."""
        return self.root / IMAGES_DIR / self.by_key()[key].file

    def keys(self) -> list[str]:
        """Image keys in manifest order."""
        return [im.key for im in self.images]


def load_study(path: str | Path) -> Study:
    """Read STUDY/study.json and STUDY/manifest.csv, checking every row and image file."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: study directory not found")
    sfile, mfile = root / STUDY_FILE, root / MANIFEST_FILE
    for f in (sfile, mfile):
        if not f.is_file():
            raise DataError(
                f"{root}: not a reader study ({f.name} missing); build one with 'dermadv reader-study build'"
            )
    try:
        settings = json.loads(sfile.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{sfile}: invalid JSON ({exc})") from exc
    if not isinstance(settings, dict) or "study_id" not in settings:
        raise DataError(f"{sfile}: not a dermadv reader study settings file (no study_id)")
    if settings.get("confidence", "required") not in CONFIDENCE_MODES:
        raise DataError(f"{sfile}: confidence must be one of {CONFIDENCE_MODES}")
    images: list[StudyImage] = []
    seen: set[str] = set()
    with mfile.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"image_key", "file", "ground_truth", "condition"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{mfile}: missing column(s) {sorted(missing)}")
        for lineno, row in enumerate(reader, start=2):
            key = row["image_key"]
            where = f"{mfile} line {lineno}"
            if not KEY_RE.match(key):
                raise DataError(f"{where}: image_key {key!r} is not 16 lowercase hex characters")
            if key in seen:
                raise DataError(f"{where}: duplicate image_key {key}")
            seen.add(key)
            if row["ground_truth"] not in GROUPS:
                raise DataError(f"{where}: ground_truth {row['ground_truth']!r} not in {GROUPS}")
            if row["condition"] not in CONDITIONS:
                raise DataError(f"{where}: condition {row['condition']!r} not in {CONDITIONS}")
            if Path(row["file"]).name != row["file"] or not (root / IMAGES_DIR / row["file"]).is_file():
                raise DataError(f"{where}: image file {IMAGES_DIR}/{row['file']} not found in the study")
            known = {"image_key", "file", "ground_truth", "condition", "attack", "source_image_id"}
            images.append(
                StudyImage(
                    key=key,
                    file=row["file"],
                    ground_truth=row["ground_truth"],
                    condition=row["condition"],
                    attack=row.get("attack") or "",
                    source_image_id=row.get("source_image_id") or "",
                    extra={k: v for k, v in row.items() if k not in known and k is not None},
                )
            )
    if not images:
        raise DataError(f"{mfile}: the study has no images")
    return Study(root=root, settings=settings, images=images)


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically write the manifest CSV (extra keys beyond MANIFEST_COLUMNS are appended)."""
    cols = list(MANIFEST_COLUMNS)
    for row in rows:
        cols += [k for k in row if k not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in cols})
    atomic_write_text(path, buf.getvalue())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)
