"""Robustness-run throughput against pure inference, in ONE run, on the same model and images.

    .venv/bin/python benchmarks/robustness.py [--model cnn|sklesion-onnx|SPEC] [--n-images 16]
        [--samples 32] [--transforms color,rotation,gaussian_blur,jpeg] [--batch-size B]

For each transform: the work units of a robustness run (:class:`dermadv.robustness.run.RobustnessUnit`:
draws, perturbation, scoring, sequential stopping switched off so every image makes ``--samples``
draws) run on a LocalExecutor, and their model forwards per second are compared with plain
``predict_proba`` over the same number of (already perturbed) images at the same batch size. The ratio
is the meaningful output (target >= 0.95): absolute figures depend on the machine's load. The whole
``run_robustness`` (summary statistics, CSV/JSON, figures) is timed too and reported beside it.
Also reported: each transform's own cost in ms per image. Real images from ../shared/data/isic-dev
(DERMADV_DATA overrides). Results: benchmarks/results/robustness-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("DERMADV_DATA", HERE.parent.parent / "shared" / "data")) / "isic-dev"


def build_model(spec: str) -> Any:
    if spec == "cnn":
        sys.path.insert(0, str(HERE))
        from attacks import train_cnn  # the benchmark suite's small CNN, trained here in seconds

        return train_cnn()
    from dermadv.models.registry import load_model

    return load_model(spec)


def pick_samples(model: Any, n: int) -> list[Any]:
    from dermadv.data import select_samples

    folder = "ham10000" if getattr(model, "needs_metadata", False) else "isic2019"
    samples = select_samples(DATA / folder, classes=("mel", "nv"))
    if len(samples) < n:
        raise SystemExit(f"only {len(samples)} images in {DATA / folder}; lower --n-images")
    return samples[:n]


def pure_inference(model: Any, images: np.ndarray, meta: list[Any] | None, bs: int) -> float:
    """Forwards per second of predict_proba over ``images`` at batch size ``bs`` (best of two)."""
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        model.predict_proba(images, metadata=meta, batch_size=bs)
        best = max(best, len(images) / (time.perf_counter() - t0))
    return best


def measure_transform(model: Any, samples: list[Any], name: str, n_samples: int, bs: int) -> dict[str, Any]:
    from dermadv.robustness.run import RobustnessUnit, StopRule, TransformKey, _plan
    from dermadv.runs.executor import LocalExecutor

    stop = StopRule(samples=n_samples, check_every=n_samples, enabled=False)
    key = TransformKey(name)
    executor = LocalExecutor(model)
    state = executor.state
    images = [state.prepared(s) for s in samples]  # decoded once, as in a run (not timed)
    meta = [s.metadata() for s in samples] if getattr(model, "needs_metadata", False) else None
    # the same perturbed images, made ahead and not timed, for the pure-inference reference
    perturbed, metas, t_apply = [], [], 0.0
    for i, (s, img) in enumerate(zip(samples, images, strict=True)):
        transform, params = _plan(key, s.image_id, img.shape, stop, "sobol", 0)
        t0 = time.perf_counter()
        perturbed.append(transform.with_decoder(getattr(model, "decoder", "pil")).apply(img, params))
        t_apply += time.perf_counter() - t0
        if meta is not None:
            metas += [meta[i]] * len(params)
    batch = np.concatenate([np.stack(images), *perturbed])
    pure = pure_inference(model, batch, None if meta is None else list(meta) + metas, bs)
    units = [
        RobustnessUnit(key, tuple(samples[i : i + 8]), stop, batch_size=bs) for i in range(0, len(samples), 8)
    ]
    best = 0.0
    forwards = 0
    for _ in range(2):
        t0 = time.perf_counter()
        rows = [r for _, result in executor.run(units) for r in result]
        wall = time.perf_counter() - t0
        forwards = sum(r["forwards"] for r in rows)
        best = max(best, forwards / wall)
    return {
        "transform": name,
        "forwards": forwards,
        "run_forwards_per_s": round(best, 2),
        "pure_forwards_per_s": round(pure, 2),
        "ratio": round(best / pure, 3),
        "transform_ms_per_image": round(1000 * t_apply / (len(samples) * n_samples), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", default="cnn", help="cnn (trained here), sklesion-onnx, or any dermadv model spec"
    )
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--samples", type=int, default=32, help="draws per image and transform")
    ap.add_argument("--transforms", default="color,rotation,gaussian_blur,jpeg")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the model's own")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from dermadv.robustness.run import StopRule, parse_transforms, run_robustness

    model = build_model(args.model)
    bs = int(args.batch_size or getattr(model, "batch_size", 32) or 32)
    samples = pick_samples(model, args.n_images)
    rows = [measure_transform(model, samples, t, args.samples, bs) for t in args.transforms.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run_robustness(
            model,
            samples,
            Path(tmp) / "run",
            parse_transforms(args.transforms),
            stop=StopRule(samples=args.samples, enabled=False),
            batch_size=bs,
            progress=False,
        )
        full_wall = time.perf_counter() - t0
    full = {
        "forwards": result.summary["forwards"],
        "wall_s": round(full_wall, 2),
        "forwards_per_s": round(result.summary["forwards"] / full_wall, 2),
    }
    report = {
        "model": model.describe().get("name"),
        "batch_size": bs,
        "n_images": len(samples),
        "samples": args.samples,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "rows": rows,
        "full_run": full,
        "target_ratio": 0.95,
    }
    print(f"{'transform':<16} {'run fwd/s':>10} {'pure fwd/s':>10} {'ratio':>6} {'transform ms/img':>16}")
    for r in rows:
        print(
            f"{r['transform']:<16} {r['run_forwards_per_s']:>10.1f} {r['pure_forwards_per_s']:>10.1f} "
            f"{r['ratio']:>6.3f} {r['transform_ms_per_image']:>16.3f}"
        )
    print(f"whole run_robustness (summary, files, figures included): {full['forwards_per_s']:.1f} fwd/s")
    out = args.out or HERE / "results" / f"robustness-{args.model.replace(':', '_').replace('/', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {out}")
    return report


if __name__ == "__main__":
    main()
