"""Query efficiency: success rate against query budget on a real third-party model, in ONE run.

    .venv/bin/python benchmarks/query_efficiency.py [--model sklesion-onnx] [--n-images 4]
        [--budgets 25,50,100,250,1000,5000] [--pixel-budgets ...] [--families rotation,color,pixel]

On the real images the model calls correctly (melanomas of the shared HAM10000 and ISIC 2019 folders,
alternately, with P(melanoma group) > P(benign group)), per attack family (rotation/translation,
colour balance, 3 pixels):

- each dermadv search (``--search`` of the attacks: grid, random, two_stage, de; sparse_rs for pixels),
  stopping at the first candidate with P(benign group) > P(melanoma group) (``stop="success"``), one
  candidate per image per forward (``chunk=1``), the images batched together in each forward pass;
- the study's approach: ``scipy.optimize.differential_evolution`` with the study's settings (popsize 20,
  best1bin, deferred, Latin hypercube, stop when P(benign) > 0.9 after a generation), one candidate per
  forward. At budget B it is the run whose ``maxiter`` fits B: success when the fittest member after the
  last whole generation within B is a success (queries per success: that generation's end);
- peers, wrapped as each library requires and targeted at the benign class (so that they seek what
  the study counts): foolbox SpatialAttack and ART SpatialTransformation (rotation x translation grids
  sized to each budget), torchattacks OnePixel and ART PixelAttack (3 pixels; ART with its CMA-ES,
  ``es=0``), each run per budget. A peer's result counts at budget B when its returned image (rounded to
  uint8) is a success and it used at most B queries (images its model wrapper scored).

A dermadv search is an anytime search: success at budget B is its first success at query <= B (its
results record that index; it returns that candidate). Queries count every image scored, the initial
prediction included. Every attack's wall time is compared with the time spent inside the model
(``predict_proba``) for its own queries (target: at most 1.10).

Peers need ``pip install 'dermadv[bench]'`` (or their packages on PYTHONPATH); results go to
benchmarks/results/query-efficiency-<model>.json and .png.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DERMADV_DATA", REPO.parent / "shared" / "data")) / "isic-dev"
RESULTS = REPO / "benchmarks" / "results"
SHIFT = 50.0 / 299.0  # the study's largest shift, as a fraction of the image side

# (label, attack name, options) of the dermadv searches per family; all stop at the first success
DERMADV: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "rotation": [
        ("dermadv grid", "rotation", {"search": "grid", "search_options": "points=31,5,5,periodic=0"}),
        ("dermadv random", "rotation", {"search": "random"}),
        ("dermadv two_stage", "rotation", {"search": "two_stage"}),
        ("dermadv de", "rotation", {}),
    ],
    "color": [
        ("dermadv grid", "color", {"search": "grid", "search_options": "points=11"}),
        ("dermadv random", "color", {"search": "random"}),
        ("dermadv two_stage", "color", {"search": "two_stage"}),
        ("dermadv de", "color", {}),
    ],
    "pixel": [
        ("dermadv sparse_rs", "pixel", {"search": "sparse_rs"}),
        ("dermadv de", "pixel", {}),
    ],
}


# ----- bookkeeping ------------------------------------------------------------------------------
class InferenceClock:
    """Counts the images ``model.predict_proba`` scores and the time spent inside it."""

    def __init__(self, model: Any) -> None:
        self.model, self.images, self.seconds = model, 0, 0.0
        self._orig = model.predict_proba

    def __enter__(self) -> InferenceClock:
        def timed(images: Any, metadata: Any = None, batch_size: int | None = None) -> np.ndarray:
            t0 = time.perf_counter()
            out = self._orig(images, metadata, batch_size=batch_size)
            self.seconds += time.perf_counter() - t0
            self.images += len(images)
            return out

        self.model.predict_proba = timed
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.predict_proba  # back to the class method


def is_success(model: Any, probs: np.ndarray) -> np.ndarray:
    p_mel, p_ben = model.group_probs(np.atleast_2d(probs))
    return p_ben > p_mel


def judge(model: Any, image: np.ndarray, meta: Any) -> bool:
    """The returned uint8 image, scored once more (not counted): P(benign group) > P(melanoma group)."""
    probs = model.predict_proba(image[None], None if meta is None else [meta])
    return bool(is_success(model, probs)[0])


def wilson(k: int, n: int) -> tuple[float, float]:
    from dermadv.metrics import wilson_ci

    return wilson_ci(k, n) if n else (float("nan"), float("nan"))


def median_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Median with a distribution-free 95% interval from binomial order statistics (nan if empty)."""
    from scipy.stats import binom

    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    lo = int(binom.ppf(0.025, n, 0.5))
    hi = int(binom.isf(0.025, n, 0.5))
    return float(np.median(v)), float(v[max(0, lo - 1)]), float(v[min(n - 1, hi)])


