"""Attack benchmark: overhead, the study's scipy approach, and peer libraries, in ONE run.

    .venv/bin/python benchmarks/attacks.py [--model cnn|sklesion|SPEC] [--n-images 8] [--quick]

Everything is measured side by side in the same process on the same model and the same real
melanoma images from ../shared/data/isic-dev (all correctly classified at the start, so every
attack has something to do):

0. throughput of plain inference (``predict_proba``) by batch size; the best batch size is used by
   our attacks below ("pick the batch size per runtime");
1. overhead = our attack's wall time / the same queries, at the same batch sizes, run as plain
   inference (target <= 1.10);
2. the study's published approach: ``scipy.optimize.differential_evolution`` scoring one candidate
   per forward pass, same popsize/maxiter/seed and ``updating="deferred"`` (our search is bit-identical
   to it, so both make the same queries and only the batching differs); target >= 2x faster;
3. peers at equal query budgets: our 3-pixel attack vs torchattacks OnePixel and ART PixelAttack;
   our rotation attack vs ART SpatialTransformation and foolbox SpatialAttack (grid searches sized
   to our budget). Success is judged the same way for all: the returned image, rounded to uint8,
   scored by the model, P(benign) > P(melanoma).

The default model ``cnn`` is a small CNN trained for a few seconds here on isic-dev images at 128 px
(a fast model is the worst case for overhead: per-query model cost is small next to ours).
Peers need ``pip install 'dermadv[bench]'``. Results go to benchmarks/results/attacks-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DERMADV_DATA", REPO.parent / "shared" / "data")) / "isic-dev"
RESULTS = REPO / "benchmarks" / "results"


# ----- setup ------------------------------------------------------------------------------------
def train_cnn(size: int = 128, n_train: int = 160, epochs: int = 4, seed: int = 0) -> Any:
    """A 4-layer CNN trained briefly on real isic2019 melanomas and naevi (white-box classifier)."""
    import torch

    from dermadv.data import select_samples
    from dermadv.data.images import load_image, resize_uint8
    from dermadv.models.base import TorchModuleClassifier

    torch.manual_seed(seed)
    samples = select_samples(DATA / "isic2019", limit=n_train)
    x = torch.from_numpy(np.stack([resize_uint8(load_image(s.path), (size, size)) for s in samples]))
    x = x.permute(0, 3, 1, 2).float()
    y = torch.tensor([0 if s.diagnosis == "mel" else 1 for s in samples])
    layers: list[Any] = []
    cin = 3
    for cout in (16, 32, 64, 64):
        layers += [
            torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(),
        ]
        cin = cout
    net = torch.nn.Sequential(
        *layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(cin, 2)
    )
    clf = TorchModuleClassifier(
        net, ("mel", "nv"), (size, size), mean=(0.5,) * 3, std=(0.25,) * 3, name=f"cnn{size}", device="cpu"
    )
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for b in range(0, len(x), 32):
            idx = perm[b : b + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(clf.torch_forward(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    acc = float(
        (clf.predict_proba(x.permute(0, 2, 3, 1).to(torch.uint8).numpy()).argmax(1) == y.numpy()).mean()
    )
    clf.train_accuracy = acc
    return clf


def build_model(spec: str, device: str | None) -> Any:
    if spec == "cnn":
        return train_cnn()
    from dermadv.models.registry import load_model

    return load_model(spec, device=device)


def correct_melanomas(model: Any, n: int) -> list[tuple[str, np.ndarray, Any]]:
    """The first ``n`` real melanomas the model classifies correctly: (id, prepared image, metadata)."""
    from dermadv.data import select_samples

    folder = "ham10000" if model.needs_metadata else "isic2019"
    out = []
    for s in select_samples(DATA / folder, classes=("mel",)):
        image = model.prepare(model.load_image(str(s.path)))[0]
        meta = s.metadata() if model.needs_metadata else None
        p_mel, p_ben = model.group_probs(model.predict_proba(image[None], None if meta is None else [meta]))
        if p_mel[0] > p_ben[0]:
            out.append((s.image_id, image, meta))
        if len(out) == n:
            return out
    raise SystemExit(f"only {len(out)} correctly classified melanomas found; lower --n-images")


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """fn(*args, **kwargs) and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def metas_for(meta: Any, n: int) -> list | None:
    return None if meta is None else [meta] * n


