"""Images/second of each model adapter, several batch sizes, same images, one run.

    .venv/bin/python benchmarks/adapters.py [--n 64] [--batch-sizes 1,8,32] [--arch resnet18]

Adapters: a torchvision network as a torch module (what a dermadv checkpoint loads to), the same network
as TorchScript and as ONNX (onnxruntime), and the real third-party model sklesion run by Keras 3 on
PyTorch and by onnxruntime from its ONNX export. Images are real HAM10000 images from
../shared/data/isic-dev (DERMADV_DATA overrides), already resized to each model's input size so only
inference is timed. Prints a table and the onnx/keras ratio for sklesion; writes JSON to
benchmarks/results/. Ratios are the meaningful output: absolute figures depend on the machine's load.
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
DATA = Path(os.environ.get("DERMADV_DATA", HERE.parent.parent / "shared" / "data")) / "isic-dev" / "ham10000"


def load_images(n: int) -> tuple[list[Path], list[dict[str, Any]]]:
    """The first n HAM10000 images (by id) with their metadata."""
    import csv

    with open(DATA / "HAM10000_metadata.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["image_id"])[:n]
    if len(rows) < n:
        sys.exit(f"only {len(rows)} images in {DATA}; lower --n")
    paths = [DATA / "images" / f"{r['image_id']}.jpg" for r in rows]
    meta = [
        {"age": float(r["age"]) if r["age"] else None, "sex": r["sex"], "site": r["localization"]}
        for r in rows
    ]
    return paths, meta


def prepared(model: Any, paths: list[Path]) -> np.ndarray:
    """The images decoded with the model's decoder and resized to its input size (not timed)."""
    return model.prepare([model.load_image(p) for p in paths])


def time_point(model: Any, batch: np.ndarray, meta: list[dict[str, Any]] | None, bs: int) -> float:
    """Images/second of one predict_proba pass over ``batch`` at batch size ``bs``."""
    t0 = time.perf_counter()
    model.predict_proba(batch, meta, batch_size=bs)
    return len(batch) / (time.perf_counter() - t0)


def measure(models: list[tuple[Any, np.ndarray, Any]], batch_sizes: list[int], repeats: int) -> dict:
    """Round-robin over (repeat, batch size, model) so load changes hit every adapter alike; best kept."""
    for model, batch, meta in models:  # warm-up: allocations, lazy initialisation
        model.predict_proba(batch[: max(batch_sizes)], None if meta is None else meta[: max(batch_sizes)])
    results: dict[str, dict[int, float]] = {m.name: {} for m, _, _ in models}
    for r in range(repeats):
        for bs in batch_sizes:
            for model, batch, meta in models:
                ips = time_point(model, batch, meta, bs)
                results[model.name][bs] = max(results[model.name].get(bs, 0.0), ips)
                print(
                    f"  round {r + 1} {model.name:<22} batch {bs:>3}: {ips:8.2f} images/s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="images per measurement (default 64)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated (default 1,8,32)")
    parser.add_argument("--arch", default="resnet18", help="torchvision network for the torch adapters")
    parser.add_argument("--size", type=int, default=224, help="input size of the torch network")
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds over all points, best kept (default 2)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--skip-sklesion", action="store_true", help="only the torch adapters")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON result")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    import torch
    import torchvision

    from dermadv.models.base import TorchModuleClassifier
    from dermadv.models.export import export_onnx, export_torchscript
    from dermadv.models.onnx_adapter import default_threads
    from dermadv.models.registry import load_model

    paths, meta = load_images(args.n)
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    models = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        net = getattr(torchvision.models, args.arch)(weights=None, num_classes=2)
        torch_model = TorchModuleClassifier(
            net, ("mel", "nv"), (args.size, args.size), name=f"{args.arch}-torch", device="cpu"
        )
        ts = load_model(str(export_torchscript(torch_model, Path(tmp) / "m.ts")))
        ts.name = f"{args.arch}-torchscript"
        onnx_model = load_model(str(export_onnx(torch_model, Path(tmp) / "m.onnx")), threads=threads)
        onnx_model.name = f"{args.arch}-onnx"
        models += [(m, prepared(m, paths), None) for m in (torch_model, ts, onnx_model)]
        if not args.skip_sklesion:
            for name in ("sklesion", "sklesion-onnx"):  # sklesion-onnx: exported once, cached
                model = load_model(name, **({"threads": threads} if name.endswith("onnx") else {}))
                models.append((model, prepared(model, paths), meta))
        results = measure(models, batch_sizes, args.repeats)

    header = "adapter".ljust(24) + "".join(f"bs={bs:<6}" for bs in batch_sizes) + "best bs"
    print(header)
    for name, row in results.items():
        best = max(row, key=row.get)
        print(name.ljust(24) + "".join(f"{row[bs]:<9.2f}" for bs in batch_sizes) + str(best))
    ratios = {}
    if "sklesion" in results:
        ratios = {bs: results["sklesion-onnx"][bs] / results["sklesion"][bs] for bs in batch_sizes}
        print(
            "sklesion onnx/keras speed ratio: " + ", ".join(f"bs={bs}: {r:.2f}x" for bs, r in ratios.items())
        )
    torch_ratios = {
        bs: results[f"{args.arch}-onnx"][bs] / results[f"{args.arch}-torch"][bs] for bs in batch_sizes
    }
    print(
        f"{args.arch} onnx/torch speed ratio: "
        + ", ".join(f"bs={bs}: {r:.2f}x" for bs, r in torch_ratios.items())
    )

    import onnxruntime

    keras = sys.modules.get("keras")  # imported (on the torch backend) by the sklesion adapter if it ran

    record = {
        "benchmark": "adapters",
        "unit": "images/second",
        "n_images": args.n,
        "batch_sizes": batch_sizes,
        "images": str(DATA),
        "results": results,
        "best_batch_size": {k: max(v, key=v.get) for k, v in results.items()},
        "sklesion_onnx_over_keras": ratios,
        "torch_onnx_over_torch": torch_ratios,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": threads,
            "load_average": os.getloadavg(),
            "cuda": torch.cuda.is_available(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "keras": getattr(keras, "__version__", None),
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"adapters-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    tmp_file = target.with_suffix(".json.tmp")
    tmp_file.write_text(json.dumps(record, indent=2))
    os.replace(tmp_file, target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
