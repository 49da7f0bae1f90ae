"""Train/validation splits (stratified by diagnosis, grouped by lesion, reproducible by seed), the
split CSV + JSON sidecar files, sample selection for every command, and the provenance hash.

Split CSV columns: ``image_id,diagnosis,lesion_id,subset`` with subset in {train, val, test}; the JSON
sidecar beside it (``split.csv`` -> ``split.json``) records seed, fraction, classes, counts per
subset x diagnosis, the dataset's path and hash, and the split's own hash.

Reading a split verifies it (:func:`read_split`): a split whose rows no longer hash to the sidecar's
``split_hash`` (edited after ``dermadv data split`` wrote it), or that puts images of one lesion in two
subsets (a lesion leak), is refused with one line naming the file and what is wrong, unless the
caller allows it (``--allow-edited-split``; then a warning is logged and :attr:`Split.edits` says why).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermadv.data.dataset import Dataset, Sample, load_dataset, warn_problems
from dermadv.errors import DataError
from dermadv.fileio import atomic_write_text
from dermadv.labels import DIAGNOSES, canonical_diagnosis

SUBSETS: tuple[str, ...] = ("train", "val", "test")
SPLIT_COLUMNS: tuple[str, ...] = ("image_id", "diagnosis", "lesion_id", "subset")
DEFAULT_CLASSES: tuple[str, ...] = ("mel", "nv")

log = logging.getLogger("dermadv.data")


def dataset_hash(samples: Iterable[Sample | tuple], subsets: Mapping[str, str] | None = None) -> str:
    """Stable 16-hex-digit hash of the (image_id, diagnosis, subset) triples, independent of order.

    ``samples`` are Samples (subset looked up in ``subsets``, "" when absent) or (image_id, diagnosis[,
    subset]) tuples. Paths and metadata are not hashed: the same images and labels give the same hash
    wherever the data lives.
    """
    import hashlib

    lines = []
    for s in samples:
        if isinstance(s, Sample):
            iid, dx = s.image_id, s.diagnosis
            sub = subsets.get(iid, "") if subsets else ""
        else:
            iid, dx = str(s[0]), str(s[1])
            sub = str(s[2]) if len(s) > 2 and s[2] is not None else (subsets.get(iid, "") if subsets else "")
        lines.append(f"{iid}\t{dx}\t{sub}")
    h = hashlib.sha256("\n".join(sorted(lines)).encode("utf-8"))
    return h.hexdigest()[:16]


def normalize_classes(classes: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """Canonical codes for a class list ("mel,nv", ["melanoma", "nevus"]); None means all classes."""
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    out: list[str] = []
    for c in classes:
        code = canonical_diagnosis(c)
        if code is None:
            raise DataError(f"unknown class {c!r}; use diagnosis codes such as {', '.join(DIAGNOSES)}")
        if code not in out:
            out.append(code)
    if not out:
        raise DataError("empty class list; give classes such as mel,nv or use all classes")
    return tuple(out)


def _as_dataset(data: str | Path | Dataset) -> Dataset:
    return data if isinstance(data, Dataset) else load_dataset(data)


def _group_key(s: Sample) -> str:
    return f"lesion:{s.lesion_id}" if s.lesion_id else f"image:{s.image_id}"


@dataclass
class Split:
    """Samples assigned to subsets. ``samples`` keep the dataset's order."""

    samples: list[Sample]
    subsets: dict[str, str]
    seed: int | None = None
    val_fraction: float | None = None
    classes: tuple[str, ...] | None = None
    dataset: dict = field(default_factory=dict)  # Dataset.describe() of the source
    path: Path | None = None
    #: what verification found wrong in a split read with ``allow_edited=True`` (empty: verified)
    edits: list[str] = field(default_factory=list)

    def subset(self, name: str) -> list[Sample]:
        """Samples of one subset ("train", "val" or "test")."""
        if name not in SUBSETS:
            raise DataError(f"unknown subset {name!r}; use one of {', '.join(SUBSETS)}")
        return [s for s in self.samples if self.subsets[s.image_id] == name]

    @property
    def train(self) -> list[Sample]:
        return self.subset("train")

    @property
    def val(self) -> list[Sample]:
        return self.subset("val")

    def counts(self) -> dict[str, dict[str, int]]:
        """{subset: {diagnosis: n}} for the subsets present."""
        c: dict[str, Counter] = defaultdict(Counter)
        for s in self.samples:
            c[self.subsets[s.image_id]][s.diagnosis] += 1
        return {sub: {d: c[sub][d] for d in DIAGNOSES if c[sub][d]} for sub in SUBSETS if sub in c}

    def lesion_counts(self) -> dict[str, int]:
        """Number of distinct lesions (or lone images) per subset."""
        groups: dict[str, set[str]] = defaultdict(set)
        for s in self.samples:
            groups[self.subsets[s.image_id]].add(_group_key(s))
        return {sub: len(groups[sub]) for sub in SUBSETS if sub in groups}

    def straddling_lesions(self) -> list[str]:
        """Lesion ids with images in more than one subset (empty for splits made here)."""
        subs: dict[str, set[str]] = defaultdict(set)
        for s in self.samples:
            if s.lesion_id:
                subs[s.lesion_id].add(self.subsets[s.image_id])
        return sorted(k for k, v in subs.items() if len(v) > 1)

    def hash(self) -> str:
        """:func:`dataset_hash` of the split's (image_id, diagnosis, subset) triples."""
        return dataset_hash(self.samples, self.subsets)

    def describe(self) -> dict:
        """What the JSON sidecar holds."""
        from dermadv import __version__

        return {
            "kind": "dermadv_split",
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "classes": None if self.classes is None else list(self.classes),
            "n_samples": len(self.samples),
            "counts": self.counts(),
            "lesions": self.lesion_counts(),
            "split_hash": self.hash(),
            "dataset": self.dataset,
            "dermadv_version": __version__,
        }

    def write(self, path: str | Path) -> Path:
        """Write the split CSV and its JSON sidecar atomically; returns the sidecar's path."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(SPLIT_COLUMNS)
        for s in self.samples:
            w.writerow([s.image_id, s.diagnosis, s.lesion_id or "", self.subsets[s.image_id]])
        sidecar = sidecar_path(path)
        atomic_write_text(path, buf.getvalue())
        atomic_write_text(sidecar, json.dumps(self.describe(), indent=2) + "\n")
        self.path = path
        return sidecar


def sidecar_path(split_csv: str | Path) -> Path:
    """``split.csv`` -> ``split.json`` (``name`` without .csv -> ``name.json``)."""
    p = Path(split_csv)
    return p.with_suffix(".json") if p.suffix.lower() == ".csv" else p.with_name(p.name + ".json")


def make_split(
    dataset: Dataset | str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    classes: Sequence[str] | str | None = DEFAULT_CLASSES,
) -> Split:
    """Split ``dataset`` into train and val, stratified by diagnosis and grouped by lesion.

    All images of one lesion (same ``lesion_id``) go to the same subset; images without a lesion id
    are their own group. For each diagnosis the validation set gets ``round(val_fraction * n)``
    images (at least 1 and at most n - 1 when n >= 2), as closely as whole lesions allow: lesions are
    visited largest first (ties in a random order drawn from ``seed``) and each goes to val when that
    brings the per-diagnosis val counts closer to their targets. The same seed gives the same split.
    ``classes=None`` keeps every diagnosis (for multi-class models).
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 < float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    ds = _as_dataset(dataset)
    wanted = normalize_classes(classes)
    samples = [s for s in ds.samples if wanted is None or s.diagnosis in wanted]
    if wanted is not None:
        have = {s.diagnosis for s in samples}
        absent = [c for c in wanted if c not in have]
        if absent:
            raise DataError(
                f"{ds.csv_path or ds.root}: no usable samples of class(es) {', '.join(absent)} "
                f"(the dataset has {ds.counts() or 'none'})"
            )
    if len(samples) < 2:
        raise DataError(f"{ds.csv_path or ds.root}: need at least 2 samples to split, found {len(samples)}")

    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[_group_key(s)].append(s)
    n_per_class = Counter(s.diagnosis for s in samples)
    target = {}
    for c, n in n_per_class.items():
        t = round(val_fraction * n)
        target[c] = min(max(t, 1), n - 1) if n >= 2 else t

    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda k: -len(groups[k]))  # stable: equal sizes stay in the seeded order
    val_counts: Counter = Counter()
    subsets: dict[str, str] = {}
    for k in keys:
        g = Counter(s.diagnosis for s in groups[k])
        cost_without = sum(abs(val_counts[c] - target[c]) for c in g)
        cost_with = sum(abs(val_counts[c] + g[c] - target[c]) for c in g)
        to_val = cost_with < cost_without
        if to_val:
            val_counts.update(g)
        for s in groups[k]:
            subsets[s.image_id] = "val" if to_val else "train"
    return Split(
        samples=samples,
        subsets=subsets,
        seed=seed,
        val_fraction=float(val_fraction),
        classes=wanted,
        dataset=ds.describe(),
    )