# ----- 0. throughput ----------------------------------------------------------------------------
def throughput(model: Any, images: list, sizes: list[int], min_images: int) -> list[dict]:
    base = np.stack([im for _, im, _ in images])
    meta = images[0][2]
    rows = []
    for bs in sizes:
        n = max(min_images, bs * 2)
        x = np.concatenate([base] * math.ceil(n / len(base)))[:n]
        model.predict_proba(x[:bs], metas_for(meta, bs), batch_size=bs)  # warm-up
        best = min(timed(model.predict_proba, x, metas_for(meta, n), batch_size=bs)[1] for _ in range(2))
        rows.append({"batch_size": bs, "images_per_s": n / best})
    return rows


def pick_batch_size(rows: list[dict]) -> int:
    """Smallest batch size within 5% of the best throughput."""
    top = max(r["images_per_s"] for r in rows)
    return min(r["batch_size"] for r in rows if r["images_per_s"] >= 0.95 * top)


# ----- 1 + 2. overhead and scipy ----------------------------------------------------------------
class Recorder:
    """Records every predict_proba call (n images, batch size) an attack makes."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, []
        self._orig = model.predict_proba

    def __enter__(self) -> Recorder:
        def rec(images: Any, metadata: Any = None, batch_size: int | None = None) -> np.ndarray:
            self.calls.append((len(images), batch_size))
            return self._orig(images, metadata, batch_size=batch_size)

        self.model.predict_proba = rec
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.predict_proba  # back to the class method


def replay(model: Any, image: np.ndarray, meta: Any, calls: list[tuple[int, int | None]]) -> float:
    """Time the same predict_proba calls (sizes, batch sizes) as plain inference."""
    biggest = max(n for n, _ in calls)
    x = np.repeat(image[None], biggest, axis=0)
    t0 = time.perf_counter()
    for n, bs in calls:
        model.predict_proba(x[:n], metas_for(meta, n), batch_size=bs)
    return time.perf_counter() - t0


def scipy_de(model: Any, attack: Any, image: np.ndarray, meta: Any, seed: int) -> dict:
    """The study's approach: scipy differential evolution, one candidate per model call."""
    from scipy.optimize import differential_evolution

    from dermadv.attacks.criteria import Misclassification

    crit = Misclassification("mel->nv", attack.threshold, attack.fitness)
    pert, opts = attack.perturbation, attack.options
    state = {"queries": 1, "stop": False}
    model.predict_proba(image[None], metas_for(meta, 1), batch_size=1)  # initial prediction, as ours

    def objective(params: np.ndarray) -> float:
        probs = model.predict_proba(pert.apply(image, params[None]), metas_for(meta, 1), batch_size=1)
        state["queries"] += 1
        if crit.should_stop(model, probs)[0]:
            state["stop"] = True
        return float(crit.fitness(model, probs)[0])

    t0 = time.perf_counter()
    res = differential_evolution(
        objective,
        pert.bounds(image.shape),
        rng=np.random.default_rng(seed),
        callback=lambda *a, **k: state["stop"],
        **opts.scipy_kwargs(),
    )
    seconds = time.perf_counter() - t0
    final = model.predict_proba(pert.apply(image, res.x[None]), metas_for(meta, 1))
    return {
        "seconds": seconds,
        "queries": state["queries"],
        "success": bool(crit.is_success(model, final)[0]),
    }


