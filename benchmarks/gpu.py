"""The study's campaign on one GPU: inference, attack and training throughput in ONE run, as JSON.

    .venv/bin/python benchmarks/gpu.py [--device auto] [--tiny] [--model SPEC] [--out FILE]

Meant to finish in under 5 minutes on one datacenter GPU. Measures, on the device it runs on:

1. **Inference**: Inception v3 at 299 px (random weights: speed does not depend on them), images/s at
   batch 1 to 1024, eager and ``torch.compile``d, through dermadv's own hot path
   (``TorchModuleClassifier.predict_tensor`` on uint8 images already on the device: normalisation,
   bf16 autocast, channels-last, softmax, the probabilities' copy back), beside the bare module on
   an already normalised float batch (``adapter_ratio``: ours over pure inference). FLOPs per image
   are counted by ``torch.utils.flop_counter``; achieved TFLOPS over the device's dense bf16 peak is
   the MFU (the peak comes from a table of known GPUs; unknown devices and CPUs report none).
2. **Campaign**: the study's colour, rotation and 3-pixel DE attacks (its settings: popsize 20, at
   most 20 generations, stop at P(naevus group) > 0.9) on 64 real dermoscopic images at once (the 24
   CC-0 ISIC 2017 images shipped in ``dermadv.samples``, cycled), perturbed and scored on the device.
   Reported: images/s per attack, forwards, and wall time over pure inference of the same number of
   forwards at the same batch (the attack overhead). With random weights no attack stops early, so
   this is the full-budget case; ``--model`` attacks a real model instead (its own stopping).
3. **Projection** of the study's whole campaign (4,496 validation images x 3 attacks) from the
   measured rates: at this model's measured forwards per image, and at the full budget of every
   image (no early stop).
4. **Training**: images/s of the trainer's own step (``dermadv.models.train.train_step``: SGD,
   bf16 autocast, channels-last) fed by its own loader (resized JPEG cache, augmentation, workers,
   pinned memory), and the GPU busy fraction sampled with NVML (``pip install 'dermadv[gpu]'``).

``--tiny`` runs everything at toy sizes (75 px, batches 1-2, 2 images, popsize 2, 1 generation) so the
test suite runs this script on the CPU and it cannot rot; its figures measure nothing. Results are written to
``benchmarks/results/gpu-<device>.json`` (``--out`` overrides).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOPS, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIE": 756.0,
    "GH200": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 5090": 209.5,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}
#: the study: 4,496 validation images, three DE attacks
STUDY_IMAGES, STUDY_ATTACKS = 4496, ("color", "rotation", "pixel")
#: timm's published Inception v3 inference figure on an H100-class GPU target (issue 17)
TARGET_IMG_S, TARGET_OVERHEAD, TARGET_MINUTES = 20_000, 1.10, 15.0


def peak_tflops(name: str) -> float | None:
    upper = name.upper()
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "H100 PCIE" before "H100"
        if key.upper() in upper:
            return PEAK_BF16_TFLOPS[key]
    return None


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inception(size: int, device: str, compile_: str, backend: str) -> Any:
    """Inception v3 with random weights behind dermadv's TorchModuleClassifier."""
    import torch
    import torchvision

    from dermadv.models.accel import InferenceSettings
    from dermadv.models.base import TorchModuleClassifier

    torch.manual_seed(0)
    module = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False, num_classes=2
    )
    if backend != "inductor" and compile_ == "on":  # the test suite: dynamo capture without codegen
        module = torch.compile(module, backend=backend)
        compile_ = "off"
    return TorchModuleClassifier(
        module,
        ("MEL", "NV"),
        (size, size),
        name=f"inception_v3@{size}",
        device=device,
        inference=InferenceSettings(compile=compile_),
    )