_SplitRow = tuple[str, str, str | None, str]


def read_split(
    path: str | Path, dataset: Dataset | str | Path | None = None, *, allow_edited: bool = False
) -> Split:
    """Read and validate a split CSV (and its JSON sidecar when present).

    With ``dataset``, every id must be one of its usable samples with the same diagnosis, and the
    returned samples are the dataset's (with image paths and metadata); without it, samples carry no
    path. Errors name the split file and the offending lines.

    The split is verified (:func:`split_problems`): rows that no longer hash to the sidecar's
    ``split_hash``, or a lesion with images in two subsets (by the dataset's lesion ids when given,
    and by the CSV's lesion_id column), raise one DataError naming the file and what is wrong -- unless
    ``allow_edited``: then a warning is logged and the problems are in :attr:`Split.edits`.
    """
    from dermadv.data.layouts import read_csv

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    table = read_csv(path)
    missing = [c for c in ("image_id", "diagnosis", "subset") if c not in table.header]
    if missing:
        raise DataError(
            f"{path}: not a split CSV: lacks column(s) {', '.join(missing)}; it has: "
            f"{', '.join(table.header)}; a split CSV needs: {', '.join(SPLIT_COLUMNS)}"
        )
    if not table.rows:
        raise DataError(f"{path}: split CSV has no rows")
    rows = _split_rows(path, table.rows)

    meta: dict = {}
    side = sidecar_path(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{side}: unreadable split sidecar JSON ({exc})") from exc

    subsets = {iid: sub for iid, _, _, sub in rows}
    if dataset is None:
        samples = [Sample(iid, None, dx, lesion_id=les) for iid, dx, les, _ in rows]
        ds_meta = meta.get("dataset", {})
    else:
        samples, ds_meta = _dataset_samples(path, rows, dataset)
    classes = meta.get("classes")
    split = Split(
        samples=samples,
        subsets=subsets,
        seed=meta.get("seed"),
        val_fraction=meta.get("val_fraction"),
        classes=tuple(classes) if classes else None,
        dataset=ds_meta,
        path=path,
    )
    problems = split_problems(split, meta, side.name, {iid: les for iid, _, les, _ in rows})
    if problems and not allow_edited:
        raise DataError(
            f"{path}: {'; '.join(problems)}. Make the split again with `dermadv data split`, or pass "
            "--allow-edited-split to use it as it is"
        )
    if problems:
        log.warning("%s: used as it is (--allow-edited-split): %s", path, "; ".join(problems))
        split.edits = problems
    return split


def split_problems(
    split: Split,
    meta: Mapping[str, Any],
    sidecar_name: str = "the sidecar",
    csv_lesions: Mapping[str, str | None] | None = None,
) -> list[str]:
    """What is wrong with a split read from disk: rows edited since its sidecar was written (their
    hash differs from ``meta["split_hash"]``, with the counts that changed) and lesions whose images
    lie in more than one subset, by the samples' lesion ids or by the split CSV's own lesion_id column
    (``csv_lesions``: image id -> lesion id). Empty when the split is as ``dermadv data split`` wrote it."""
    problems = []
    recorded = meta.get("split_hash")
    if recorded is not None and recorded != split.hash():
        what = _count_changes(meta.get("counts"), split.counts())
        problems.append(
            f"edited after it was written: its rows hash to {split.hash()}, but {sidecar_name} records "
            f"split_hash {recorded}" + (f" ({what})" if what else "")
        )
    where: dict[str, set[str]] = defaultdict(set)
    for lesions in ({s.image_id: s.lesion_id for s in split.samples}, dict(csv_lesions or {})):
        for image_id, lesion in lesions.items():
            if lesion and image_id in split.subsets:
                where[lesion].add(split.subsets[image_id])
    leaks = sorted(k for k, subs in where.items() if len(subs) > 1)
    if leaks:
        shown = ", ".join(f"{k} in {'+'.join(x for x in SUBSETS if x in where[k])}" for k in leaks[:3])
        more = f" and {len(leaks) - 3} more" if len(leaks) > 3 else ""
        problems.append(
            f"lesion leak: {len(leaks)} lesion(s) have images in more than one subset ({shown}{more})"
        )
    return problems


def _count_changes(recorded: Any, now: Mapping[str, Mapping[str, int]]) -> str:
    """``"train mel 40 -> 34, val mel 10 -> 16"`` between the sidecar's counts and the rows'."""
    if not isinstance(recorded, Mapping):
        return ""
    changes = []
    for sub in SUBSETS:
        old, new = recorded.get(sub) or {}, now.get(sub) or {}
        if not isinstance(old, Mapping):
            continue
        for dx in DIAGNOSES:
            if old.get(dx, 0) != new.get(dx, 0):
                changes.append(f"{sub} {dx} {old.get(dx, 0)} -> {new.get(dx, 0)}")
    return ", ".join(changes[:6]) + (" ..." if len(changes) > 6 else "")


def _split_rows(path: Path, table_rows: Sequence[tuple[int, dict[str, str]]]) -> list[_SplitRow]:
    """(image id, canonical diagnosis, lesion id, subset) per CSV line; all bad lines in one error."""
    errors: list[str] = []
    rows: list[_SplitRow] = []
    seen: dict[str, int] = {}
    for line, row in table_rows:
        iid, dx_raw, sub = row["image_id"], row["diagnosis"], row["subset"]
        dx = canonical_diagnosis(dx_raw) if dx_raw else None
        if not iid:
            errors.append(f"line {line}: empty image_id")
        elif iid in seen:
            errors.append(f"line {line}: duplicate image_id {iid} (first at line {seen[iid]})")
        if sub not in SUBSETS:
            errors.append(f"line {line}: unknown subset {sub!r} (expected one of {', '.join(SUBSETS)})")
        if dx is None:
            errors.append(f"line {line}: unknown diagnosis {dx_raw!r}")
        if iid:
            seen.setdefault(iid, line)
        rows.append((iid, dx or "", row.get("lesion_id") or None, sub))
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise DataError(f"{path}: invalid split: {'; '.join(errors[:10])}{more}")
    return rows


def _dataset_samples(
    path: Path, rows: Sequence[_SplitRow], dataset: Dataset | str | Path
) -> tuple[list[Sample], dict[str, Any]]:
    """The dataset's samples for the split's rows (ids and diagnoses checked) and its description."""
    ds = _as_dataset(dataset)
    by_id = ds.by_id()
    unknown = [iid for iid, *_ in rows if iid not in by_id]
    if unknown:
        raise DataError(
            f"{path}: {len(unknown)} image id(s) are not usable samples of the dataset "
            f"{ds.csv_path or ds.root}: {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}"
            f" (is this split for another dataset? `dermadv data check` lists the dataset's problems)"
        )
    mismatch = [
        f"{iid} ({dx} in split, {by_id[iid].diagnosis} in dataset)"
        for iid, dx, _, _ in rows
        if by_id[iid].diagnosis != dx
    ]
    if mismatch:
        raise DataError(
            f"{path}: diagnosis differs from the dataset for {len(mismatch)} image(s): "
            f"{', '.join(mismatch[:10])}"
        )
    samples = [by_id[iid] for iid, *_ in rows]
    ds_meta = ds.describe()
    return samples, ds_meta


def stratified_prefix(samples: Sequence[Sample], n: int) -> list[Sample]:
    """The first ``n`` samples of a deterministic order that interleaves the diagnoses in proportion.

    Within a diagnosis samples are taken by image id; the next pick is always the diagnosis whose
    share taken so far is smallest (ties in canonical diagnosis order). So class proportions follow
    the full set, and the selection for ``n`` is contained in the one for ``n + 1``. Returned in the
    input order.
    """
    if n >= len(samples):
        return list(samples)
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.diagnosis].append(s)
    for v in by_class.values():
        v.sort(key=lambda s: s.image_id)
    order = {d: i for i, d in enumerate(DIAGNOSES)}
    taken: Counter = Counter()
    chosen: set[str] = set()
    for _ in range(n):
        c = min(
            (c for c in by_class if taken[c] < len(by_class[c])),
            key=lambda c: ((taken[c] + 1) / len(by_class[c]), order.get(c, 99), c),
        )
        chosen.add(by_class[c][taken[c]].image_id)
        taken[c] += 1
    return [s for s in samples if s.image_id in chosen]