def bench_de_attacks(
    model: Any, images: list, attacks: list[str], popsize: int, maxiter: int, bs: int
) -> dict:
    from dermadv.attacks import make_attack

    out = {}
    for name in attacks:
        attack = make_attack(name, popsize=popsize, maxiter=maxiter, batch_size=bs)
        rows = []
        for k, (image_id, image, meta) in enumerate(images):
            seed = 1000 + k
            # best of 2, interleaved with plain inference: a shared CPU is noisy
            ours, plain = math.inf, math.inf
            for _ in range(2):
                with Recorder(model) as rec:
                    result, t = timed(attack.run, model, image, meta, image_id=image_id, seed=seed)
                ours = min(ours, t)
                plain = min(plain, replay(model, image, meta, rec.calls))
            sp = scipy_de(model, attack, image, meta, seed)
            rows.append(
                {
                    "image_id": image_id,
                    "ours_s": ours,
                    "plain_inference_s": plain,
                    "scipy_s": sp["seconds"],
                    "ours_queries": result.queries,
                    "scipy_queries": sp["queries"],
                    "ours_success": result.success,
                    "scipy_success": sp["success"],
                    "model_calls": len(rec.calls),
                }
            )
            print(
                f"  {name} {image_id}: ours {ours:.2f}s ({result.queries} q, {result.outcome}), plain "
                f"{plain:.2f}s, scipy {sp['seconds']:.2f}s ({sp['queries']} q)",
                file=sys.stderr,
            )
        ours_t, plain_t = sum(r["ours_s"] for r in rows), sum(r["plain_inference_s"] for r in rows)
        out[name] = {
            "popsize": popsize,
            "maxiter": maxiter,
            "population": attack.options.population_size(attack.perturbation.dim),
            "batch_size": bs,
            "overhead": ours_t / plain_t,
            "scipy_speedup_median": float(np.median([r["scipy_s"] / r["ours_s"] for r in rows])),
            "scipy_speedup_total": sum(r["scipy_s"] for r in rows) / ours_t,
            "ours_s_per_image": ours_t / len(rows),
            "scipy_s_per_image": sum(r["scipy_s"] for r in rows) / len(rows),
            "same_queries": all(r["ours_queries"] == r["scipy_queries"] for r in rows),
            "same_outcomes": all(r["ours_success"] == r["scipy_success"] for r in rows),
            "images": rows,
        }
    return out


# ----- 3. peers ---------------------------------------------------------------------------------
def _torch_modules(model: Any, counter: list[int]) -> tuple[Any, Any]:
    import torch

    class Unit01(torch.nn.Module):  # NCHW in [0, 1] -> logits (torchattacks, foolbox)
        def forward(self, x: Any) -> Any:
            counter[0] += len(x)
            return model.torch_forward(x * 255.0)

    class HWC255(torch.nn.Module):  # NHWC in 0..255 -> logits (ART: channels last avoids its shift bug)
        def forward(self, x: Any) -> Any:
            counter[0] += len(x)
            return model.torch_forward(x.permute(0, 3, 1, 2))

    return Unit01(), HWC255()


def _judge(model: Any, adv_uint8: np.ndarray, meta: Any) -> bool:
    p_mel, p_ben = model.group_probs(model.predict_proba(adv_uint8[None], metas_for(meta, 1)))
    return bool(p_ben[0] > p_mel[0])


def _to_uint8(x: Any) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, 255).astype(np.uint8)


