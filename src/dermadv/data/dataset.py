"""The dataset table every command reads: one :class:`Sample` per labelled image.

:func:`load_dataset` accepts a dataset directory or its label CSV, detects the layout
(see :mod:`dermadv.data.layouts`) and returns a :class:`Dataset` whose ``samples`` are the usable
rows (known diagnosis, image found on disk, and -- with ``verify_images=True`` -- an image that decodes)
and whose ``problems`` list everything else, each naming the file concerned.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dermadv.errors import DataError
from dermadv.labels import DIAGNOSES

log = logging.getLogger("dermadv.data")

#: Kinds of :class:`Problem`, with a short description for reports.
PROBLEM_KINDS: dict[str, str] = {
    "missing_image": "label row whose image file is not on disk",
    "unreadable_image": "image file that does not decode (corrupt, truncated, wrong format, empty)",
    "unknown_label": "diagnosis that does not map to a known diagnosis code",
    "ambiguous_label": "one-hot row with zero or several 1s",
    "bad_value": "label value that cannot be parsed (non-numeric or non-0/1 one-hot cell): row left out",
    "bad_metadata": "age, sex or site outside ISIC's vocabulary: the value is ignored (unknown), row kept",
    "small_image": "image far below the model's input size (row kept)",
    "exif_orientation": "image with an EXIF orientation, which is not applied (row kept)",
    "duplicate_id": "image id listed more than once",
    "missing_id": "label row with an empty image id",
    "unlabelled_image": "image file on disk with no label row",
    "invalid_dataset": "dataset that cannot be read at all (reported by `dermadv data check`)",
}
#: Problem kinds whose row stays among the samples (a value ignored, or a warning); the others' rows
#: are left out.
KEPT_KINDS: frozenset[str] = frozenset({"bad_metadata", "small_image", "exif_orientation"})


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``diagnosis`` is a canonical code from :data:`dermadv.labels.DIAGNOSES`."""

    image_id: str
    path: Path | None
    diagnosis: str
    lesion_id: str | None = None
    age: float | None = None
    sex: str | None = None
    site: str | None = None

    def metadata(self) -> dict:
        """Clinical metadata as models that take it expect: {"age", "sex", "site"} (None if unknown)."""
        return {"age": self.age, "sex": self.sex, "site": self.site}


@dataclass(frozen=True)
class Problem:
    """Something wrong with a dataset: ``kind`` (see :data:`PROBLEM_KINDS`), the image and file concerned."""

    kind: str
    image_id: str | None
    path: Path | None
    message: str

    @property
    def keeps_row(self) -> bool:
        """Whether the row stays among the samples (:data:`KEPT_KINDS`: a value ignored, or a warning)."""
        return self.kind in KEPT_KINDS

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<dataset>"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = asdict(self)
        d["path"] = None if self.path is None else str(self.path)
        return d


@dataclass
class Dataset:
    """A loaded dataset: its usable ``samples`` and every ``problem`` found while loading."""

    root: Path
    layout: str
    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)
    csv_path: Path | None = None
    metadata_paths: list[Path] = field(default_factory=list)
    image_dirs: list[Path] = field(default_factory=list)
    verified: bool = False

    def __len__(self) -> int:
        return len(self.samples)

    def by_id(self) -> dict[str, Sample]:
        """Samples keyed by image id."""
        return {s.image_id: s for s in self.samples}

    def counts(self) -> dict[str, int]:
        """Number of samples per diagnosis, in canonical order, classes with no sample left out."""
        c = Counter(s.diagnosis for s in self.samples)
        return {d: c[d] for d in DIAGNOSES if c[d]}

    def n_lesions(self) -> int:
        """Number of distinct lesions (images without a lesion id count as their own lesion)."""
        return len({s.lesion_id if s.lesion_id else f"\0{s.image_id}" for s in self.samples})

    def problem_counts(self) -> dict[str, int]:
        """Number of problems per kind."""
        return dict(Counter(p.kind for p in self.problems))

    def describe(self) -> dict:
        """Provenance record: where the data came from, what was used and its hash."""
        from dermadv.data.splits import dataset_hash

        return {
            "root": str(self.root),
            "layout": self.layout,
            "csv": None if self.csv_path is None else str(self.csv_path),
            "n_samples": len(self.samples),
            "counts": self.counts(),
            "n_lesions": self.n_lesions(),
            "n_problems": len(self.problems),
            "hash": dataset_hash(self.samples),
        }

    def to_dict(self) -> dict:
        """JSON-ready summary with every problem (what ``dermadv data check --json`` prints)."""
        d = self.describe()
        d.update(
            {
                "verified_images": self.verified,
                "metadata_csvs": [str(p) for p in self.metadata_paths],
                "image_dirs": [str(p) for p in self.image_dirs],
                "with_metadata": {
                    "lesion_id": sum(s.lesion_id is not None for s in self.samples),
                    "age": sum(s.age is not None for s in self.samples),
                    "sex": sum(s.sex is not None for s in self.samples),
                    "site": sum(s.site is not None for s in self.samples),
                },
                "problem_counts": self.problem_counts(),
                "problems": [p.to_dict() for p in self.problems],
            }
        )
        return d