def flops_per_image(model: Any) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    h, w = model.input_size
    x = torch.zeros((1, h, w, 3), dtype=torch.uint8, device=model.device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model._eager_probs(x)
    return float(counter.get_total_flops())


def images_per_s(call: Any, batch: int, device: Any, seconds: float, min_iters: int) -> float:
    """Images/s of ``call()`` on a ``batch``-image input: two warm-up calls, then at least
    ``min_iters`` calls and ``seconds`` of them, synchronised with the device at both ends."""
    import torch

    with torch.inference_mode():
        for _ in range(2):
            call()
        sync(device)
        iters, t0 = 0, time.perf_counter()
        while iters < min_iters or time.perf_counter() - t0 < seconds:
            call()
            iters += 1
        sync(device)
    return batch * iters / (time.perf_counter() - t0)


def time_inference(model: Any, batch: int, seconds: float, min_iters: int) -> float:
    """Images/s of predict_tensor on a device-resident uint8 batch. The model's batch is set to
    ``batch`` so that CUDA graphs' static shapes pad nothing."""
    import torch

    model.batch_size = batch
    h, w = model.input_size
    gen = torch.Generator().manual_seed(batch)
    x = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=gen).to(model.device)
    return images_per_s(
        lambda: model.predict_tensor(x, batch_size=batch), batch, model.device, seconds, min_iters
    )


def time_module(model: Any, batch: int, seconds: float, min_iters: int) -> float:
    """Images/s of the bare module (through the same compile/precision/layout) on an already
    normalised float batch on the device: the floor dermadv's adapter is measured against."""
    import torch

    h, w = model.input_size
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn((batch, 3, h, w), generator=gen).to(model.device)
    x = x.contiguous(memory_format=torch.channels_last) if model.accel.resolved.channels_last else x

    def call() -> None:
        with model.accel.autocast():
            model.accel(x)

    return images_per_s(call, batch, model.device, seconds, min_iters)


def inference_section(
    args: argparse.Namespace, device: str, peak: float | None
) -> tuple[dict[str, Any], Any]:
    """The inference rows, and the compiled model (the campaign reuses it: no second compilation)."""
    rows: list[dict[str, Any]] = []
    flops = None
    model: Any = None
    for mode in ("eager", "compiled"):
        model = inception(args.size, device, "on" if mode == "compiled" else "off", args.compile_backend)
        flops = flops or flops_per_image(inception(args.size, device, "off", args.compile_backend))
        for bs in args.batches:
            try:
                rate = time_inference(model, bs, args.seconds, args.min_iters)
            except RuntimeError as exc:  # out of memory at the largest batches: say so, go on
                rows.append({"mode": mode, "batch": bs, "error": str(exc).splitlines()[0][:200]})
                _empty_cache(device)
                continue
            bare = time_module(model, bs, args.seconds, args.min_iters)
            tflops = rate * flops / 1e12
            rows.append(
                {
                    "mode": mode,
                    "batch": bs,
                    "images_per_s": round(rate, 1),
                    "module_images_per_s": round(bare, 1),
                    "adapter_ratio": round(rate / bare, 3),
                    "tflops": round(tflops, 3),
                    "mfu": None if peak is None else round(tflops / peak, 4),
                }
            )
            print(
                f"inference {mode:<8} batch {bs:>5}: {rate:10.1f} img/s ({rate / bare:5.2f}x the bare "
                f"module) {tflops:8.2f} TFLOPS"
            )
        inference_desc = model.describe()["inference"]
        if mode == "compiled" and args.compile_backend != "inductor":  # compiled before the adapter saw it
            inference_desc = {**inference_desc, "compile": f"torch.compile(backend={args.compile_backend!r})"}
        rows.append({"mode": mode, "settings": inference_desc})
    measured = [r for r in rows if "images_per_s" in r]
    best = max(measured, key=lambda r: r["images_per_s"])
    report = {
        "gflops_per_image": round((flops or 0) / 1e9, 3),
        "rows": rows,
        "best": best,
        "target_images_per_s": TARGET_IMG_S,
    }
    return report, model