def select_samples(
    data: str | Path | Dataset,
    split: str | Path | Split | None = None,
    subset: str | None = None,
    classes: Sequence[str] | str | None = DEFAULT_CLASSES,
    ids: Sequence[str] | str | None = None,
    limit: int | None = None,
    allow_edited_split: bool = False,
) -> list[Sample]:
    """The samples a command works on: what ``--data D [--split CSV --subset val] [--ids a,b]
    [--limit N]`` mean everywhere.

    1. load ``data`` (a dataset path or Dataset); rows with problems are left out (logged);
    2. with ``split``, keep the split's samples, and with ``subset`` only that subset's (a split file
       is verified: an edited one or a lesion leak is refused unless ``allow_edited_split``);
    3. keep ``classes`` (default melanoma and naevus; None keeps every diagnosis);
    4. with ``ids`` (a list or "a,b,c"), keep exactly those, in that order; an id that the previous
       steps excluded is an error saying why;
    5. with ``limit``, keep a stratified, deterministic subset (:func:`stratified_prefix`: diagnoses
       interleaved in proportion, by image id within a diagnosis; smaller limits are subsets of
       larger ones).

    Without ``ids`` the result is in the dataset's (split's) order. Raises DataError when nothing is
    left, naming the filters.
    """
    ds = _as_dataset(data)
    warn_problems(ds)
    samples = list(ds.samples)
    where = f"dataset {ds.csv_path or ds.root}"
    if split is not None:
        sp = split if isinstance(split, Split) else read_split(split, ds, allow_edited=allow_edited_split)
        if subset is not None:
            samples = sp.subset(subset)
            where += f", subset {subset!r} of split {sp.path}"
        else:
            samples = list(sp.samples)
            where += f", split {sp.path}"
    elif subset is not None:
        raise DataError(f"subset {subset!r} given without a split file; pass --split CSV too")
    wanted = normalize_classes(classes)
    if wanted is not None:
        samples = [s for s in samples if s.diagnosis in wanted]
        where += f", classes {','.join(wanted)}"
    if ids is not None:
        id_list = (
            [i.strip() for i in ids.split(",")] if isinstance(ids, str) else [str(i).strip() for i in ids]
        )
        id_list = [i for i in id_list if i]
        if not id_list:
            raise DataError("empty --ids list")
        present = {s.image_id: s for s in samples}
        missing = [i for i in id_list if i not in present]
        if missing:
            everywhere = ds.by_id()
            why = []
            for i in missing[:10]:
                if i in everywhere:
                    why.append(
                        f"{i} (a {everywhere[i].diagnosis} image excluded by the split/subset/classes)"
                    )
                else:
                    why.append(f"{i} (not a usable sample of the dataset)")
            raise DataError(f"{where}: requested id(s) not available: {', '.join(why)}")
        samples = [present[i] for i in dict.fromkeys(id_list)]
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit must be a positive number of images, got {limit}")
        samples = stratified_prefix(samples, limit)
    if not samples:
        raise DataError(f"{where}: no samples selected")
    return samples
