"""``dermadv demo``: the whole study in one command, offline, on a laptop CPU.

Steps (each resumable through the library it calls; rerunning the same command skips finished work):

1. data: ``--data`` (or ``$DERMADV_DEMO_DATA``), else a procedurally generated SYNTHETIC set
   (:mod:`dermadv.synthetic`) -- not dermoscopy, and every output says so;
2. a stratified, lesion-grouped split (:func:`dermadv.data.make_split`);
3. a small classifier trained from scratch (:func:`dermadv.models.train.train`; small architecture,
   low resolution, few epochs, no pretrained weights: nothing is downloaded);
4. its evaluation on the validation set (:mod:`dermadv.evaluate`);
5. the systematic perturbation sweep (:func:`dermadv.perturb.sweep.run_sweep`);
6. every attack on a handful of validation melanomas, small budget
   (:func:`dermadv.campaign.runner.run_campaign`);
7. the third-party ``sklesion`` model, when that package is installed, evaluated and attacked on REAL
   dermoscopy: the 24 ISIC 2017 (CC-0) images shipped as :mod:`dermadv.samples` (with ``--data``: on
   the validation images of that data set instead);
8. one self-contained HTML report (:func:`dermadv.report.html.build_report`).

The study's protocol at full scale (Inception v3 at 299 px, ImageNet weights, whole ISIC 2019) is in
``examples/``; the demo shows the same pipeline small enough to finish in minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dermadv.errors import DataError, DermadvError
from dermadv.fileio import atomic_write_json

DEMO_DATA_ENV = "DERMADV_DEMO_DATA"
SIZES: tuple[str, ...] = ("small", "full")
ISIC_HINT = (
    "To run it on real dermoscopic images: dermadv demo --data /path/to/ISIC_2019 (the folder holding "
    "ISIC_2019_Training_GroundTruth.csv and the images; download from "
    "https://challenge.isic-archive.com/data/ or with the `isic` CLI), or on the development images: "
    "dermadv demo --data ../shared/data/isic-dev/isic2019. The study's full protocol is in examples/."
)


@dataclass(frozen=True)
class DemoPlan:
    """How big each step is."""

    n_per_class: int  # synthetic images per class, or real images per class used from --data
    image_px: int  # synthetic image size
    arch: str
    input_size: int
    epochs: int
    batch_size: int
    lr: float
    lr_schedule: str
    val_fraction: float
    perturbations: str
    attack_images: int
    popsize: int
    max_generations: int
    eps: tuple[float, ...]
    sklesion_images: int
    sklesion_attacks: tuple[str, ...]
    sklesion_popsize: int
    sklesion_generations: int
    explain_rows: int = 1  # attacked image pairs explained per model
    sklesion_patch: int = 0  # occlusion patch for sklesion (0: a third of its input side)
    transfer_keras: bool = True  # also score sklesion-onnx's adversarial images on the Keras model


PLANS: dict[str, DemoPlan] = {
    "small": DemoPlan(
        n_per_class=40,
        image_px=128,
        arch="resnet18",
        input_size=48,
        epochs=4,
        batch_size=16,
        lr=0.01,
        lr_schedule="cosine",
        val_fraction=0.3,
        perturbations="study,hue:0.05,blur:1.5,jpeg:75,decoder:other",
        attack_images=2,
        popsize=1,
        max_generations=3,
        eps=(2.0, 8.0),
        sklesion_images=1,
        sklesion_attacks=("color",),
        sklesion_popsize=2,
        sklesion_generations=1,
        transfer_keras=False,
    ),
    "full": DemoPlan(
        n_per_class=100,
        image_px=128,
        arch="resnet18",
        input_size=64,
        epochs=8,
        batch_size=16,
        lr=0.01,
        lr_schedule="cosine",
        val_fraction=0.25,
        perturbations="study,hue:0.05,blur:1.5,jpeg:75,brightness:1.2,decoder:other",
        attack_images=8,
        popsize=8,
        max_generations=15,
        eps=(1.0, 2.0, 4.0, 8.0),
        sklesion_images=4,
        sklesion_attacks=("color", "rotation"),
        sklesion_popsize=3,
        sklesion_generations=3,
        explain_rows=2,
    ),
}


@dataclass
class DemoResult:
    """What the demo did and where everything lies."""

    out: Path
    report: Path
    data: Path
    synthetic: bool
    size: str
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return round(sum(self.steps.values()), 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(out=str(self.out), report=str(self.report), data=str(self.data), seconds=self.seconds)
        return d


def _resolve_data(
    data: str | Path | None, out: Path, plan: DemoPlan, log: Callable[[str], None]
) -> tuple[Path, bool]:
    from dermadv.synthetic import generate_dataset, is_synthetic

    if data is None and os.environ.get(DEMO_DATA_ENV):
        data = os.environ[DEMO_DATA_ENV]
        log(f"using ${DEMO_DATA_ENV}={data}")
    if data is not None:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"{path}: demo data not found (give a dataset folder or its label CSV)")
        return path, is_synthetic(path)
    root = out / "synthetic-data"
    marker = root / "SYNTHETIC_DATA.txt"
    if not marker.exists():
        log(f"no --data given: generating {2 * plan.n_per_class} SYNTHETIC lesion images in {root}")
        generate_dataset(root, plan.n_per_class, plan.n_per_class, size=plan.image_px, seed=0)
    else:
        log(f"no --data given: reusing the SYNTHETIC images in {root}")
    return root, True


def _make_split(data: Path, out: Path, plan: DemoPlan, log: Callable[[str], None]) -> Path:
    """A split over at most ``n_per_class`` melanomas and naevi of ``data`` (all, when synthetic)."""
    from dermadv.data import Dataset, load_dataset, make_split, select_samples

    split_csv = out / "split.csv"
    if split_csv.exists():
        log(f"reusing split {split_csv}")
        return split_csv
    ds = load_dataset(data, progress=False)
    subset = select_samples(ds, classes=("mel", "nv"), limit=2 * plan.n_per_class)
    small = Dataset(
        root=ds.root,
        layout=ds.layout,
        samples=subset,
        csv_path=ds.csv_path,
        metadata_paths=ds.metadata_paths,
        image_dirs=ds.image_dirs,
    )
    split = make_split(small, val_fraction=plan.val_fraction, seed=0)
    split.write(split_csv)
    counts = split.counts()
    log(
        f"   {len(subset)} images -> "
        + "; ".join(f"{sub}: " + ", ".join(f"{n} {d}" for d, n in c.items()) for sub, c in counts.items())
    )
    return split_csv


def _pick_melanomas(eval_dir: Path, samples: list[Any], k: int) -> list[Any]:
    """Up to k validation melanomas: those the model got right first (the study attacks only those),
    least confident first."""
    import csv

    scores: dict[str, float] = {}
    pred = eval_dir / "predictions.csv"
    if pred.exists():
        with pred.open(newline="") as fh:
            scores = {r["image_id"]: float(r["melanoma_score"]) for r in csv.DictReader(fh)}
    mels = [s for s in samples if s.diagnosis == "mel"]
    # correctly classified first, least confident first: the study attacks correctly classified
    # melanomas, and a small search budget shows more on those nearer the decision threshold
    mels.sort(key=lambda s: (scores.get(s.image_id, 0.0) < 0.5, scores.get(s.image_id, 0.0), s.image_id))
    return mels[:k]


def _load_sklesion(log: Callable[[str], None]) -> Any:
    """sklesion through its ONNX export (cached; about 5x faster on a CPU), else through Keras."""
    from dermadv.models.registry import load_model

    try:
        return load_model("sklesion-onnx")
    except DermadvError as exc:
        log(f"   sklesion-onnx unavailable ({exc}); using the Keras model")
        return load_model("sklesion")


def _sklesion_step(
    out: Path,
    plan: DemoPlan,
    user_val: list[Any],
    user_data: dict[str, Any] | None,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[list[Path], dict[str, Any]]:
    """Evaluate and attack sklesion: on the user's validation images (``user_data`` given), else on the
    real ISIC 2017 sample shipped as :mod:`dermadv.samples`. Returns the run folders and a summary."""
    from dermadv.campaign.runner import run_campaign
    from dermadv.campaign.summary import summarize_run
    from dermadv.data import dataset_hash
    from dermadv.evaluate import evaluate_model, write_evaluation

    notes: list[str] = []
    try:
        sk = _load_sklesion(log)
    except DermadvError as exc:
        log(f"   skipped: {exc}")
        return [], {"notes": [f"sklesion not attacked: {exc}"]}
    if user_data is None:
        from dermadv import samples

        images = list(samples.dataset().samples)
        data_info: dict[str, Any] = {
            "path": str(samples.path()),
            "synthetic": False,
            "sample": "dermadv.samples",
        }
        log(f"   on the {len(images)} real ISIC 2017 dermoscopy images shipped as dermadv.samples (CC-0)")
        notes.append(
            f"sklesion is evaluated and attacked on real dermoscopy: the {len(images)} ISIC 2017 (CC-0) "
            "images shipped as dermadv.samples, chosen on sklesion's own calls (mostly melanomas it gets "
            "right), so its accuracy there describes the sample, not the model."
        )
    else:
        images, data_info = user_val, user_data
    ev_dir = out / "evaluation-sklesion"
    ev = evaluate_model(sk, images, progress=progress)
    write_evaluation(
        ev, sk, ev_dir, data={**data_info, "hash": dataset_hash(images)}, settings={"model": sk.name}
    )
    scores = dict(zip((s.image_id for s in images), (float(x) for x in ev.scores), strict=True))
    # correctly called first (the study attacks only those), least confident first: a small search
    # budget shows more on those nearer the threshold
    mels = sorted(
        (s for s in images if s.diagnosis == "mel"),
        key=lambda s: (scores[s.image_id] < 0.5, scores[s.image_id], s.image_id),
    )
    n_right = sum(scores[s.image_id] >= 0.5 for s in mels)
    targets = mels[: plan.sklesion_images]
    log(f"   {sk.name} calls {n_right}/{len(mels)} melanomas melanoma; attacking {len(targets)}")
    sk_dir = out / "attacks-sklesion"
    opts = {"popsize": plan.sklesion_popsize, "max_generations": plan.sklesion_generations}
    run_campaign(
        sk,
        targets,
        sk_dir,
        list(plan.sklesion_attacks),
        attack_options=opts,
        data_info=data_info,
        provenance={"data": {**data_info, "hash": dataset_hash(targets)}},
        progress=progress,
    )
    summary: dict[str, Any] = {
        "model": sk.name,
        "melanomas_called_melanoma": f"{n_right}/{len(mels)}",
        "attacks": _success_line(summarize_run(sk_dir), log),
        "notes": notes,
    }
    return [ev_dir, sk_dir], summary


def _transfer_and_explain(
    out: Path,
    plan: DemoPlan,
    checkpoint: Path,
    attack_dir: Path,
    runs: list[Path],
    notes: list[str],
    log: Callable[[str], None],
) -> list[Path]:
    """Score sklesion's adversarial images on its Keras original (when loadable) and on the model
    trained here; occlusion maps of one sklesion pair and every map of one pair of our model."""
    from dermadv.explain.run import explain_campaign
    from dermadv.models.registry import load_model
    from dermadv.report.runs import model_label
    from dermadv.transfer import run_transfer

    made: list[Path] = []
    sk_dir = out / "attacks-sklesion"
    ours = load_model(str(checkpoint), device="cpu")
    if sk_dir in runs:
        from dermadv.campaign.runner import read_run_info

        sk_name = str((read_run_info(sk_dir).get("settings", {}).get("model") or {}).get("name", "sklesion"))
        sk = _load_sklesion(log) if sk_name == "sklesion-onnx" else load_model("sklesion")
        targets: dict[str, Any] = {model_label(sk.describe()): sk, model_label(ours.describe()): ours}
        if sk_name == "sklesion-onnx" and plan.transfer_keras:
            try:
                keras = load_model("sklesion")
                targets[model_label(keras.describe())] = keras
            except DermadvError as exc:
                log(f"   Keras sklesion not loaded ({exc}); transfer to its ONNX export only")
        run_transfer([sk_dir], targets, out / "transfer", log=lambda m: log(f"   transfer {m}"))
        made.append(out / "transfer")
        patch = plan.sklesion_patch or min(sk.input_size) // 3
        log(f"   occlusion maps of {plan.explain_rows} sklesion image pair(s) ({patch} px patches)")
        explain_campaign(
            sk,
            sk_dir,
            out / "explain-sklesion",
            methods=["occlusion"],
            limit=plan.explain_rows,
            options={"occlusion": {"patch": patch}},
        )
        made.append(out / "explain-sklesion")
    explain_campaign(
        ours,
        attack_dir,
        out / "explain",
        limit=plan.explain_rows,
        options={"occlusion": {"patch": max(4, min(ours.input_size) // 4)}},
    )
    made.append(out / "explain")
    notes.append(
        "Explanations: occlusion (any model), Integrated Gradients and Grad-CAM (white-box models, Captum), "
        "on a few attacked images (dermadv explain --run RUN)."
    )
    return made


def run_demo(
    data: str | Path | None = None,
    out: str | Path = "dermadv-demo",
    size: str = "full",
    progress: bool = True,
    log: Callable[[str], None] = print,
    sklesion: bool = True,
) -> DemoResult:
    """Run the whole pipeline into ``out`` and return where the report is (see the module docstring)."""
    if size not in PLANS:
        raise DermadvError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    plan = PLANS[size]
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, float] = {}
    notes: list[str] = []
    summary: dict[str, Any] = {}

    def step(name: str, t0: float) -> None:
        steps[name] = round(time.perf_counter() - t0, 2)
        log(f"   done in {steps[name]:.1f} s")

    import torch

    torch.manual_seed(0)

    # 1-2: data and split
    t0 = time.perf_counter()
    log("[1/9] data")
    data_path, synthetic = _resolve_data(data, out, plan, log)
    if synthetic:
        log(
            "   NOTE: these images are SYNTHETIC (procedural blobs, not dermoscopy); the numbers only show "
            "that the pipeline runs."
        )
    step("data", t0)
    t0 = time.perf_counter()
    log("[2/9] split (stratified, grouped by lesion, seed 0)")
    split_csv = _make_split(data_path, out, plan, log)
    step("split", t0)

    # 3: train
    from dermadv.models.train import TrainSettings, train

    t0 = time.perf_counter()
    log(f"[3/9] train {plan.arch} from scratch at {plan.input_size} px for {plan.epochs} epochs (CPU)")
    settings = TrainSettings(
        data=str(data_path),
        split=str(split_csv),
        out=str(out / "train"),
        arch=plan.arch,
        weights="none",
        epochs=plan.epochs,
        batch_size=plan.batch_size,
        lr=plan.lr,
        lr_schedule=plan.lr_schedule,
        image_size=plan.input_size,
        seed=0,
        device="cpu",
        cache_dir=str(out / "cache"),
    )
    trained = train(settings, progress=progress, log=lambda m: log(f"   {m}"))
    summary["train"] = trained.summary()
    step("train", t0)

    # 4: evaluate
    from dermadv.data import dataset_hash, select_samples
    from dermadv.evaluate import evaluate_model, write_evaluation
    from dermadv.models.registry import load_model

    t0 = time.perf_counter()
    log("[4/9] evaluate on the validation set")
    model = load_model(str(trained.best), device="cpu")
    val = select_samples(data_path, split=split_csv, subset="val", classes=("mel", "nv"))
    ev = evaluate_model(model, val, progress=progress)
    eval_dir = out / "evaluation"
    write_evaluation(
        ev,
        model,
        eval_dir,
        data={
            "path": str(data_path),
            "split": str(split_csv),
            "subset": "val",
            "hash": dataset_hash(val),
            "synthetic": synthetic,
        },
        settings={"model": str(trained.best), "threshold": 0.5, "synthetic": synthetic},
    )
    m = ev.metrics
    summary["evaluation"] = {k: m[k]["value"] for k in ("accuracy", "sensitivity", "specificity", "auc")}
    log("   " + ", ".join(f"{k} {v:.3f}" for k, v in summary["evaluation"].items()) + f" (n={m['n']})")
    step("evaluate", t0)

    # 5: perturbation sweep
    from dermadv.perturb.sweep import run_sweep

    t0 = time.perf_counter()
    log(f"[5/9] perturbation sweep on {len(val)} validation images: {plan.perturbations}")
    sweep = run_sweep(
        model,
        val,
        out / "perturbation",
        plan.perturbations,
        progress=progress,
        data_info={"path": str(data_path), "split": str(split_csv), "subset": "val"},
        extra_settings={"synthetic": synthetic},
    )
    worst = min(sweep.rows[1:], key=lambda r: r["accuracy"])
    log(
        f"   unmodified accuracy {sweep.rows[0]['accuracy']:.3f}; "
        f"lowest: {worst['label']} {worst['accuracy']:.3f}"
    )
    summary["perturbation"] = {
        "unmodified": sweep.rows[0]["accuracy"],
        "worst": worst["label"],
        "worst_accuracy": worst["accuracy"],
    }
    step("perturb", t0)

    # 6: attacks on our model
    from dermadv.campaign.runner import run_campaign
    from dermadv.campaign.summary import summarize_run

    t0 = time.perf_counter()
    targets = _pick_melanomas(eval_dir, val, plan.attack_images)
    log(
        f"[6/9] all attacks on {len(targets)} validation melanoma(s), small budget "
        f"(popsize {plan.popsize} x D, {plan.max_generations} generations)"
    )
    attack_dir = out / "attacks"
    options = {"popsize": plan.popsize, "max_generations": plan.max_generations, "eps": plan.eps}
    data_info = {
        "path": str(data_path.resolve()),
        "split": str(split_csv.resolve()),
        "subset": "val",
        "synthetic": synthetic,
    }
    run_campaign(
        model,
        targets,
        attack_dir,
        None,
        attack_options=options,
        data_info=data_info,
        provenance={"data": {**data_info, "hash": dataset_hash(targets)}},
        progress=progress,
    )
    summary["attacks"] = _success_line(summarize_run(attack_dir), log)
    step("attack", t0)

    # 7: the third-party model
    runs = [eval_dir, out / "train", out / "perturbation", attack_dir]
    t0 = time.perf_counter()
    log("[7/9] third-party model sklesion (Keras 3 Xception, HAM10000, 7 classes + metadata)")
    if not sklesion:
        notes.append("sklesion step skipped (--no-sklesion).")
        log("   skipped (--no-sklesion)")
    else:
        sk_runs, sk_summary = _sklesion_step(
            out, plan, val, data_info if not synthetic else None, progress, log
        )
        runs.extend(sk_runs)
        notes.extend(sk_summary.pop("notes", []))
        summary["sklesion"] = sk_summary
    step("sklesion", t0)

    # 8: transfer and explanations
    t0 = time.perf_counter()
    log("[8/9] transfer of sklesion's adversarial images to other models; what drives the calls")
    runs.extend(_transfer_and_explain(out, plan, trained.best, attack_dir, runs, notes, log))
    step("transfer", t0)

    # 8: report
    from dermadv.report.html import build_report

    t0 = time.perf_counter()
    log("[9/9] HTML report (and PDF, when Chromium is installed)")
    notes.insert(
        0,
        f"Made by `dermadv demo --size {size}` on {'SYNTHETIC images' if synthetic else data_path}: "
        f"{plan.arch} trained from scratch at {plan.input_size} px for {plan.epochs} epochs; attacks "
        f"with a small search budget. {ISIC_HINT}",
    )
    report = build_report(
        [r for r in runs if r.exists()],
        out / "report.html",
        title="dermadv demo" + (" (SYNTHETIC data)" if synthetic else ""),
        notes=notes,
        synthetic=synthetic,
    )
    try:
        from dermadv.report.pdf import html_to_pdf, pdf_facts

        pdf = html_to_pdf(report, out / "report.pdf")
        summary["pdf"] = {"path": str(pdf), **pdf_facts(pdf)}
        log(f"   PDF: {pdf} ({summary['pdf']['pages']} pages)")
    except DermadvError as exc:
        log(f"   no PDF: {exc}")
    step("report", t0)
    result = DemoResult(
        out=out,
        report=report,
        data=data_path,
        synthetic=synthetic,
        size=size,
        steps=steps,
        notes=notes,
        summary=summary,
    )
    atomic_write_json(out / "demo.json", result.to_dict(), default=str)
    return result


def _success_line(summary: dict[str, Any], log: Callable[[str], None]) -> dict[str, str]:
    out = {}
    for a in summary["attacks"]:
        out[a["attack"]] = f"{a['successful']}/{a['attempted']} (misclassified {a['misclassified']})"
    log("   success (successful/attempted): " + ", ".join(f"{k} {v}" for k, v in out.items()))
    return out