def at_budgets(hits: Sequence[int | None], n: int, budgets: Sequence[int]) -> list[dict[str, Any]]:
    """Success rate (Wilson 95%) and median queries per success (95% CI) at each budget, from the
    queries each image needed to succeed (None: no success within the largest budget)."""
    rows = []
    for b in budgets:
        q = [int(h) for h in hits if h is not None and h <= b]
        lo, hi = wilson(len(q), n)
        med, mlo, mhi = median_ci(q)
        rows.append(
            {
                "budget": int(b),
                "successes": len(q),
                "attempted": n,
                "success_rate": len(q) / n if n else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
                "median_queries_success": med,
                "median_ci_low": mlo,
                "median_ci_high": mhi,
            }
        )
    return rows


# ----- images -----------------------------------------------------------------------------------
def correct_melanomas(model: Any, n: int) -> list[tuple[str, str, np.ndarray, Any]]:
    """The first ``n`` melanomas the model calls correctly, alternately from HAM10000 and ISIC 2019:
    (id, source, prepared image, metadata)."""
    from dermadv.data import select_samples

    pools = {f: iter(select_samples(DATA / f, classes=("mel",))) for f in ("ham10000", "isic2019")}
    out: list[tuple[str, str, np.ndarray, Any]] = []
    while len(out) < n and pools:
        for folder in list(pools):
            s = next(pools[folder], None)
            if s is None:
                del pools[folder]
                continue
            image = model.prepare(model.load_image(str(s.path)))[0]
            meta = s.metadata() if model.needs_metadata else None
            if is_success(model, model.predict_proba(image[None], None if meta is None else [meta]))[0]:
                continue  # already called benign: not attacked
            out.append((s.image_id, folder, image, meta))
            if len(out) == n:
                break
    return out


# ----- dermadv ----------------------------------------------------------------------------------
def run_dermadv(model: Any, images: list, attack: str, options: dict[str, Any], budget: int, bs: int) -> dict:
    from dermadv.attacks import make_attack

    a = make_attack(attack, stop="success", chunk=1, max_queries=budget, batch_size=bs, **options)
    t0 = time.perf_counter()
    with InferenceClock(model) as clock:
        results = a.run_many(
            model,
            [im for _, _, im, _ in images],
            [m for _, _, _, m in images] if model.needs_metadata else None,
            image_ids=[i for i, _, _, _ in images],
            seeds=list(range(len(images))),
        )
    wall = time.perf_counter() - t0
    rows = [
        {
            "image_id": r.image_id,
            "success": r.success,
            "queries": r.queries,
            "first_success_query": r.first_success_query,
            "stop_reason": r.params.get("stop_reason"),
        }
        for r in results
    ]
    hits = [r.first_success_query if r.success else None for r in results]
    return {"rows": rows, "hits": hits, "wall_s": wall, "inference_s": clock.seconds, "queries": clock.images}


# ----- the study's approach ---------------------------------------------------------------------
class _Budget(Exception):
    pass


def run_study(model: Any, images: list, attack: str, budget: int) -> dict:
    """scipy DE with the study's settings, one candidate per forward; success per budget as the run
    whose maxiter fits the budget (see the module docstring)."""
    from scipy.optimize import differential_evolution

    from dermadv.attacks import make_attack

    a = make_attack(attack)
    pert, opts = a.perturbation, a.options
    pop = opts.population_size(pert.dim)
    hits: list[int | None] = []
    rows = []
    t0 = time.perf_counter()
    with InferenceClock(model) as clock:
        for k, (image_id, _, image, meta) in enumerate(images):
            metas = None if meta is None else [meta]
            model.predict_proba(image[None], metas, batch_size=1)  # the initial prediction
            log: list[tuple[float, bool, float]] = []  # (energy, success, P(benign)) per candidate

            def objective(
                x: np.ndarray, image: np.ndarray = image, metas: Any = metas, log: list = log
            ) -> float:
                if 1 + len(log) >= budget:
                    raise _Budget
                probs = model.predict_proba(pert.apply(image, x[None]), metas, batch_size=1)
                p_mel, p_ben = model.group_probs(probs)
                energy = float(p_mel[0])  # the study's objective: P(melanoma)
                log.append((energy, bool(p_ben[0] > p_mel[0]), float(p_ben[0])))
                return energy

            def callback(*_: Any, log: list = log) -> bool:
                return any(
                    p > a.threshold for _, _, p in log
                )  # the study: P(benign) > 0.9 after a generation

            try:
                differential_evolution(
                    objective,
                    pert.bounds(image.shape),
                    rng=np.random.default_rng(k),
                    callback=callback,
                    **opts.scipy_kwargs(),
                )
            except _Budget:
                pass
            hit = None
            for end in range(pop, len(log) + 1, pop):  # generation boundaries within the budget
                best = min(range(end), key=lambda i: log[i][0])
                if log[best][1]:
                    hit = 1 + end
                    break
            hits.append(hit)
            rows.append({"image_id": image_id, "queries": 1 + len(log), "success_query": hit})
    wall = time.perf_counter() - t0
    return {"rows": rows, "hits": hits, "wall_s": wall, "inference_s": clock.seconds, "queries": clock.images}