def bench_peers(
    model: Any,
    images: list,
    popsize_pixel: int,
    maxiter: int,
    popsize_rot: int,
    bs: int,
    grid: tuple[int, int],
) -> dict:
    import torch

    from dermadv.attacks import make_attack

    if not getattr(model, "white_box", False) or any(m is not None for _, _, m in images):
        return {"skipped": "peers need a torch model without metadata"}
    counter = [0]
    unit01, hwc255 = _torch_modules(model, counter)
    unit01.eval(), hwc255.eval()
    h, w = model.input_size
    k = len(model.classes)
    runners: dict[str, dict[str, Callable[[np.ndarray, str, int], tuple[np.ndarray, int]]]] = {
        "pixel": {},
        "rotation": {},
    }

    def ours(name: str, popsize: int, threshold: float = 0.9) -> Callable:
        attack = make_attack(name, popsize=popsize, maxiter=maxiter, batch_size=bs, threshold=threshold)

        def run(image: np.ndarray, image_id: str, seed: int) -> tuple[np.ndarray, int]:
            r = attack.run(model, image, None, image_id=image_id, seed=seed)
            return r.adversarial, r.queries

        return run

    # the study's stop (P(benign) > 0.9) searches on after the first misclassification; peers stop at
    # the first one, so "stop at first success" (threshold 0.5) is the like-for-like query count
    runners["pixel"]["dermadv"] = ours("pixel", popsize_pixel)
    runners["pixel"]["dermadv, stop at first success"] = ours("pixel", popsize_pixel, 0.5)
    runners["rotation"]["dermadv"] = ours("rotation", popsize_rot)
    runners["rotation"]["dermadv, stop at first success"] = ours("rotation", popsize_rot, 0.5)
    label_mel = torch.tensor([model.melanoma_indices[0]])
    try:
        import torchattacks

        ta = torchattacks.OnePixel(unit01, pixels=3, steps=maxiter, popsize=popsize_pixel * 15, inf_batch=bs)

        def run_ta(image: np.ndarray, image_id: str, seed: int) -> tuple[np.ndarray, int]:
            np.random.seed(seed)
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            adv = ta(x, label_mel)
            return _to_uint8(adv[0].permute(1, 2, 0).detach().numpy() * 255), 0

        runners["pixel"]["torchattacks OnePixel"] = run_ta
    except ImportError:
        pass
    try:
        from art.attacks.evasion import PixelAttack, SpatialTransformation
        from art.estimators.classification import PyTorchClassifier

        art_clf = PyTorchClassifier(
            hwc255,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=(h, w, 3),
            nb_classes=k,
            clip_values=(0, 255),
            channels_first=False,
        )
        # ART's population is fixed at 400 // 15 * 15 = 390: give it as many generations as match our budget
        art_iter = max(0, round(popsize_pixel * 15 * (maxiter + 1) / 390) - 1)
        art_pixel = PixelAttack(art_clf, th=3, es=1, max_iter=art_iter, targeted=False, verbose=False)

        def run_art_pixel(image: np.ndarray, image_id: str, seed: int) -> tuple[np.ndarray, int]:
            np.random.seed(seed)
            # y=None: untargeted against the model's own prediction (melanoma: images start correct)
            return _to_uint8(art_pixel.generate(image[None].astype(np.float32))[0]), 0

        runners["pixel"]["ART PixelAttack"] = run_art_pixel

        def run_art_spatial(image: np.ndarray, image_id: str, seed: int) -> tuple[np.ndarray, int]:
            # a fresh attack per image: generate() keeps the first call's best transform for later calls
            art_spatial = SpatialTransformation(
                art_clf,
                max_translation=100 * 50 / 299,
                num_translations=grid[1],
                max_rotation=180,
                num_rotations=grid[0],
                verbose=False,
            )
            return _to_uint8(art_spatial.generate(image[None].astype(np.float32))[0]), 0

        runners["rotation"]["ART SpatialTransformation"] = run_art_spatial
    except ImportError:
        pass
    try:
        import foolbox

        fmodel = foolbox.PyTorchModel(unit01, bounds=(0, 1))
        fb_spatial = foolbox.attacks.SpatialAttack(
            max_translation=50 / 299 * h,
            max_rotation=180,
            num_translations=grid[1],
            num_rotations=grid[0],
            grid_search=True,
        )

        def run_fb(image: np.ndarray, image_id: str, seed: int) -> tuple[np.ndarray, int]:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            adv, _, _ = fb_spatial(fmodel, x, foolbox.criteria.Misclassification(label_mel))
            return _to_uint8(adv[0].permute(1, 2, 0).numpy() * 255), 0

        runners["rotation"]["foolbox SpatialAttack"] = run_fb
    except ImportError:
        pass

    out: dict[str, Any] = {
        "budget": {
            "pixel": 1 + popsize_pixel * 15 * (maxiter + 1),
            "rotation": 1 + max(5, popsize_rot * 3) * (maxiter + 1),
            "rotation_grid": grid[0] * grid[1] ** 2,
        }
    }
    for family, impls in runners.items():
        for impl, run in impls.items():
            rows = []
            for j, (image_id, image, _) in enumerate(images):
                counter[0] = 0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    (adv, q), sec = timed(run, image, image_id, 2000 + j)
                queries = q or counter[0]
                rows.append(
                    {
                        "image_id": image_id,
                        "seconds": sec,
                        "queries": queries,
                        "success": _judge(model, adv, None),
                    }
                )
                print(
                    f"  {family} {impl} {image_id}: {sec:.2f}s {queries} q success={rows[-1]['success']}",
                    file=sys.stderr,
                )
            succ = [r for r in rows if r["success"]]
            out[f"{family}: {impl}"] = {
                "seconds_per_image": sum(r["seconds"] for r in rows) / len(rows),
                "success_rate": len(succ) / len(rows),
                "median_queries_success": float(np.median([r["queries"] for r in succ])) if succ else None,
                "median_queries": float(np.median([r["queries"] for r in rows])),
                "images": rows,
            }
    return out


