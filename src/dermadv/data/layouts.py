"""Readers for the published dataset layouts, detected from CSV headers or folder names.

===============  ==========================================================================
layout           files
===============  ==========================================================================
``isic2019``     ``ISIC_2019_Training_GroundTruth.csv``: image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC[, UNK]
                 one-hot; ``ISIC_2019_Training_Metadata.csv`` beside it is merged (age, sex, site, lesion)
``isic2018``     ``ISIC2018_Task3_Training_GroundTruth.csv``: image, MEL, NV, BCC, AKIEC, BKL, DF, VASC
``isic2017``     ``ISIC-2017_Training_Part3_GroundTruth.csv``: image_id, melanoma, seborrheic_keratosis
                 (neither = naevus)
``ham10000``     ``HAM10000_metadata.csv``: lesion_id, image_id, dx, dx_type, age, sex, localization
``isic_archive`` ISIC archive export: isic_id, diagnosis or diagnosis_1..5 (most specific level that maps
                 wins), lesion_id, age_approx, sex, anatom_site_general; also the ISIC 2020 training CSV
                 (image_name, diagnosis, ...)
``folders``      class-named folders: ``root/mel/*.jpg``, ``root/nevus/*.png``...
===============  ==========================================================================

For the CSV layouts, other CSVs in the same folder that key images by ``image``/``image_id``/``isic_id``
and carry age/sex/site/lesion columns are merged as metadata (values already in the label CSV win).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dermadv.data.dataset import Dataset, Problem, Sample
from dermadv.errors import DataError
from dermadv.labels import ISIC2018_DIAGNOSES, ISIC2019_DIAGNOSES, canonical_diagnosis

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
_SUFFIX_RANK = {s: i for i, s in enumerate(IMAGE_SUFFIXES)}


_ID_COLUMNS = ("image", "image_id", "isic_id", "image_name")
_AGE_COLUMNS = ("age_approx", "age")
_SITE_COLUMNS = ("anatom_site_general", "anatom_site_general_challenge", "localization")
_ARCHIVE_DIAGNOSIS_COLUMNS = (
    "diagnosis_5",
    "diagnosis_4",
    "diagnosis_3",
    "diagnosis_2",
    "diagnosis_1",
    "diagnosis",
)


@dataclass(frozen=True)
class CsvLayout:
    """How to recognise a label CSV: ``signature`` columns identify it, ``required`` must all be there
    (each entry a tuple of alternatives)."""

    name: str
    title: str
    signature: frozenset[str]
    required: tuple[tuple[str, ...], ...]

    def missing(self, header: set[str]) -> list[str]:
        """Required columns (``a|b`` for alternatives) absent from ``header``."""
        return ["|".join(alts) for alts in self.required if not any(a in header for a in alts)]


CSV_LAYOUTS: tuple[CsvLayout, ...] = (
    CsvLayout(
        "isic2019",
        "ISIC 2019 ground truth",
        frozenset(ISIC2019_DIAGNOSES),
        (("image",),) + tuple((c,) for c in ISIC2019_DIAGNOSES if c != "UNK"),
    ),
    CsvLayout(
        "isic2018",
        "ISIC 2018 Task 3 ground truth",
        frozenset(ISIC2018_DIAGNOSES),
        (("image",),) + tuple((c,) for c in ISIC2018_DIAGNOSES),
    ),
    CsvLayout(
        "isic2017",
        "ISIC 2017 Part 3 ground truth",
        frozenset({"melanoma", "seborrheic_keratosis"}),
        (("image_id",), ("melanoma",), ("seborrheic_keratosis",)),
    ),
    CsvLayout(
        "ham10000",
        "HAM10000 metadata",
        frozenset({"dx", "dx_type", "localization"}),
        (("image_id",), ("dx",)),
    ),
    CsvLayout(
        "isic_archive",
        "ISIC archive metadata",
        frozenset(
            {
                "isic_id",
                "image_name",
                "diagnosis",
                "diagnosis_1",
                "diagnosis_2",
                "diagnosis_3",
                "benign_malignant",
                "target",
            }
        ),
        (("isic_id", "image_name"), _ARCHIVE_DIAGNOSIS_COLUMNS[::-1]),
    ),
)

ACCEPTED_LAYOUTS = (
    "ISIC 2019 or 2018 ground-truth CSV (image + one-hot MEL, NV, ... columns), ISIC 2017 ground-truth CSV "
    "(image_id, melanoma, seborrheic_keratosis), HAM10000 metadata CSV (image_id, dx, ...), ISIC archive "
    "metadata CSV (isic_id, diagnosis or diagnosis_1..diagnosis_3, ...), or class-named folders "
    "(root/mel/*.jpg, root/nv/*.jpg)"
)


# ----------------------------------------------------------------------------------------------- CSV


@dataclass
class CsvTable:
    path: Path
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line number, row)


def read_csv(path: Path) -> CsvTable:
    """Read a CSV (UTF-8, optional BOM) into a header and (line number, row dict) pairs."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror})") from exc
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            rows.append(
                (
                    reader.line_num,
                    {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)},
                )
            )
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV at line {reader.line_num} ({exc})") from exc
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        raise DataError(
            f"{path}: the header {header[0]!r} looks semicolon- or tab-separated; "
            "dermadv reads comma-separated files"
        )
    return CsvTable(path, header, rows)