# ----- peers ------------------------------------------------------------------------------------
class PeerModel:
    """The model for peer libraries: counts queries; ``meta`` is the current image's metadata."""

    def __init__(self, model: Any) -> None:
        self.model, self.queries, self.meta = model, 0, None
        h, w = model.input_size
        self.shape, self.k = (h, w), len(model.classes)
        self.target = model.benign_indices[0]

    def probs_hwc255(self, x: np.ndarray) -> np.ndarray:
        """N x H x W x 3 floats in 0..255 -> probabilities (rounded to uint8 as the model is given)."""
        u8 = np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, 255).astype(np.uint8)
        self.queries += len(u8)
        metas = None if self.meta is None else [self.meta] * len(u8)
        return self.model.predict_proba(u8, metas)

    def torch_module(self) -> Any:
        """NCHW in [0, 1] -> log-probabilities as logits (softmax gives back the probabilities)."""
        import torch

        outer = self

        class Wrapped(torch.nn.Module):
            def forward(self, x: Any) -> Any:
                p = outer.probs_hwc255(x.detach().permute(0, 2, 3, 1).cpu().numpy() * 255.0)
                return torch.log(torch.from_numpy(np.clip(p, 1e-12, 1.0)).float())

        return Wrapped().eval()

    def art_classifier(self) -> Any:
        from art.estimators.classification import BlackBoxClassifierNeuralNetwork

        h, w = self.shape
        return BlackBoxClassifierNeuralNetwork(
            self.probs_hwc255, (h, w, 3), self.k, channels_first=False, clip_values=(0, 255)
        )


def grid_for(budget: int) -> tuple[int, int]:
    """(rotations, translations per axis) of the largest Engstrom-style grid within ``budget - 1``."""
    for nt in (5, 3, 1):
        nr = (budget - 1) // (nt * nt)
        if nr >= 3 or nt == 1:
            return max(1, nr), nt
    return 1, 1


