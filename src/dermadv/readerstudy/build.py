"""Assemble a reader study: from attack runs (``--from RUN``) or from a hand-made folder + CSV.

Every image is decoded and re-encoded as PNG under a random 16-hex-digit name, so neither the
file name, the URL nor any embedded metadata (EXIF, PNG text chunks, JPEG comments) can tell a
reader the diagnosis, the attack or the model's confidence. What each image is stays in the
study's manifest, which the server never serves.

PNGs are written uncompressed (zlib level 0), so a file's size depends on its width and height only:
an adversarial image (often noisier, so larger when compressed) cannot be told from an unmodified one
of the same size by its byte count (:func:`png_size`). A study whose images are all of one ground truth
is built with a warning (sensitivity or specificity cannot be estimated from it).
"""

from __future__ import annotations

import csv
import json
import secrets
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_text
from dermadv.labels import canonical_diagnosis
from dermadv.readerstudy.study import (
    ADVERSARIAL,
    CONFIDENCE_MODES,
    DEFAULT_CHOICES,
    FORMAT_VERSION,
    IMAGES_DIR,
    MANIFEST_FILE,
    MELANOMA,
    NAEVUS,
    STUDY_FILE,
    UNMODIFIED,
    Study,
    load_study,
    write_manifest,
)
from dermadv.vocab import Group, Outcome