def read_header(path: Path) -> list[str]:
    """The header of a CSV (empty list for an empty or unreadable file)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def detect_csv_layout(path: Path, header: list[str], strict: bool) -> CsvLayout | None:
    """The layout whose columns ``header`` has. A header that looks like a layout (>= 2 signature
    columns) but lacks required columns raises DataError naming what it has and needs; a header that
    looks like nothing returns None, or raises when ``strict``."""
    cols = set(header)
    scored = sorted(
        ((len(lay.signature & cols), i, lay) for i, lay in enumerate(CSV_LAYOUTS)),
        key=lambda t: (-t[0], t[1]),
    )
    for score, _, lay in scored:
        if score >= 1 and not lay.missing(cols):
            return lay
    best_score, _, best = scored[0]
    if best_score >= 2:
        need = ", ".join("|".join(a) for a in best.required)
        raise DataError(
            f"{path}: looks like a {best.title} CSV but lacks column(s) {', '.join(best.missing(cols))}; "
            f"it has: {', '.join(header)}; a {best.title} CSV needs: {need}"
        )
    if strict:
        raise DataError(
            f"{path}: not a recognised label CSV (columns: {', '.join(header) or 'none'}). "
            f"Accepted layouts: {ACCEPTED_LAYOUTS}"
        )
    return None


# -------------------------------------------------------------------------------------------- images


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _list_images(d: Path) -> list[Path]:
    """Image files directly in ``d`` (sorted; symlinks followed)."""
    try:
        entries = list(os.scandir(d))
    except OSError:
        return []
    names = []
    for e in entries:
        if _is_image_name(e.name):
            try:
                if e.is_file():
                    names.append(e.name)
            except OSError:
                continue
    names.sort()
    return [d / n for n in names]


def _is(entry: os.DirEntry[str], kind: str) -> bool:
    """``entry.is_dir()`` / ``is_file()``, False for an entry that cannot be stat'ed (a symlink loop)."""
    try:
        return entry.is_dir() if kind == "dir" else entry.is_file()
    except OSError:
        return False


def _subdirs(d: Path) -> list[Path]:
    try:
        entries = list(os.scandir(d))
    except OSError:
        return []
    return sorted(Path(e.path) for e in entries if not e.name.startswith((".", "__")) and _is(e, "dir"))