def peer_runners(pm: PeerModel, family: str) -> dict[str, Callable[[np.ndarray, int, int], np.ndarray]]:
    """name -> run(image uint8, budget, seed) -> adversarial uint8, for the installed peer libraries."""
    import torch

    out: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {}
    h, w = pm.shape
    target = torch.tensor([pm.target])
    one_hot = np.eye(pm.k, dtype=np.float32)[[pm.target]]

    def to_u8(x: Any) -> np.ndarray:
        return np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, 255).astype(np.uint8)

    def nchw01(image: np.ndarray) -> Any:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    if family == "rotation":
        try:
            import foolbox

            fmodel = foolbox.PyTorchModel(pm.torch_module(), bounds=(0, 1))

            def run_fb(image: np.ndarray, budget: int, seed: int) -> np.ndarray:
                nr, nt = grid_for(budget)
                attack = foolbox.attacks.SpatialAttack(
                    max_translation=SHIFT * h, max_rotation=180, num_translations=nt, num_rotations=nr
                )
                adv, _, _ = attack(fmodel, nchw01(image), foolbox.criteria.TargetedMisclassification(target))
                return to_u8(adv[0].permute(1, 2, 0).numpy() * 255)

            out["foolbox SpatialAttack"] = run_fb
        except ImportError:
            pass
        try:
            from art.attacks.evasion import SpatialTransformation

            art_clf = pm.art_classifier()

            def run_art_spatial(image: np.ndarray, budget: int, seed: int) -> np.ndarray:
                nr, nt = grid_for(budget)
                attack = SpatialTransformation(
                    art_clf,
                    max_translation=100 * SHIFT,
                    num_translations=nt,
                    max_rotation=180,
                    num_rotations=nr,
                    verbose=False,
                )
                return to_u8(attack.generate(image[None].astype(np.float32))[0])

            out["ART SpatialTransformation"] = run_art_spatial
        except ImportError:
            pass
    if family == "pixel":
        try:
            import torchattacks

            module = pm.torch_module()

            def run_ta(image: np.ndarray, budget: int, seed: int) -> np.ndarray:
                popsize = max(
                    15, budget - 1
                )  # one generation after the initial population fits no budget here
                steps = 0 if budget < 31 else max(0, (budget - 1) // popsize - 1)
                attack = torchattacks.OnePixel(module, pixels=3, steps=steps, popsize=popsize, inf_batch=64)
                attack.set_mode_targeted_by_label(quiet=True)
                np.random.seed(seed)
                adv = attack(nchw01(image), target)
                return to_u8(adv[0].permute(1, 2, 0).detach().numpy() * 255)

            out["torchattacks OnePixel"] = run_ta
        except ImportError:
            pass
        try:
            from art.attacks.evasion import PixelAttack

            art_clf = pm.art_classifier()

            def run_art_pixel(image: np.ndarray, budget: int, seed: int) -> np.ndarray:
                # CMA-ES (es=0): about 4 + 3 ln 15 = 12 candidates per iteration
                attack = PixelAttack(
                    art_clf, th=3, es=0, max_iter=max(1, budget // 12), targeted=True, verbose=False
                )
                np.random.seed(seed)
                return to_u8(attack.generate(image[None].astype(np.float32), y=one_hot)[0])

            out["ART PixelAttack"] = run_art_pixel
        except ImportError:
            pass
    return out


def run_peers(model: Any, images: list, family: str, budgets: Sequence[int]) -> dict[str, dict]:
    pm = PeerModel(model)
    out = {}
    for name, run in peer_runners(pm, family).items():
        per_budget = {}
        t0 = time.perf_counter()
        with InferenceClock(model) as clock:
            for b in budgets:
                rows = []
                for j, (image_id, _, image, meta) in enumerate(images):
                    pm.queries, pm.meta = 0, meta
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        try:
                            adv = run(image, b, j)
                            error = None
                        except Exception as exc:  # a peer failing on an image is recorded, not fatal
                            adv, error = image, f"{type(exc).__name__}: {exc}"
                    q = pm.queries
                    ok = error is None and judge(model, adv, meta)
                    rows.append(
                        {
                            "image_id": image_id,
                            "queries": q,
                            "success": ok,
                            "within": ok and q <= b,
                            "error": error,
                        }
                    )
                    print(f"  {family} {name} B={b} {image_id}: {q} q success={ok}", file=sys.stderr)
                per_budget[b] = rows
        wall = time.perf_counter() - t0
        summary = []
        for b in budgets:
            hits = [r["queries"] if r["within"] else None for r in per_budget[b]]
            summary.append(at_budgets(hits, len(images), [b])[0])
        out[name] = {
            "per_budget": summary,
            "rows": {str(b): per_budget[b] for b in budgets},
            "wall_s": wall,
            "inference_s": clock.seconds,
            "queries": clock.images,
        }
    return out


# ----- figure and report ------------------------------------------------------------------------
def plot(result: dict, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fams = list(result["families"])
    fig, axes = plt.subplots(1, len(fams), figsize=(4.6 * len(fams), 3.8), squeeze=False)
    for ax, fam in zip(axes[0], fams, strict=True):
        for name, m in result["families"][fam]["methods"].items():
            rows = m["per_budget"]
            b = [r["budget"] for r in rows]
            y = [r["success_rate"] for r in rows]
            style = "-" if name.startswith("dermadv") else "--" if name.startswith("study") else ":"
            line = ax.plot(b, y, style, marker="o", ms=3, label=name)[0]
            ax.fill_between(
                b,
                [r["ci_low"] for r in rows],
                [r["ci_high"] for r in rows],
                alpha=0.1,
                color=line.get_color(),
            )
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_title(f"{fam} (n={result['families'][fam]['n_images']})", fontsize=9)
        ax.set_xlabel("query budget", fontsize=8)
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("success rate, P(benign) > P(melanoma) (Wilson 95%)", fontsize=8)
    fig.suptitle(f"{result['model']['name']}: success against queries", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    from dermadv.fileio import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


def _fmt_rate(r: dict) -> str:
    if not r["attempted"]:
        return "-"
    med = r["median_queries_success"]
    mq = "-" if math.isnan(med) else f"{med:.0f}"
    return f"{r['successes']}/{r['attempted']} ({mq})"


def report(result: dict) -> str:
    lines = [
        f"model {result['model']['name']} on {result['device']}; forward batch {result['forward_batch']} "
        f"(measured: {result['throughput_note']}); images {', '.join(result['images'])}",
        "cells: successes/attempted (median queries per success) at each budget; overhead = wall / inference",
    ]
    for fam, f in result["families"].items():
        budgets = f["budgets"]
        lines.append(f"\n{fam} (n={f['n_images']}):")
        lines.append(
            f"  {'method':30}" + "".join(f"{'B=' + str(b):>14}" for b in budgets) + f"{'overhead':>10}"
        )
        for name, m in f["methods"].items():
            cells = "".join(f"{_fmt_rate(r):>14}" for r in m["per_budget"])
            oh = m.get("overhead")
            lines.append(f"  {name:30}{cells}{'-' if oh is None else f'{oh:.2f}':>10}")
    return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


# ----- main -------------------------------------------------------------------------------------
def out_path(args: argparse.Namespace) -> Path:
    return args.out or RESULTS / f"query-efficiency-{args.model.replace('/', '_')}.json"


def write_partial(args: argparse.Namespace, data: dict) -> None:
    from dermadv.fileio import atomic_write_text

    atomic_write_text(out_path(args).with_suffix(".partial.json"), json.dumps(_jsonable(data), indent=1))


def _ints(text: str) -> list[int]:
    return sorted({int(t) for t in text.split(",") if t.strip()})


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sklesion-onnx")
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument(
        "--n-pixel-images", type=int, default=None, help="images for the pixel family (default all)"
    )
    ap.add_argument("--budgets", default="25,50,100,250,1000,5000")
    ap.add_argument("--pixel-budgets", default=None, help="budgets of the pixel family (default --budgets)")
    ap.add_argument("--families", default="rotation,color,pixel")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-study", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    from dermadv.attacks.throughput import measured, tuned_forward_batch
    from dermadv.models.registry import load_model

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    model = load_model(args.model, device=args.device)
    images = correct_melanomas(model, args.n_images)
    print(f"{len(images)} correctly called melanomas: {[i for i, *_ in images]}", file=sys.stderr)
    bs = tuned_forward_batch(model, images[0][2], images[0][3], sizes=(1, 2, 4, 8))
    curve = (measured(model) or {}).get("curve", [])
    families: dict[str, Any] = {}
    for fam in [f.strip() for f in args.families.split(",") if f.strip()]:
        budgets = _ints(args.pixel_budgets if fam == "pixel" and args.pixel_budgets else args.budgets)
        imgs = images[: args.n_pixel_images] if fam == "pixel" and args.n_pixel_images else images
        top = max(budgets)
        methods: dict[str, Any] = {}
        for label, attack, options in DERMADV[fam]:
            r = run_dermadv(model, imgs, attack, options, top, bs)
            methods[label] = {**r, "per_budget": at_budgets(r["hits"], len(imgs), budgets)}
            print(f"  {fam} {label}: hits {r['hits']} ({r['wall_s']:.1f}s)", file=sys.stderr)
        if not args.no_study:
            r = run_study(model, imgs, fam, top)
            methods["study (scipy DE)"] = {**r, "per_budget": at_budgets(r["hits"], len(imgs), budgets)}
            print(f"  {fam} study: hits {r['hits']} ({r['wall_s']:.1f}s)", file=sys.stderr)
        if not args.no_peers:
            methods.update(run_peers(model, imgs, fam, budgets))
        for m in methods.values():
            m["overhead"] = m["wall_s"] / m["inference_s"] if m.get("inference_s") else None
            m.pop("hits", None)
        families[fam] = {"budgets": budgets, "n_images": len(imgs), "methods": methods}
        write_partial(args, {"families": families, "partial": True})  # a kill loses at most one family
    result = {
        "model": model.describe(),
        "device": str(getattr(model, "device", None) or "cpu"),
        "images": [f"{i} ({src})" for i, src, _, _ in images],
        "forward_batch": bs,
        "throughput": curve,
        "throughput_note": ", ".join(f"{r['batch_size']}: {r['images_per_s']:.1f}/s" for r in curve)
        or "cached",
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "families": families,
        "wall_s": time.perf_counter() - t_start,
    }
    out = out_path(args)
    from dermadv.fileio import atomic_write_text

    atomic_write_text(out, json.dumps(_jsonable(result), indent=1, default=str))
    plot(result, out.with_suffix(".png"))
    text = report(result)
    print(text)
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(f"\nwritten: {out} and {out.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