def load_dataset(path: str | Path, verify_images: bool = False, progress: bool = True) -> Dataset:
    """Load a dataset directory or label CSV; the layout is detected from the files.

    Accepted layouts: ISIC 2019 / 2018 / 2017 ground-truth CSVs, HAM10000 metadata CSV, ISIC archive
    metadata CSV (also the ISIC 2020 training CSV), and class-named folders (``root/mel/*.jpg``).
    Images are looked up in ``root/images``, folders named like the CSV (``ISIC_2019_Training_Input``),
    ``root`` itself and its other subfolders (two levels), with suffix .jpg, .jpeg or .png.

    Rows that cannot be used (unknown label, missing image, duplicate id...) are left out of
    ``samples`` and recorded in ``problems``. With ``verify_images=True`` every image is also decoded
    fully, one at a time (progress bar on stderr unless ``progress=False``), and images that fail are
    moved to ``problems``. Raises :class:`DataError` when the dataset cannot be read at all (no such
    path, no recognisable layout, missing required column, empty CSV).
    """
    from dermadv.data.layouts import read_layout

    ds = read_layout(Path(os.path.abspath(Path(path).expanduser())))
    if verify_images:
        verify_dataset_images(ds, progress=progress)
    return ds


def check_dataset(
    path: str | Path,
    verify_images: bool = True,
    progress: bool = True,
    decoders: Sequence[str] | None = None,
    min_side: int | None = None,
) -> Dataset:
    """Load a dataset and decode every image with each of ``decoders`` (default: all a model may use):
    ``problems`` then lists everything that is wrong (see :func:`verify_dataset_images`)."""
    ds = load_dataset(path, verify_images=False, progress=progress)
    if verify_images:
        verify_dataset_images(ds, progress=progress, decoders=decoders, min_side=min_side)
    return ds


def verify_dataset_images(
    ds: Dataset, progress: bool = True, decoders: Sequence[str] | None = None, min_side: int | None = None
) -> Dataset:
    """Decode every sample's image fully (one at a time) with each of ``decoders`` (default: every
    decoder a model may use, :data:`dermadv.data.images.DECODERS`); move failures from samples to
    problems. Images that decode but whose EXIF orientation is not 1, or whose shorter side is below
    ``min_side``, stay samples and get a warning problem (:data:`KEPT_KINDS`)."""
    from tqdm import tqdm

    from dermadv.data.images import DECODERS, check_image_bytes, read_image_file

    good: list[Sample] = []
    bad: list[Problem] = []
    for s in tqdm(ds.samples, desc="verifying images", unit="img", disable=not progress, leave=False):
        prefix = f"{s.path}: "
        try:
            if s.path is None:
                raise DataError(f"{s.image_id}: no image file for this sample")
            warnings = check_image_bytes(
                read_image_file(s.path), tuple(decoders or DECODERS), str(s.path), min_side
            )
        except DataError as exc:
            msg = str(exc)
            bad.append(
                Problem(
                    "unreadable_image",
                    s.image_id,
                    s.path,
                    msg[len(prefix) :] if msg.startswith(prefix) else msg,
                )
            )
        except MemoryError:  # pragma: no cover - absurdly large image
            bad.append(Problem("unreadable_image", s.image_id, s.path, "image too large to decode"))
        except Exception as exc:  # an unforeseen decoder error: report it, keep checking
            bad.append(Problem("unreadable_image", s.image_id, s.path, f"cannot decode image ({exc})"))
        else:
            good.append(s)
            for kind, message in warnings:
                bad.append(Problem(kind, s.image_id, s.path, message))
    ds.samples = good
    ds.problems.extend(bad)
    ds.verified = True
    return ds


def summarize_problems(problems: Iterable[Problem]) -> str:
    """One line such as '3 problems: 2 missing_image, 1 unknown_label'."""
    c = Counter(p.kind for p in problems)
    n = sum(c.values())
    if not n:
        return "no problems"
    return f"{n} problem{'s' if n != 1 else ''}: " + ", ".join(f"{v} {k}" for k, v in c.most_common())


def warn_problems(ds: Dataset) -> None:
    """Log a one-line warning when a dataset has problems, saying which rows were left out and which
    were kept with a value ignored (:data:`KEPT_KINDS`)."""
    if not ds.problems:
        return
    dropped = [p for p in ds.problems if not p.keeps_row]
    kept = [p for p in ds.problems if p.keeps_row]
    parts = []
    if dropped:
        parts.append(f"{summarize_problems(dropped)}; those rows are left out")
    if kept:
        parts.append(f"{summarize_problems(kept)}; those rows are kept (bad values treated as unknown)")
    log.warning(
        "%s: %s (run `dermadv data check %s` for the list)", ds.csv_path or ds.root, "; ".join(parts), ds.root
    )
