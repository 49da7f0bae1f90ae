"""Pick the forward batch per runtime from a short measured throughput curve, cached per model and device.

On a small CPU a batch of one can be the fastest (onnxruntime ran sklesion at 17.8 images/s at batch 1
and 14.6 at batch 60 on 2 cores); on a GPU large batches win. :func:`throughput_curve` times
``predict_proba`` on copies of a real image at a few batch sizes; :func:`pick_batch` takes the
smallest batch within ``tolerance`` of the best throughput; :func:`tuned_forward_batch` does both once
per (model, device, CPU count) and caches the answer in memory and in
``$DERMADV_CACHE/throughput.json`` (default ``~/.cache/dermadv``). Attacks use it with
``batch_size="auto"`` (``dermadv attack --batch-size auto``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.fileio import atomic_write_text

SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
_MEMORY: dict[str, dict[str, Any]] = {}


def cache_file() -> Path:
    """Where measured curves are kept: $DERMADV_CACHE/throughput.json (default ~/.cache/dermadv)."""
    return Path(os.environ.get("DERMADV_CACHE") or Path.home() / ".cache" / "dermadv") / "throughput.json"


def cache_key(model: Any) -> str:
    """(model name, input size, device, CPU count): what the best batch depends on."""
    device = getattr(model, "device", None) or "cpu"
    return f"{model.name}|{tuple(model.input_size)}|{device}|cpus={os.cpu_count()}"


def throughput_curve(
    model: Any,
    image: np.ndarray,
    metadata: Any = None,
    sizes: Sequence[int] = SIZES,
    min_images: int = 8,
    repeats: int = 2,
) -> list[dict[str, float]]:
    """Images per second of ``model.predict_proba`` at each batch size (best of ``repeats``), each
    timed on at least ``min_images`` copies of ``image`` after a warm-up call."""
    rows = []
    for bs in sizes:
        n = max(int(min_images), 2 * int(bs))
        x = np.repeat(np.asarray(image, dtype=np.uint8)[None], n, axis=0)
        meta = None if metadata is None else [metadata] * n
        model.predict_proba(x[:bs], None if meta is None else meta[:bs], batch_size=bs)  # warm-up
        best = float("inf")
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            model.predict_proba(x, meta, batch_size=bs)
            best = min(best, time.perf_counter() - t0)
        rows.append({"batch_size": int(bs), "images_per_s": n / max(best, 1e-9)})
    return rows


def pick_batch(rows: Sequence[dict[str, float]], tolerance: float = 0.05) -> int:
    """The smallest batch size within ``tolerance`` of the best throughput."""
    if not rows:
        raise ValueError("pick_batch: no throughput measurements")
    top = max(r["images_per_s"] for r in rows)
    return int(min(r["batch_size"] for r in rows if r["images_per_s"] >= (1 - tolerance) * top))


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tuned_forward_batch(
    model: Any, image: np.ndarray, metadata: Any = None, sizes: Sequence[int] = SIZES, refresh: bool = False
) -> int:
    """The forward batch of best throughput for ``model`` on its device (measured once, then cached)."""
    key = cache_key(model)
    if not refresh and key in _MEMORY:
        return int(_MEMORY[key]["batch_size"])
    path = cache_file()
    cached = _read_cache(path)
    if not refresh and isinstance(cached.get(key), dict) and "batch_size" in cached[key]:
        _MEMORY[key] = cached[key]
        return int(cached[key]["batch_size"])
    rows = throughput_curve(model, image, metadata, sizes)
    entry = {
        "batch_size": pick_batch(rows),
        "curve": rows,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _MEMORY[key] = entry
    cached[key] = entry
    try:
        atomic_write_text(path, json.dumps(cached, indent=1, sort_keys=True))
    except OSError:  # a read-only home: the in-memory cache still serves this process
        pass
    return int(_MEMORY[key]["batch_size"])


def measured(model: Any) -> dict[str, Any] | None:
    """The cached measurement for ``model`` (batch_size, curve), if any (what a run reports)."""
    key = cache_key(model)
    return _MEMORY.get(key) or _read_cache(cache_file()).get(key)