# ----- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="cnn", help="cnn (trained here), sklesion, or any dermadv model spec")
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="small budgets (popsize 3, 5 generations)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-sizes", default=None, help="batch sizes to time (default 1,2,4,...,128[,256])")
    ap.add_argument("--attacks", default="pixel,color,rotation", help="black-box attacks for parts 1-2")
    ap.add_argument("--no-peers", action="store_true", help="skip part 3 (peer libraries)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared CPU)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        popsize, maxiter, pop_pixel_peer, pop_rot_peer, grid = 3, 5, 4, 10, (9, 4)
    else:
        popsize, maxiter, pop_pixel_peer, pop_rot_peer, grid = 10, 10, 26, 20, (21, 5)
    t_start = time.perf_counter()
    model, t_model = timed(build_model, args.model, args.device)
    print(f"model {model.name}: input {model.input_size}, setup {t_model:.1f}s", file=sys.stderr)
    images = correct_melanomas(model, args.n_images)
    sizes = [1, 2, 4, 8, 16, 32, 64, 128] + ([] if args.quick else [256])
    if args.batch_sizes:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
    tp = throughput(
        model, images, sizes, min_images=16 if args.model == "sklesion" else 64 if args.quick else 256
    )
    bs = pick_batch_size(tp)
    print(
        "throughput (images/s) by batch size: "
        + ", ".join(f"{r['batch_size']}: {r['images_per_s']:.0f}" for r in tp)
        + f" -> batch size {bs}",
        file=sys.stderr,
    )
    de = bench_de_attacks(model, images, args.attacks.split(","), popsize, maxiter, bs)
    peers = (
        {} if args.no_peers else bench_peers(model, images, pop_pixel_peer, maxiter, pop_rot_peer, bs, grid)
    )
    result = {
        "model": model.describe(),
        "train_accuracy": getattr(model, "train_accuracy", None),
        "images": [i for i, _, _ in images],
        "quick": args.quick,
        "device": str(getattr(model, "device", "cpu")),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "throughput": tp,
        "batch_size": bs,
        "de_attacks": de,
        "peers": peers,
        "wall_s": time.perf_counter() - t_start,
    }
    out = args.out or RESULTS / f"attacks-{args.model.replace('/', '_')}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, out)
    print_report(result)
    print(f"\nwritten: {out}")
    return result


def print_report(r: dict) -> None:
    print(
        f"model {r['model']['name']} {r['model']['input_size']} on {r['device']} "
        f"({r['torch_threads']} threads, load avg {r['load_average'][0]:.1f}); "
        f"{len(r['images'])} correctly classified melanomas"
    )
    print(
        "plain inference, images/s by batch size: "
        + ", ".join(f"{t['batch_size']}:{t['images_per_s']:.0f}" for t in r["throughput"])
        + f"  -> batch size {r['batch_size']}"
    )
    print(
        f"\n{'attack':9} {'pop':>4} {'overhead':>9} {'ours s/img':>11} {'scipy s/img':>12} {'speedup':>8} "
        f"{'same queries':>13}"
    )
    for name, d in r["de_attacks"].items():
        print(
            f"{name:9} {d['population']:>4} {d['overhead']:>9.3f} {d['ours_s_per_image']:>11.3f} "
            f"{d['scipy_s_per_image']:>12.3f} {d['scipy_speedup_median']:>7.1f}x {str(d['same_queries']):>13}"
        )
    peers = r["peers"]
    if "skipped" in peers:
        print(f"\npeers skipped: {peers['skipped']}")
        return
    if peers:
        b = peers["budget"]
        print(
            f"\npeers at equal budgets (pixel {b['pixel']} queries; rotation {b['rotation']} DE queries vs "
            f"grid {b['rotation_grid']})"
        )
        print(f"{'attack':40} {'s/img':>8} {'success':>8} {'med.queries(succ)':>18}")
        for name, d in peers.items():
            if name == "budget":
                continue
            mq = "-" if d["median_queries_success"] is None else f"{d['median_queries_success']:.0f}"
            print(f"{name:40} {d['seconds_per_image']:>8.2f} {100 * d['success_rate']:>7.0f}% {mq:>18}")


if __name__ == "__main__":
    main()
