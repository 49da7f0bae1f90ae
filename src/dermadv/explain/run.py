"""``dermadv explain``: attribution maps of data-set images or of a campaign's original/adversarial pairs.

OUT holds, per image (and, for a campaign, per attack) and method, the map as a colour PNG
(``<id>[__<attack>]__<method>[__original|__adversarial].png``: red towards melanoma, blue towards
benign, one colour scale per image pair) and as a float32 ``.npy``, and ``explain.json`` listing every
entry with its melanoma scores and files; ``dermadv report`` shows a campaign's pairs side by side.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError
from dermadv.explain import default_methods, explain, map_to_rgb
from dermadv.fileio import atomic_write_bytes, atomic_write_text, read_result

EXPLAIN_FILE = "explain.json"


def _png(arr: np.ndarray) -> bytes:
    from dermadv.campaign.store import encode_png

    return encode_png(arr, "explanation map")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.float32))
    return buf.getvalue()


def _save(out: Path, stem: str, maps: dict[str, np.ndarray]) -> dict[str, dict[str, str]]:
    """Write each map (one colour scale for the lot) as PNG and .npy; returns their names by key."""
    scale = max((float(np.abs(m).max()) for m in maps.values()), default=0.0) or 1.0
    files = {}
    for key, m in maps.items():
        name = f"{stem}__{key}" if key else stem
        atomic_write_bytes(out / f"{name}.png", _png(map_to_rgb(m, scale)))
        atomic_write_bytes(out / f"{name}.npy", _npy(m))
        files[key or "map"] = {"png": f"{name}.png", "npy": f"{name}.npy"}
    return files


def _score(model: Any, image: np.ndarray, metadata: Any) -> float:
    from dermadv.metrics import melanoma_score

    probs = model.predict_proba(image[None], metadata=None if metadata is None else [metadata])
    return float(melanoma_score(model, probs)[0])


def _write_index(
    out: Path, model: Any, methods: Sequence[str], entries: list[dict[str, Any]], source: dict[str, Any]
) -> None:
    doc = {
        "kind": "explain",
        "model": model.describe(),
        "methods": list(methods),
        "source": source,
        "entries": entries,
        "sign": "positive = towards melanoma (melanoma score / log-odds), negative = towards benign",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(out / EXPLAIN_FILE, json.dumps(doc, indent=2, default=str) + "\n")


def explain_dataset(
    model: Any,
    data: str | Path,
    ids: Sequence[str],
    out: str | Path,
    methods: Sequence[str] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Maps of the data set's images ``ids`` by ``methods`` (default: all the model allows) into ``out``."""
    from dermadv.data import load_dataset

    ds = load_dataset(data, progress=False)
    by_id = {s.image_id: s for s in ds.samples}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DataError(f"{data}: no image(s) {', '.join(missing[:5])} in this data set")
    if not ids:
        raise DataError("give the image ids to explain (--ids ID,ID,...)")
    methods = list(methods or default_methods(model))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for image_id in ids:
        s = by_id[image_id]
        meta = s.metadata() if getattr(model, "needs_metadata", False) else None
        image = model.prepare(model.load_image(str(s.path))[None])[0]
        log(f"{image_id}: {', '.join(methods)}")
        files = {
            m: _save(out, f"{image_id}__{m}", {"": explain(model, image, m, meta)})["map"] for m in methods
        }
        entries.append(
            {
                "image_id": image_id,
                "diagnosis": s.diagnosis,
                "melanoma_score": _score(model, image, meta),
                "files": files,
            }
        )
    _write_index(out, model, methods, entries, {"data": str(Path(data).resolve())})
    return out


def explain_campaign(
    model: Any,
    run: str | Path,
    out: str | Path,
    ids: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    limit: int = 4,
    log: Callable[[str], None] = lambda _m: None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Maps of a campaign's original and adversarial images (rows with both saved), side by side.

    ``options``: per method, keyword arguments for it (e.g. ``{"occlusion": {"patch": 64}}``).
    ``ids``: these images (default: up to ``limit`` rows, successes first). The model should be the
    campaign's (then the maps explain the calls the attack changed) but may be any."""
    from dermadv.campaign.store import ResultsStore
    from dermadv.vocab import Outcome

    run = Path(run)
    with ResultsStore(run, create=False) as store:
        rows = [r for r in store.rows() if r.get("adversarial_path") and r.get("original_path")]
    if attacks:
        rows = [r for r in rows if r["attack"] in attacks]
    if ids:
        unknown = sorted(set(ids) - {r["image_id"] for r in rows})
        if unknown:
            raise DataError(f"{run}: no saved adversarial image of {', '.join(unknown[:5])}")
        rows = [r for r in rows if r["image_id"] in ids]
    else:
        rows.sort(key=lambda r: (r["outcome"] != Outcome.SUCCESS, r["attack"], r["image_id"]))
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{run}: no rows with saved original and adversarial images to explain")
    methods = list(methods or default_methods(model))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    entries = []
    for r in rows:
        with Image.open(run / r["original_path"]) as a, Image.open(run / r["adversarial_path"]) as b:
            orig, adv = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
        log(f"{r['image_id']} / {r['attack']}: {', '.join(methods)}")
        files = {}
        for m in methods:
            kw = dict((options or {}).get(m, {}))
            pair = {"original": explain(model, orig, m, **kw), "adversarial": explain(model, adv, m, **kw)}
            files[m] = _save(out, f"{r['image_id']}__{r['attack']}__{m}", pair)
        entries.append(
            {
                "image_id": r["image_id"],
                "attack": r["attack"],
                "outcome": r["outcome"],
                "original": str((run / r["original_path"]).resolve()),
                "adversarial": str((run / r["adversarial_path"]).resolve()),
                "melanoma_score": {
                    "original": _score(model, orig, None),
                    "adversarial": _score(model, adv, None),
                },
                "files": files,
            }
        )
    _write_index(out, model, methods, entries, {"run": str(run.resolve())})
    return out


def read_explain(path: str | Path) -> dict[str, Any]:
    """The ``explain.json`` of an explain output folder."""
    return read_result(Path(path) / EXPLAIN_FILE, "explanations", "explain", "entries")