def _empty_cache(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def campaign_images(n: int, size: int) -> np.ndarray:
    from dermadv import samples
    from dermadv.data.images import resize_uint8

    ds = samples.dataset()
    imgs = [resize_uint8(samples.load(s.image_id), (size, size)) for s in ds.samples]
    return np.stack([imgs[i % len(imgs)] for i in range(n)])


def campaign_section(args: argparse.Namespace, model: Any, best_rate_at: dict[int, float]) -> dict[str, Any]:
    from dermadv.attacks import ATTACKS

    images = campaign_images(args.campaign_images, model.input_size[0])
    ids = [f"img{i:03d}" for i in range(len(images))]
    rows = []
    bs = int(model.batch_size)
    pure = best_rate_at.get(bs) or time_inference(model, bs, args.seconds, args.min_iters)
    model.batch_size = bs
    # each image attacked away from the model's own call (the study attacked both directions)
    mel, ben = model.group_probs(model.predict_proba(images))
    dirs = ["mel->nv" if m > b else "nv->mel" for m, b in zip(mel, ben, strict=True)]
    for name in STUDY_ATTACKS:
        attack = ATTACKS.create(name, popsize=args.popsize, maxiter=args.maxiter, device_path="auto")
        sync(model.device)
        t0 = time.perf_counter()
        results = attack.run_many(
            model, images, image_ids=ids, direction=dirs, seeds=list(range(len(images)))
        )
        sync(model.device)
        wall = time.perf_counter() - t0
        forwards = sum(r.queries for r in results)
        attacked = [r for r in results if r.outcome != "misclassified"]
        inference_wall = forwards / pure
        rows.append(
            {
                "attack": name,
                "images": len(images),
                "attacked": len(attacked),
                "successes": sum(r.success for r in results),
                "forwards": forwards,
                "forwards_per_image": round(forwards / len(images), 1),
                "wall_s": round(wall, 3),
                "images_per_s": round(len(images) / wall, 2),
                "forwards_per_s": round(forwards / wall, 1),
                "pure_inference_wall_s": round(inference_wall, 3),
                "overhead": round(wall / inference_wall, 3),
                "device_path": attack.on_device(model),
            }
        )
        print(
            f"campaign {name:<9}: {len(images)} images in {wall:7.2f} s ({forwards} forwards, "
            f"{forwards / wall:9.1f} fwd/s; {wall / inference_wall:5.2f}x pure inference)"
        )
    return {
        "batch": bs,
        "pure_images_per_s": round(pure, 1),
        "rows": rows,
        "target_overhead": TARGET_OVERHEAD,
    }


def full_budget(attack: str) -> int:
    """Forwards per image with no early stop at the study's settings (initial + 20 generations)."""
    dims = {"color": 3, "rotation": 3, "pixel": 15}[attack]
    return 1 + max(5, 20 * dims) * 21


def projection(campaign: dict[str, Any]) -> dict[str, Any]:
    measured_s = sum(r["wall_s"] / r["images"] for r in campaign["rows"]) * STUDY_IMAGES
    rate = campaign["pure_images_per_s"]
    worst_forwards = STUDY_IMAGES * sum(full_budget(a) for a in STUDY_ATTACKS)
    overhead = max(r["overhead"] for r in campaign["rows"])
    return {
        "study_images": STUDY_IMAGES,
        "attacks": list(STUDY_ATTACKS),
        "minutes_at_measured_stopping": round(measured_s / 60, 2),
        "full_budget_forwards": worst_forwards,
        "minutes_at_full_budget": round(worst_forwards / rate * overhead / 60, 2),
        "target_minutes": TARGET_MINUTES,
        "basis": "measured campaign seconds per image x 4,496; full budget: forwards / measured pure "
        "inference rate x the largest measured attack overhead",
    }


class Busy:
    """The GPU's busy fraction over a block, sampled with NVML every 50 ms (None without NVML)."""

    def __init__(self, device: Any) -> None:
        self.samples: list[int] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._handle = None
        if device.type != "cuda":
            self.error = "not a CUDA device"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = device.index if device.index is not None else 0
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
        except Exception as exc:  # no nvidia-ml-py, or no driver access
            self.error = f"NVML unavailable ({type(exc).__name__}: {exc})"

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))

    def __enter__(self) -> Busy:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._stop.set()
            self._thread.join()

    @property
    def fraction(self) -> float | None:
        return round(float(np.mean(self.samples)) / 100, 3) if self.samples else None