def strip_image_suffix(image_id: str) -> str:
    """``ISIC_0000000.jpg`` -> ``ISIC_0000000`` (ids in some CSVs carry the file suffix)."""
    image_id = image_id.replace("\\", "/").rsplit("/", 1)[-1]
    stem, ext = os.path.splitext(image_id)
    return stem if ext.lower() in IMAGE_SUFFIXES else image_id


class ImageIndex:
    """Image files by id (file stem) over a priority-ordered list of folders; first folder wins,
    within a folder .jpg over .jpeg over .png."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs: list[Path] = []
        self.files: dict[Path, list[Path]] = {}
        self.by_id: dict[str, Path] = {}
        for d in dirs:
            files = _list_images(d)
            if not files:
                continue
            self.dirs.append(d)
            self.files[d] = files
            local: dict[str, tuple[int, Path]] = {}
            for f in files:
                stem, ext = os.path.splitext(f.name)
                rank = _SUFFIX_RANK[ext.lower()]
                if stem not in local or rank < local[stem][0]:
                    local[stem] = (rank, f)
            for k, (_, v) in local.items():
                self.by_id.setdefault(k, v)

    def find(self, image_id: str) -> Path | None:
        return self.by_id.get(image_id)

    def unlabelled(self, labelled_ids: set[str]) -> Iterator[Path]:
        """Image files in folders holding at least one labelled image, whose stem has no label row."""
        for files in self.files.values():
            if not any(f.stem in labelled_ids for f in files):
                continue
            for f in files:
                if f.stem not in labelled_ids:
                    yield f


def candidate_image_dirs(root: Path, csv_path: Path | None) -> list[Path]:
    """Where images may be, most likely first: root/images, folders named like the CSV, root, then
    root's other subfolders and their subfolders."""
    out: list[Path] = [root / "images"]
    if csv_path is not None:
        stem = csv_path.stem
        for a, b in (
            ("GroundTruth", "Input"),
            ("GroundTruth", "Data"),
            ("_GroundTruth", ""),
            ("_metadata", "_images"),
            ("metadata", "images"),
        ):
            if a in stem:
                out.append(root / stem.replace(a, b))
        out.append(root / stem)
    out.append(root)
    for sub in _subdirs(root):
        out.append(sub)
        out.extend(_subdirs(sub))
    seen: set[Path] = set()
    uniq = []
    for d in out:
        if d not in seen and d.is_dir():
            seen.add(d)
            uniq.append(d)
    return uniq


# --------------------------------------------------------------------------------------------- rows


@dataclass
class _Row:
    line: int
    image_id: str
    diagnosis: str | None
    lesion_id: str | None = None
    age: float | None = None
    sex: str | None = None
    site: str | None = None