_IMAGE_COLUMNS = ("image", "image_name", "image_id", "file", "filename", "path")
_TRUTH_COLUMNS = ("ground_truth", "diagnosis", "truth", "label", "dx")
_IMAGE_SUFFIXES = ("", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def study_group(label: str) -> str | None:
    """Map a diagnosis label ('mel', 'melanoma', 'nv', 'benign naevus', 'benign'...) to a study group."""
    text = str(label).strip().lower()
    if text in (MELANOMA, NAEVUS):
        return text
    if text in ("benign", "naevus", "nevus"):
        return NAEVUS
    code = canonical_diagnosis(text)
    return {"mel": MELANOMA, "nv": NAEVUS}.get(code or "")


def _condition(value: str, where: str) -> str:
    text = (value or "").strip().lower()
    if text in ("", UNMODIFIED, "original", "clean", "0", "false", "no"):
        return UNMODIFIED
    if text in (ADVERSARIAL, "attacked", "modified", "1", "true", "yes"):
        return ADVERSARIAL
    raise DataError(f"{where}: condition {value!r} is neither 'unmodified' nor 'adversarial'")


def _reencode(src: Path, dst: Path) -> tuple[int, int]:
    """Decode ``src`` and write it as a metadata-free PNG at ``dst``; returns (height, width)."""
    from dermadv.data.images import load_image

    arr = load_image(src)  # DataError names the file when it is missing or corrupt
    _save_png(arr, dst)  # pixels only: no EXIF or text chunks are written
    return int(arr.shape[0]), int(arr.shape[1])


def _save_png(arr: np.ndarray, dst: Path) -> None:
    from PIL import Image

    # uncompressed: the byte count is a function of the dimensions, not of the content
    Image.fromarray(np.ascontiguousarray(arr)).save(dst, format="PNG", compress_level=0)


def png_size(path: str | Path) -> int:
    """Byte count of a study PNG (equal for all images of one width, height and mode)."""
    return Path(path).stat().st_size


def one_class_warning(items: list[dict[str, Any]]) -> str | None:
    """A warning when every image has the same ground truth (or None)."""
    groups = sorted({str(item["ground_truth"]) for item in items})
    if len(groups) == 1:
        return (
            f"every image is {groups[0]}: readers' sensitivity and specificity cannot both be estimated "
            f"(add {NAEVUS if groups[0] == MELANOMA else MELANOMA} images, e.g. --unmodified N)"
        )
    return None


def _new_key(taken: set[str]) -> str:
    while True:
        key = secrets.token_hex(8)
        if key not in taken:
            taken.add(key)
            return key


def _settings(title: str, confidence: str, allow_change: bool, build: dict[str, Any]) -> dict[str, Any]:
    from dermadv import __version__

    if confidence not in CONFIDENCE_MODES:
        raise DataError(f"confidence must be one of {', '.join(CONFIDENCE_MODES)}, got {confidence!r}")
    return {
        "dermadv_reader_study": FORMAT_VERSION,
        "study_id": secrets.token_hex(8),
        "title": title,
        "choices": [dict(c) for c in DEFAULT_CHOICES],
        "confidence": confidence,
        "allow_change": bool(allow_change),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dermadv_version": __version__,
        "build": build,
    }


def _write_study(out: Path, items: list[dict[str, Any]], settings: dict[str, Any]) -> Study:
    """Copy images under opaque names into a fresh directory, then move it into place atomically."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: already exists and is not empty; choose a new study directory")
    tmp = out.with_name(f".{out.name}.building")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / IMAGES_DIR).mkdir(parents=True)
    warning = one_class_warning(items)
    if warning is not None:
        settings["build"]["warnings"] = [*settings["build"].get("warnings", []), warning]
    rng = np.random.default_rng()  # manifest order must not reveal condition/diagnosis either
    order = rng.permutation(len(items))
    taken: set[str] = set()
    rows = []
    try:
        for idx in order:
            item = dict(items[idx])
            src = Path(item.pop("_src"))
            array = item.pop("_array", None)
            key = _new_key(taken)
            file = f"{key}.png"
            if array is None:
                h, w = _reencode(src, tmp / IMAGES_DIR / file)
            else:
                _save_png(array, tmp / IMAGES_DIR / file)
                h, w = int(array.shape[0]), int(array.shape[1])
            rows.append({"image_key": key, "file": file, **item, "height": h, "width": w})
        write_manifest(tmp / MANIFEST_FILE, rows)
        atomic_write_text(tmp / STUDY_FILE, json.dumps(settings, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return load_study(out)


def build_from_images(
    images: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    title: str = "Dermoscopy reader study",
    confidence: str = "required",
    allow_change: bool = False,
) -> Study:
    """Build a study from a folder of images and a CSV naming each image and its ground truth.

    The CSV needs an image column (one of image, image_name, image_id, file, filename, path; a
    name without extension is tried with .png/.jpg/...) and a ground-truth column (ground_truth,
    diagnosis, truth, label or dx: melanoma/naevus, mel/nv or any ISIC synonym). Optional:
    ``condition`` (unmodified/adversarial, default unmodified), ``attack``. Every other column is
    kept in the manifest as provenance.
    """
    images, manifest = Path(images), Path(manifest)
    if not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    if not manifest.is_file():
        raise DataError(f"{manifest}: manifest CSV not found")
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        img_col = next((cols[c] for c in _IMAGE_COLUMNS if c in cols), None)
        gt_col = next((cols[c] for c in _TRUTH_COLUMNS if c in cols), None)
        if img_col is None or gt_col is None:
            raise DataError(
                f"{manifest}: needs an image column ({', '.join(_IMAGE_COLUMNS)}) and a ground-truth "
                f"column ({', '.join(_TRUTH_COLUMNS)}); found {reader.fieldnames}"
            )
        cond_col, attack_col = cols.get("condition"), cols.get("attack")
        items = []
        for lineno, row in enumerate(reader, start=2):
            where = f"{manifest} line {lineno}"
            name = (row[img_col] or "").strip()
            src = next(
                (images / f"{name}{s}" for s in _IMAGE_SUFFIXES if (images / f"{name}{s}").is_file()), None
            )
            if not name or src is None:
                raise DataError(f"{where}: image {name!r} not found in {images}")
            group = study_group(row[gt_col] or "")
            if group is None:
                raise DataError(f"{where}: ground truth {row[gt_col]!r} is neither melanoma nor naevus")
            condition = _condition(row[cond_col] if cond_col else "", where)
            attack = (row[attack_col] or "").strip() if attack_col else ""
            used = {img_col, gt_col, cond_col, attack_col}
            extra = {f"src_{k}" if k in _RESERVED else k: v for k, v in row.items() if k not in used}
            items.append(
                {
                    "_src": src,
                    "ground_truth": group,
                    "condition": condition,
                    "attack": attack,
                    "source_image_id": Path(name).stem,
                    "source": str(src.resolve()),
                    **extra,
                }
            )
    if not items:
        raise DataError(f"{manifest}: no images listed")
    build = {
        "method": "images",
        "images": str(images.resolve()),
        "manifest": str(manifest.resolve()),
        "n_images": len(items),
    }
    return _write_study(Path(out), items, _settings(title, confidence, allow_change, build))


_RESERVED = frozenset(
    {
        "image_key",
        "file",
        "ground_truth",
        "condition",
        "attack",
        "source_image_id",
        "source",
        "height",
        "width",
    }
)


def build_from_runs(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    per_attack: int = 34,
    unmodified: int = 102,
    seed: int = 0,
    attacks: Sequence[str] | None = None,
    exclude_attacked_sources: bool = True,
    unmodified_from: str | Path | None = None,
    title: str = "Dermoscopy reader study",
    confidence: str = "required",
    allow_change: bool = False,
    max_delta_e: float | None = None,
    balance_visibility: bool = False,
) -> tuple[Study, dict[str, Any]]:
    """Build a study from campaign RUN directories.

    How visible each change is (:mod:`dermadv.perceptual`): ``max_delta_e`` keeps only adversarial
    images whose mean CIEDE2000 difference from their original is below it (e.g. 2.3, the
    just-noticeable difference); ``balance_visibility`` draws each attack's images alternately from
    those below and at or above the JND, so both are represented as far as the runs allow.

    Per attack type, ``per_attack`` successful adversarial images are drawn at random (seeded);
    ``unmodified`` images are drawn half melanoma, half naevus, from the dataset ``unmodified_from``
    (default: the dataset the first run attacked, named in its run.json) decoded and resized exactly
    as the run's model prepares its inputs, so that size and resampling cannot tell the conditions
    apart; without a dataset, from the runs' own original images (a mel->nv campaign holds no naevi).
    Lesions whose adversarial version is in the study are left out of the unmodified images (unless
    ``exclude_attacked_sources`` is False), and each attack's images are drawn from lesions not yet
    in the study before any lesion is repeated. Shortfalls are reported in the summary and in
    study.json, never hidden. Returns the study and that summary.
    """
    if per_attack < 0 or unmodified < 0:
        raise DataError("--per-attack and --unmodified must be >= 0")
    if not runs:
        raise DataError("give at least one --from RUN directory")
    rng = np.random.default_rng(seed)
    if max_delta_e is not None and not max_delta_e > 0:
        raise DataError(f"--max-delta-e must be > 0, got {max_delta_e}")
    successes, originals = _read_runs(runs, attacks)
    summary: dict[str, Any] = {"adversarial": {}, "unmodified": {}, "shortfalls": []}
    if max_delta_e is not None or balance_visibility:
        successes = _by_visibility(successes, max_delta_e, balance_visibility, summary)
    items, used_sources = _draw_adversarial(successes, per_attack, rng, summary, balance_visibility)
    for attack in attacks or []:
        if attack not in successes:
            summary["shortfalls"].append(f"attack {attack}: no successful images in the runs")
    excluded_ids = {image_id for _, image_id in used_sources} if exclude_attacked_sources else set()
    dataset, prep = _unmodified_source(runs, unmodified_from)
    summary["unmodified_source"] = str(dataset) if dataset is not None else "runs' original images"
    items += _draw_unmodified(unmodified, dataset, prep, originals, excluded_ids, rng, summary)
    if not items:
        raise DataError("the runs hold no usable images (no successful attacks and no originals)")
    build = {
        "method": "runs",
        "runs": [str(Path(r).resolve()) for r in runs],
        "per_attack": per_attack,
        "unmodified": unmodified,
        "seed": seed,
        "attacks": list(attacks) if attacks else None,
        "exclude_attacked_sources": exclude_attacked_sources,
        "max_delta_e": max_delta_e,
        "balance_visibility": balance_visibility,
        # what was drawn (its "unmodified" counts per group must not replace the number asked above)
        **{k: v for k, v in summary.items() if k != "unmodified"},
        "unmodified_drawn": summary["unmodified"],
    }
    study = _write_study(Path(out), items, _settings(title, confidence, allow_change, build))
    summary["warnings"] = list(study.settings["build"].get("warnings", []))
    return study, summary


def _read_runs(
    runs: Sequence[str | Path], attacks: Sequence[str] | None
) -> tuple[dict[str, list[dict[str, Any]]], dict[tuple[str, str], dict[str, Any]]]:
    """The runs' successful adversarial rows per attack, and their original images per (run, image id)."""
    from dermadv.campaign.store import ResultsStore

    successes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    originals: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        run = Path(run)
        with ResultsStore(run, create=False) as store:
            rows = store.rows()
        for row in rows:
            group = _run_group(row)
            if group is None:
                continue
            row = {**row, "_run": run, "_group": group}
            if row.get("original_path") and (run / row["original_path"]).is_file():
                originals.setdefault((str(run), row["image_id"]), row)
            if row["outcome"] == Outcome.SUCCESS and row.get("adversarial_path"):
                if attacks is None or row["attack"] in attacks:
                    successes[row["attack"]].append(row)
    return successes, originals


def _by_visibility(
    successes: dict[str, list[dict[str, Any]]],
    max_delta_e: float | None,
    balance: bool,
    summary: dict[str, Any],
) -> dict[str, list[dict[str, Any]]]:
    """Each success with its perceptual distance (``_delta_e``); those at or above ``max_delta_e`` and
    those whose distance is unknown (no saved images) left out, and counted in the summary."""
    from dermadv.perceptual import row_distance

    kept: dict[str, list[dict[str, Any]]] = {}
    for attack, rows in successes.items():
        out = []
        for row in rows:
            d = row_distance(row["_run"], row)
            if d is None:
                continue
            if max_delta_e is None or d["delta_e_mean"] < max_delta_e:
                out.append({**row, "_delta_e": d["delta_e_mean"]})
        if len(out) < len(rows):
            why = f"mean ΔE00 >= {max_delta_e} or unknown" if max_delta_e is not None else "ΔE00 unknown"
            summary["shortfalls"].append(
                f"attack {attack}: {len(rows) - len(out)} successful image(s) left out ({why})"
            )
        if out:
            kept[attack] = out
    return kept


def _alternate_visibility(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (already shuffled) reordered to alternate below-JND and visible images."""
    from dermadv.perceptual import JND_DELTA_E

    low = [r for r in rows if r["_delta_e"] < JND_DELTA_E]
    high = [r for r in rows if r["_delta_e"] >= JND_DELTA_E]
    out: list[dict[str, Any]] = []
    for i in range(max(len(low), len(high))):
        out += [g[i] for g in (low, high) if i < len(g)]
    return out


def _draw_adversarial(
    successes: dict[str, list[dict[str, Any]]],
    per_attack: int,
    rng: np.random.Generator,
    summary: dict[str, Any],
    balance_visibility: bool = False,
) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """``per_attack`` images per attack (fresh lesions first); the items and the (run, image id) used."""
    items: list[dict[str, Any]] = []
    used_sources: set[tuple[str, str]] = set()
    for attack in sorted(successes):
        pool = sorted(successes[attack], key=lambda r: (str(r["_run"]), r["image_id"]))
        take = min(per_attack, len(pool))
        if take < per_attack:
            summary["shortfalls"].append(
                f"attack {attack}: {len(pool)} successful images, {per_attack} asked"
            )
        # Lesions not yet in the study first (several attacks, or two models' runs, often fooled the
        # same images: a reader who sees one lesion in five versions is no longer blinded to it);
        # a lesion is reused only when there are not enough others, and that is reported.
        shuffled = [pool[i] for i in rng.permutation(len(pool))]
        if balance_visibility:
            shuffled = _alternate_visibility(shuffled)
        shown = {image_id for _, image_id in used_sources}
        fresh: list[dict[str, Any]] = []
        for row in shuffled:
            if row["image_id"] not in shown and all(row["image_id"] != f["image_id"] for f in fresh):
                fresh.append(row)
        picked = fresh[:take]
        if len(picked) < take:
            chosen = {id(r) for r in picked}
            picked += [r for r in shuffled if id(r) not in chosen][: take - len(picked)]
            summary["shortfalls"].append(
                f"attack {attack}: {len(fresh)} lesion(s) not already in the study; "
                f"{take - len(fresh)} image(s) repeat a lesion shown elsewhere in the study"
            )
        summary["adversarial"][attack] = take
        for row in picked:
            used_sources.add((str(row["_run"]), row["image_id"]))
            items.append(_run_item(row, ADVERSARIAL, row["adversarial_path"]))
    return items, used_sources


def _draw_unmodified(
    unmodified: int,
    dataset: Path | None,
    prep: dict[str, Any],
    originals: dict[tuple[str, str], dict[str, Any]],
    excluded_ids: set[str],
    rng: np.random.Generator,
    summary: dict[str, Any],
) -> list[dict[str, Any]]:
    """``unmodified`` images, half melanoma, half naevus, from ``dataset`` or else the runs' originals."""
    items: list[dict[str, Any]] = []
    wanted = {MELANOMA: unmodified - unmodified // 2, NAEVUS: unmodified // 2}
    for group, n in wanted.items():
        if dataset is not None:
            unique = [
                s
                for s in _dataset_samples(dataset)
                if study_group(s.diagnosis) == group and s.image_id not in excluded_ids
            ]
        else:
            unique = _unique_originals(originals, group, excluded_ids)
        take = min(n, len(unique))
        if take < n:
            summary["shortfalls"].append(f"unmodified {group}: {len(unique)} images available, {n} asked")
        summary["unmodified"][group] = take
        for i in sorted(rng.choice(len(unique), size=take, replace=False)):
            if dataset is not None:
                items.append(_dataset_item(unique[i], group, dataset, prep))
            else:
                items.append(_run_item(unique[i], UNMODIFIED, unique[i]["original_path"]))
    return items


def _unique_originals(
    originals: dict[tuple[str, str], dict[str, Any]], group: str, excluded_ids: set[str]
) -> list[dict[str, Any]]:
    """The runs' original images of ``group`` not in ``excluded_ids``, one per image id across runs."""
    pool = sorted(
        (r for r in originals.values() if r["_group"] == group and r["image_id"] not in excluded_ids),
        key=lambda r: (str(r["_run"]), r["image_id"]),
    )
    seen: set[str] = set()
    unique = []
    for r in pool:  # one image per image id across runs
        if r["image_id"] not in seen:
            seen.add(r["image_id"])
            unique.append(r)
    return unique


def _unmodified_source(
    runs: Sequence[str | Path], unmodified_from: str | Path | None
) -> tuple[Path | None, dict[str, Any]]:
    """Dataset for unmodified images and how the runs' model prepared its inputs (size, decoder...)."""
    info: dict[str, Any] = {}
    run_json = Path(runs[0]) / "run.json"
    if run_json.is_file():
        try:
            settings = json.loads(run_json.read_text()).get("settings", {})
        except json.JSONDecodeError as exc:
            raise DataError(f"{run_json}: invalid JSON ({exc})") from exc
        model = settings.get("model") or {}
        if model.get("input_size"):
            info = {
                "input_size": tuple(int(v) for v in model["input_size"]),
                "decoder": model.get("decoder", "pil"),
                "resize": model.get("resize", "bilinear"),
            }
        if unmodified_from is None and (settings.get("data") or {}).get("path"):
            candidate = Path(settings["data"]["path"])
            unmodified_from = candidate if candidate.exists() else None
    if unmodified_from is None:
        return None, info
    if not info:
        raise DataError(
            f"{run_json}: no model input size recorded; cannot prepare unmodified images like "
            f"the adversarial ones"
        )
    return Path(unmodified_from), info


def _dataset_samples(path: Path) -> list[Any]:
    from dermadv.data import load_dataset

    ds = load_dataset(path, verify_images=False, progress=False)
    return sorted((s for s in ds.samples if s.path is not None), key=lambda s: s.image_id)


def _dataset_item(sample: Any, group: str, dataset: Path, prep: dict[str, Any]) -> dict[str, Any]:
    """An unmodified image from a dataset, prepared like the model's input (written as PNG later)."""
    from dermadv.data.images import load_image, resize_uint8

    img = resize_uint8(load_image(sample.path, prep["decoder"]), prep["input_size"], prep["resize"])
    return {
        "_array": img,
        "_src": sample.path,
        "ground_truth": group,
        "condition": UNMODIFIED,
        "attack": "",
        "source_image_id": sample.image_id,
        "diagnosis": sample.diagnosis,
        "source": str(Path(sample.path).resolve()),
        "dataset": str(dataset.resolve()),
        "prepared": f"{prep['decoder']} decoder, {prep['resize']} resize to {prep['input_size']}",
    }


def _run_group(row: dict[str, Any]) -> str | None:
    """Ground truth of a run row: melanoma / naevus, or None for other benign diagnoses."""
    diagnosis = row.get("diagnosis")
    if diagnosis:
        return study_group(diagnosis)
    group = str(row.get("true_group") or "")
    by_group: dict[str, str] = {Group.MELANOMA: MELANOMA, Group.BENIGN: NAEVUS}
    return by_group.get(group)


def _run_item(row: dict[str, Any], condition: str, relpath: str) -> dict[str, Any]:
    run: Path = row["_run"]
    adversarial = condition == ADVERSARIAL
    return {
        "_src": run / relpath,
        "ground_truth": row["_group"],
        "condition": condition,
        "attack": row["attack"] if adversarial else "",
        "source_image_id": row["image_id"],
        "diagnosis": row.get("diagnosis") or "",
        "direction": (row.get("direction") or "") if adversarial else "",
        "initial_conf": row.get("initial_conf"),
        "final_conf": row.get("final_conf") if adversarial else "",
        "params": json.dumps(row.get("params") or {}, sort_keys=True) if adversarial else "",
        "source": str((run / relpath).resolve()),
        "initial_probs": json.dumps(row.get("initial_probs")),
        "final_probs": json.dumps(row.get("final_probs")) if adversarial else "",
        "queries": row.get("queries") if adversarial else "",
        "delta_e_mean": (row.get("_delta_e", row.get("delta_e_mean")) if adversarial else None),
        "run": str(run.resolve()),
    }
