"""Images per second of an attack campaign vs the number of Ray workers, measured in one run.

    .venv/bin/python benchmarks/ray_scaling.py [--workers 1,2] [--images 8] [--arch mobilenet_v3_small]

Starts a local Ray instance with as many CPUs as the largest worker count, runs the same campaign
(real ISIC melanomas from ../shared/data/isic-dev, the black-box colour and rotation attacks) with
each worker count and once with the local executor, checks that every run stored the same rows,
and prints images/s (after the workers started, and including their start-up) and the scaling ratio
against one worker. The model is a torchvision network with random weights whose last layer is
shrunk so every image is called melanoma with P ~ 0.73 and no attack reaches the 0.99 threshold:
every job then runs its whole budget, (generations + 1) x population forward passes, so the
numbers measure the full attack cost, not luck. It also times one forward pass of Inception v3
(the study's network) to estimate the cost of one attack at the study's budget on this CPU.
Results go to benchmarks/results/ray_scaling.json.
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

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DERMADV_DATA", REPO.parent / "shared" / "data")) / "isic-dev" / "isic2019"
TIMING = ("seconds", "finished_at")


def build_model(arch: str, size: int, out: Path) -> Path:
    """A random-weight torchvision ``arch`` as a TorchScript model file that calls everything melanoma."""
    import torch
    import torchvision

    from dermadv.models.base import TorchModuleClassifier
    from dermadv.models.export import export_torchscript

    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=2).eval()
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # logits ~ (1, 0): P(melanoma) ~ 0.73 whatever the image
        last.weight.mul_(1e-3)
        last.bias.copy_(torch.tensor([1.0, 0.0]))
    clf = TorchModuleClassifier(
        net,
        ("mel", "nv"),
        (size, size),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        name=f"{arch}-random",
        device="cpu",
    )
    return export_torchscript(clf, out / f"{arch}.pt")


def rows_of(run: Path) -> list[dict[str, Any]]:
    from dermadv.campaign.store import ResultsStore

    with ResultsStore(run, create=False) as store:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in store.rows()]


def inception_forward_seconds(batch: int = 60, repeats: int = 2) -> float:
    """Seconds per image of one Inception v3 forward pass at 299 px (batch of ``batch``, 1 thread)."""
    import torch
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    x = torch.rand(batch, 3, 299, 299)
    with torch.inference_mode():
        net(x[:2])
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - t0)
    return best / batch


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--arch", default="mobilenet_v3_small")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--attacks", default="color,rotation")
    ap.add_argument("--popsize", type=int, default=10, help="DE popsize multiplier (3 x popsize candidates)")
    ap.add_argument("--max-generations", type=int, default=10)
    ap.add_argument("--no-inception", action="store_true", help="skip the Inception v3 forward timing")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ray_scaling.json")
    args = ap.parse_args(argv)

    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")  # a shared machine: others' memory use
    import ray
    import torch

    from dermadv.campaign.runner import run_campaign
    from dermadv.data import select_samples
    from dermadv.models.registry import load_model
    from dermadv.runs.executor import RayExecutor
    from dermadv.runs.specs import ModelSpec

    torch.set_num_threads(1)
    counts = [int(w) for w in args.workers.split(",")]
    attacks = args.attacks.split(",")
    options = {"popsize": args.popsize, "max_generations": args.max_generations, "threshold": 0.99}
    samples = select_samples(args.data, classes=("mel",), limit=args.images)
    result: dict[str, Any] = {
        "benchmark": "ray_scaling",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "campaign": {
            "arch": args.arch,
            "size": args.size,
            "images": len(samples),
            "attacks": attacks,
            **options,
        },
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_path = build_model(args.arch, args.size, tmp)
        model = load_model(str(model_path))
        data_info = {"path": str(args.data)}

        t0 = time.perf_counter()
        run_campaign(
            model,
            samples,
            tmp / "local",
            attacks,
            attack_options=options,
            data_info=data_info,
            progress=False,
        )
        local_s = time.perf_counter() - t0
        reference = rows_of(tmp / "local")
        per_job = float(np.median([r["queries"] for r in reference]))
        result["runs"].append(
            {
                "executor": "local",
                "workers": 1,
                "seconds": round(local_s, 3),
                "images_per_s": round(len(samples) / local_s, 4),
            }
        )
        print(
            f"local executor: {len(samples) / local_s:.3f} images/s ({local_s:.1f} s, "
            f"median {per_job:.0f} model queries per job)",
            flush=True,
        )

        ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            for n in counts:
                executor = RayExecutor(
                    ModelSpec(str(model_path)), workers=n, reference_model=model, verbose=False
                )
                run_campaign(
                    model,
                    samples,
                    tmp / f"ray{n}",
                    attacks,
                    attack_options=options,
                    data_info=data_info,
                    executor=executor,
                    progress=False,
                )
                if rows_of(tmp / f"ray{n}") != reference:
                    raise SystemExit(f"ray with {n} worker(s) stored different rows than the local executor")
                st = executor.stats()
                result["runs"].append(
                    {
                        "executor": "ray",
                        **{
                            k: st[k]
                            for k in (
                                "workers",
                                "seconds",
                                "startup_seconds",
                                "images_per_s",
                                "images_per_s_with_startup",
                                "jobs_per_s",
                            )
                        },
                        "jobs_per_worker": [w["jobs"] for w in st["per_worker"]],
                    }
                )
                print(
                    f"ray, {n} worker(s): {st['images_per_s']:.3f} images/s after start-up "
                    f"({st['images_per_s_with_startup']:.3f} including {st['startup_seconds']:.1f} s "
                    "start-up); "
                    f"jobs per worker {[w['jobs'] for w in st['per_worker']]}",
                    flush=True,
                )
        finally:
            ray.shutdown()

    ray_runs = {r["workers"]: r for r in result["runs"] if r["executor"] == "ray"}
    if 1 in ray_runs:
        base = ray_runs[1]["images_per_s"]
        result["scaling"] = {str(n): round(r["images_per_s"] / base, 3) for n, r in ray_runs.items()}
        for n, r in sorted(ray_runs.items()):
            print(f"scaling {n} worker(s) vs 1: x{r['images_per_s'] / base:.2f} (ideal x{n})")
    if not args.no_inception:
        per_image = inception_forward_seconds()
        population, forwards = 60, 21 * 60
        result["inception_v3"] = {
            "seconds_per_image_forward_1_thread": round(per_image, 5),
            "study_budget_forwards_per_attack": forwards,
            "study_budget_seconds_per_attack_1_thread": round(per_image * forwards, 1),
        }
        print(
            f"Inception v3 at 299 px: {per_image * 1e3:.1f} ms per image forward (1 CPU thread, batch "
            f"{population}); an attack at the study budget ({forwards} forwards, 20 generations x 60) "
            f"costs up to {per_image * forwards:.0f} s per image on one such CPU worker",
            flush=True,
        )
    result["machine"]["load_avg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