def _opt(row: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        v = row.get(n)
        if v:
            return v
    return None


#: ISIC's metadata vocabulary, hard-coded from the ISIC archive's documented values (the ``isic-metadata``
#: package, https://github.com/ImageMarkup/isic-metadata, fields ``sex`` and ``anatom_site_general``; the
#: ISIC 2019/2020 challenge metadata CSVs use the same strings), plus HAM10000's ``localization`` values
#: (Tschandl et al. 2018, HAM10000_metadata.csv). Compared lower case, ``_`` read as a space.
ISIC_SEXES: frozenset[str] = frozenset({"male", "female"})
ISIC_SITES: frozenset[str] = frozenset(
    {
        # ISIC archive / ISIC 2019-2020 anatom_site_general(_challenge)
        "head/neck",
        "upper extremity",
        "lower extremity",
        "anterior torso",
        "posterior torso",
        "lateral torso",
        "torso",
        "palms/soles",
        "oral/genital",
        # HAM10000 localization
        "abdomen",
        "acral",
        "back",
        "chest",
        "ear",
        "face",
        "foot",
        "genital",
        "hand",
        "neck",
        "scalp",
        "trunk",
    }
)
#: ISIC's age_approx runs 0..85 in steps of 5 (85 meaning 85 or older); exact ages of other datasets are
#: accepted too, anything outside this human range is not an age.
AGE_RANGE: tuple[float, float] = (0.0, 120.0)
_UNKNOWN = ("", "unknown", "nan", "na", "none", "null")


def _bad_metadata(problems: list[Problem], image_id: str, path: Path, where: str, what: str) -> None:
    problems.append(
        Problem("bad_metadata", image_id or None, path, f"{where}: {what}; ignored (treated as unknown)")
    )


def _parse_age(
    value: str | None, where: str, problems: list[Problem], image_id: str, path: Path
) -> float | None:
    if value is None or value.lower() in _UNKNOWN:
        return None
    try:
        age = float(value)
    except ValueError:
        _bad_metadata(problems, image_id, path, where, f"age {value!r} is not a number")
        return None
    if age != age:  # NaN
        return None
    if not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        _bad_metadata(
            problems,
            image_id,
            path,
            where,
            f"age {value!r} is outside {AGE_RANGE[0]:g}..{AGE_RANGE[1]:g} years",
        )
        return None
    return age


def _parse_word(
    value: str | None,
    field: str,
    vocabulary: frozenset[str],
    where: str,
    problems: list[Problem],
    image_id: str,
    path: Path,
) -> str | None:
    if value is None:
        return None
    if value.strip().lower() in _UNKNOWN:
        # an explicit "unknown" stays as given (models read it as unknown); "NA", "none"... are missing
        return value if value.strip().lower() == "unknown" else None
    key = " ".join(value.strip().lower().replace("_", " ").split())
    if key not in vocabulary:
        _bad_metadata(
            problems,
            image_id,
            path,
            where,
            f"{field} {value!r} is not in ISIC's vocabulary ({', '.join(sorted(vocabulary))})",
        )
        return None
    return value


def _meta_fields(row: dict[str, str], where: str, problems: list[Problem], image_id: str, path: Path) -> dict:
    return {
        "lesion_id": _opt(row, ("lesion_id",)),
        "age": _parse_age(_opt(row, _AGE_COLUMNS), where, problems, image_id, path),
        "sex": _parse_word(_opt(row, ("sex",)), "sex", ISIC_SEXES, where, problems, image_id, path),
        "site": _parse_word(_opt(row, _SITE_COLUMNS), "site", ISIC_SITES, where, problems, image_id, path),
    }


def _onehot_parser(columns: dict[str, str]) -> Callable:
    def parse(table: CsvTable, id_col: str, problems: list[Problem]) -> Iterator[_Row]:
        present = [c for c in columns if c in table.header]
        for line, row in table.rows:
            image_id = strip_image_suffix(row.get(id_col, ""))
            where = f"line {line} ({image_id or 'no id'})"
            positives, bad = [], []
            for c in present:
                v = row.get(c, "")
                try:
                    x = float(v)
                except ValueError:
                    bad.append(f"{c}={v!r}")
                    continue
                if x == 1.0:
                    positives.append(c)
                elif x != 0.0:
                    bad.append(f"{c}={v!r}")
            diagnosis: str | None = None
            if bad:
                problems.append(
                    Problem(
                        "bad_value",
                        image_id or None,
                        table.path,
                        f"{where}: one-hot cells must be 0 or 1, got {', '.join(bad)}",
                    )
                )
            elif len(positives) != 1:
                what = (
                    "no column set to 1"
                    if not positives
                    else f"several columns set to 1 ({', '.join(positives)})"
                )
                problems.append(
                    Problem(
                        "ambiguous_label",
                        image_id or None,
                        table.path,
                        f"{where}: ambiguous one-hot label: {what}",
                    )
                )
            else:
                diagnosis = columns[positives[0]]
            yield _Row(line, image_id, diagnosis, **_meta_fields(row, where, problems, image_id, table.path))

    return parse


def _parse_isic2017(table: CsvTable, id_col: str, problems: list[Problem]) -> Iterator[_Row]:
    for line, row in table.rows:
        image_id = strip_image_suffix(row.get(id_col, ""))
        where = f"line {line} ({image_id or 'no id'})"
        try:
            mel, sk = float(row.get("melanoma", "")), float(row.get("seborrheic_keratosis", ""))
        except ValueError:
            problems.append(
                Problem(
                    "bad_value",
                    image_id or None,
                    table.path,
                    f"{where}: melanoma/seborrheic_keratosis must be 0 or 1, got "
                    f"{row.get('melanoma')!r}/{row.get('seborrheic_keratosis')!r}",
                )
            )
            yield _Row(line, image_id, None)
            continue
        diagnosis = None
        if mel not in (0.0, 1.0) or sk not in (0.0, 1.0):
            problems.append(
                Problem(
                    "bad_value",
                    image_id or None,
                    table.path,
                    f"{where}: melanoma/seborrheic_keratosis must be 0 or 1, got {mel}/{sk}",
                )
            )
        elif mel == 1.0 and sk == 1.0:
            problems.append(
                Problem(
                    "ambiguous_label",
                    image_id or None,
                    table.path,
                    f"{where}: ambiguous label: both melanoma and seborrheic_keratosis are 1",
                )
            )
        else:
            diagnosis = "mel" if mel == 1.0 else "bkl" if sk == 1.0 else "nv"
        yield _Row(line, image_id, diagnosis, **_meta_fields(row, where, problems, image_id, table.path))


def _label_parser(label_columns: tuple[str, ...]) -> Callable:
    """Rows whose diagnosis is a text label; with several columns the first that maps wins."""

    def parse(table: CsvTable, id_col: str, problems: list[Problem]) -> Iterator[_Row]:
        cols = [c for c in label_columns if c in table.header]
        for line, row in table.rows:
            image_id = strip_image_suffix(row.get(id_col, ""))
            where = f"line {line} ({image_id or 'no id'})"
            diagnosis = None
            values = [row.get(c, "") for c in cols]
            for v in values:
                if v:
                    diagnosis = canonical_diagnosis(v)
                    if diagnosis:
                        break
            if diagnosis is None:
                given = " / ".join(f"{c}={v!r}" for c, v in zip(cols, values, strict=True) if v) or "empty"
                problems.append(
                    Problem(
                        "unknown_label", image_id or None, table.path, f"{where}: unknown diagnosis ({given})"
                    )
                )
            yield _Row(line, image_id, diagnosis, **_meta_fields(row, where, problems, image_id, table.path))

    return parse


_PARSERS: dict[str, Callable] = {
    "isic2019": _onehot_parser(ISIC2019_DIAGNOSES),
    "isic2018": _onehot_parser(ISIC2018_DIAGNOSES),
    "isic2017": _parse_isic2017,
    "ham10000": _label_parser(("dx",)),
    "isic_archive": _label_parser(_ARCHIVE_DIAGNOSIS_COLUMNS),
}


def _id_column(header: list[str]) -> str:
    return next(c for c in _ID_COLUMNS if c in header)


def _aux_metadata(
    csv_path: Path, wanted: set[str]
) -> tuple[dict[str, tuple[Path, int, dict[str, str]]], list[Path]]:
    """(file, line, row) by image id from other CSVs beside ``csv_path`` (ISIC_2019_Training_Metadata.csv)."""
    found: dict[str, tuple[Path, int, dict[str, str]]] = {}
    used: list[Path] = []
    meta_cols = {"lesion_id", "sex", *_AGE_COLUMNS, *_SITE_COLUMNS}
    for other in _csv_files(csv_path.parent):
        if other == csv_path:
            continue
        header = read_header(other)
        if not any(c in header for c in _ID_COLUMNS) or not meta_cols & set(header) or "subset" in header:
            continue  # not metadata (a dermadv split CSV has a subset column)
        try:
            table = read_csv(other)
        except DataError:
            continue
        id_col = _id_column(header)
        hit = False
        for line, row in table.rows:
            iid = strip_image_suffix(row.get(id_col, ""))
            if iid in wanted and iid not in found:
                found[iid] = (other, line, row)
                hit = True
        if hit:
            used.append(other)
    return found, used


def _csv_files(d: Path) -> list[Path]:
    try:
        entries = list(os.scandir(d))
    except OSError:
        return []
    return sorted(
        Path(e.path)
        for e in entries
        if e.name.lower().endswith(".csv") and not e.name.startswith(".") and _is(e, "file")
    )


def read_csv_dataset(csv_path: Path, layout: CsvLayout) -> Dataset:
    """Read a label CSV of a known layout into a Dataset (images looked up beside it)."""
    table = read_csv(csv_path)
    if not table.rows:
        raise DataError(f"{csv_path}: has a header but no data rows")
    root = csv_path.parent
    problems: list[Problem] = []
    id_col = _id_column(table.header)
    rows = list(_PARSERS[layout.name](table, id_col, problems))

    ids = {r.image_id for r in rows if r.image_id}
    aux: dict[str, tuple[Path, int, dict[str, str]]] = {}
    aux_paths: list[Path] = []
    if layout.name in ("isic2019", "isic2018", "isic2017"):
        aux, aux_paths = _aux_metadata(csv_path, ids)

    index = ImageIndex(candidate_image_dirs(root, csv_path))
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for r in rows:
        where = f"line {r.line}"
        if not r.image_id:
            problems.append(Problem("missing_id", None, csv_path, f"{where}: empty image id"))
            continue
        if r.image_id in seen:
            problems.append(
                Problem(
                    "duplicate_id",
                    r.image_id,
                    csv_path,
                    f"{where}: image id {r.image_id} already listed at line {seen[r.image_id]}",
                )
            )
            continue
        seen[r.image_id] = r.line
        if r.diagnosis is None:
            continue  # problem already recorded by the parser
        meta = {"lesion_id": r.lesion_id, "age": r.age, "sex": r.sex, "site": r.site}
        if r.image_id in aux:
            aux_path, aux_line, aux_row = aux[r.image_id]
            extra = _meta_fields(aux_row, f"line {aux_line} ({r.image_id})", problems, r.image_id, aux_path)
            meta = {k: (v if v is not None else extra[k]) for k, v in meta.items()}
        path = index.find(r.image_id)
        if path is None:
            problems.append(
                Problem(
                    "missing_image",
                    r.image_id,
                    csv_path,
                    f"{where}: no image file {r.image_id}.jpg/.jpeg/.png under {root}",
                )
            )
            continue
        samples.append(Sample(r.image_id, path, r.diagnosis, **meta))
    for f in index.unlabelled(set(seen)):
        problems.append(Problem("unlabelled_image", f.stem, f, f"image has no row in {csv_path.name}"))
    return Dataset(
        root=root,
        layout=layout.name,
        samples=samples,
        problems=problems,
        csv_path=csv_path,
        metadata_paths=aux_paths,
        image_dirs=index.dirs,
    )


# ------------------------------------------------------------------------------------------ folders


def read_folders_dataset(root: Path) -> Dataset | None:
    """Class-named folders (``root/mel/*.jpg``); None when no subfolder holding images is a diagnosis."""
    class_dirs: list[tuple[Path, str]] = []
    other_dirs: list[Path] = []
    for d in _subdirs(root):
        if not _list_images(d):
            continue
        code = canonical_diagnosis(d.name)
        if code:
            class_dirs.append((d, code))
        else:
            other_dirs.append(d)
    if not class_dirs:
        return None
    problems: list[Problem] = []
    samples: list[Sample] = []
    seen: dict[str, Path] = {}
    for d, code in class_dirs:
        local: dict[str, Path] = {}
        for f in sorted(_list_images(d), key=lambda p: (p.stem, _SUFFIX_RANK[p.suffix.lower()])):
            if f.stem in local:
                problems.append(
                    Problem("duplicate_id", f.stem, f, f"image id {f.stem} also at {local[f.stem]}")
                )
                continue
            local[f.stem] = f
            if f.stem in seen:
                problems.append(
                    Problem(
                        "duplicate_id",
                        f.stem,
                        f,
                        f"image id {f.stem} is also in another class folder: {seen[f.stem]}",
                    )
                )
                continue
            seen[f.stem] = f
            samples.append(Sample(f.stem, f, code))
    for d in other_dirs:
        n = len(_list_images(d))
        problems.append(
            Problem(
                "unknown_label",
                None,
                d,
                f"folder name {d.name!r} is not a known diagnosis; its {n} image(s) are left out",
            )
        )
    for f in _list_images(root):
        problems.append(Problem("unlabelled_image", f.stem, f, "image is not inside a class-named folder"))
    return Dataset(
        root=root, layout="folders", samples=samples, problems=problems, image_dirs=[d for d, _ in class_dirs]
    )


# --------------------------------------------------------------------------------------------- entry


def read_layout(path: Path) -> Dataset:
    """Detect the layout of ``path`` (a directory or CSV file) and read it."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(f"{path}: expected a dataset directory or a label CSV file")
        table_header = read_csv(path).header  # raises a clear error for empty/unreadable files
        layout = detect_csv_layout(path, table_header, strict=True)
        assert layout is not None
        ds = read_csv_dataset(path, layout)
    elif path.is_dir():
        label_csvs: list[tuple[Path, CsvLayout]] = []
        empty_csvs: list[Path] = []
        for f in _csv_files(path):
            header = read_header(f)
            if not header:
                empty_csvs.append(f)
                continue
            lay = detect_csv_layout(f, header, strict=False)
            if lay is not None:
                label_csvs.append((f, lay))
        if len(label_csvs) > 1:
            listed = "; ".join(f"{f.name} ({lay.title})" for f, lay in label_csvs)
            raise DataError(f"{path}: holds several label CSVs ({listed}); pass the one to use as the path")
        if label_csvs:
            ds = read_csv_dataset(*label_csvs[0])
        elif empty_csvs:
            read_csv(empty_csvs[0])  # raises what is wrong: not UTF-8, unreadable, empty
            raise DataError(f"{empty_csvs[0]}: has no header line; no other label CSV in {path}")
        else:
            folders = read_folders_dataset(path)
            if folders is None:
                raise DataError(_no_layout_message(path))
            ds = folders
    else:
        raise DataError(f"{path}: not a file or directory")
    if not ds.samples and not ds.problems:
        raise DataError(f"{path}: the {ds.layout} dataset holds no images")
    return ds


def _no_layout_message(path: Path) -> str:
    msg = f"{path}: no recognisable dataset layout. Accepted layouts: {ACCEPTED_LAYOUTS}"
    nested = [
        d.name
        for d in _subdirs(path)
        if any(_safe_detect(f) for f in _csv_files(d))
        or any(canonical_diagnosis(c.name) and _list_images(c) for c in _subdirs(d))
    ]
    if nested:
        msg += f". These subfolders hold datasets; pass one of them: {', '.join(nested)}"
    else:
        image_dirs = [d.name for d in _subdirs(path) if _list_images(d)]
        if image_dirs:
            msg += f". Subfolders with images whose names are not diagnoses: {', '.join(image_dirs[:10])}"
        elif _list_images(path):
            msg += f". It holds {len(_list_images(path))} image(s) but no label CSV and no class folders"
    return msg


def _safe_detect(f: Path) -> bool:
    try:
        return detect_csv_layout(f, read_header(f), strict=False) is not None
    except DataError:
        return False