def training_section(args: argparse.Namespace, device_name: str) -> dict[str, Any]:
    import torch
    import torchvision

    from dermadv import samples
    from dermadv.data.cache import ImageCache
    from dermadv.models.accel import mixed_precision_dtype
    from dermadv.models.augment import Augmentation
    from dermadv.models.checkpoint import IMAGENET_MEAN, IMAGENET_STD
    from dermadv.models.train import TrainImages, _worker_init, train_step

    device = torch.device(device_name)
    size, bs = args.size, args.train_batch
    ds = samples.dataset()
    paths = [str(s.path) for s in ds.samples]
    labels = [int(s.diagnosis == "mel") for s in ds.samples]
    with tempfile.TemporaryDirectory() as tmp:
        cache = ImageCache(Path(tmp) / "cache")
        data = TrainImages(paths, labels, cache, Augmentation(size=size), seed=0)
        cache.fill(paths, data.cache_size, max(1, args.workers), False, "cache")
        steps = args.train_steps + 2
        order = [[(int((s * bs + j) % len(paths)), s) for j in range(bs)] for s in range(steps)]
        loader = torch.utils.data.DataLoader(
            data,  # type: ignore[arg-type]
            batch_sampler=order,
            num_workers=args.workers,
            worker_init_fn=_worker_init,
            pin_memory=device.type == "cuda",
            prefetch_factor=4 if args.workers else None,
            persistent_workers=False,
        )
        torch.manual_seed(0)
        module = torchvision.models.inception_v3(
            weights=None, aux_logits=size >= 299, init_weights=False, num_classes=2
        ).to(device)
        if device.type == "cuda":
            module.to(memory_format=torch.channels_last)
        module.train()
        opt = torch.optim.SGD(module.parameters(), lr=0.001, momentum=0.9)
        amp = mixed_precision_dtype(device)  # the trainer's choice: bf16 where the GPU has it
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
        it = iter(loader)
        for _ in range(2):  # warm-up (cuDNN autotuning, worker start)
            x, y = next(it)
            train_step(module, opt, scaler, x, y, mean, std, amp, 0.4)
        sync(device)
        busy = Busy(device)
        t0 = time.perf_counter()
        with busy:
            for x, y in it:
                train_step(module, opt, scaler, x, y, mean, std, amp, 0.4)
            sync(device)
        wall = time.perf_counter() - t0
    rate = args.train_steps * bs / wall
    print(f"training: {rate:.1f} img/s at batch {bs}, GPU busy {busy.fraction}")
    return {
        "batch": bs,
        "steps": args.train_steps,
        "workers": args.workers,
        "images_per_s": round(rate, 1),
        "precision": str(amp).replace("torch.", "") if amp else "fp32",
        "gpu_busy_fraction": busy.fraction,
        "gpu_busy_note": busy.error,
        "target_busy_fraction": 0.9,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    ap.add_argument("--tiny", action="store_true", help="toy sizes for the test suite (measures nothing)")
    ap.add_argument("--model", default=None, help="a dermadv model spec to attack instead of random weights")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (tests: eager)")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny
    args.size = 75 if tiny else 299
    args.batches = [1, 2] if tiny else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    args.seconds, args.min_iters = (0.0, 1) if tiny else (1.5, 3)
    args.campaign_images = 2 if tiny else 64
    args.maxiter = 1 if tiny else 20
    args.popsize = 2 if tiny else 20
    args.train_batch, args.train_steps = (2, 2) if tiny else (128, 40)
    args.workers = 0 if tiny else min(16, os.cpu_count() or 1)
    t_start = time.perf_counter()

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    peak = peak_tflops(name) if dev.type == "cuda" else None
    print(f"device: {name} (dense bf16 peak: {peak or 'unknown'} TFLOPS)")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    inference, compiled = inference_section(args, device, peak)
    if args.model:
        from dermadv.models.registry import load_model

        model = load_model(args.model, device=device)
    else:
        model = compiled
        # the forward batch that fits the GPU's memory (a full population of many images per pass)
        model.batch_size = model._batch_size("auto") if dev.type == "cuda" else 4
    rate_at = {
        r["batch"]: r["images_per_s"]
        for r in inference["rows"]
        if r.get("mode") == "compiled" and "images_per_s" in r
    }
    campaign = campaign_section(args, model, rate_at)
    report: dict[str, Any] = {
        "tiny": tiny,
        "note": "toy sizes: the figures measure nothing" if tiny else "measured",
        "device": {
            "name": name,
            "type": dev.type,
            "peak_bf16_tflops": peak,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "model": {"spec": args.model or "inception_v3 (random weights)", "input": args.size},
        "inference": inference,
        "campaign": campaign,
        "projection": projection(campaign),
    }
    if not args.skip_training:
        report["training"] = training_section(args, device)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    p = report["projection"]
    print(
        f"study campaign projected: {p['minutes_at_measured_stopping']} min at this model's stopping, "
        f"{p['minutes_at_full_budget']} min at the full budget; whole benchmark {report['wall_s']} s"
    )
    tag = "tiny" if tiny else name.lower().replace(" ", "-")
    out = args.out or HERE / "results" / f"gpu-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=_plain) + "\n", encoding="utf-8")
    print(f"written {out}")
    return report


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


if __name__ == "__main__":
    main()
