"""Fine-tune a torchvision classifier on a dermadv split (the study's melanoma vs naevus model).

Defaults follow Du-Harpur et al. (2021): Inception v3 from ImageNet at 299 px, SGD (lr 0.001,
momentum 0.9), cross-entropy (plus 0.4 x the auxiliary head's loss for Inception v3), random
rotation, random resized crop, horizontal and vertical flips, optional colour jitter
(:mod:`dermadv.models.augment`). Each epoch is validated on the split's ``val`` subset; the best
epoch by validation AUC is ``best.pt``, the latest state ``last.pt`` (written atomically at the end of
every epoch and every ``checkpoint_every`` batches, and on Ctrl-C / SIGTERM). Running again with the
same ``out`` resumes from ``last.pt``; different settings or split are refused.

RUN_DIR holds: best.pt, last.pt, history.csv, history.json, train.json and run.json (kind ``train``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from dermadv.data.cache import ImageCache, default_cache_dir
from dermadv.errors import DataError, DermadvError
from dermadv.fileio import atomic_write_text
from dermadv.models.accel import mixed_precision_dtype
from dermadv.models.augment import Augmentation, augment
from dermadv.models.checkpoint import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    arch_kwargs,
    build_model,
    default_input_size,
    make_checkpoint,
    module_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
    versions,
)
from dermadv.runs.lock import holding_run
from dermadv.runs.provenance import file_sha256, run_provenance
from dermadv.runs.record import RunDir

#: Shorter side of cached training images relative to the input size (room for the random crop).
CACHE_SCALE = 1.15

#: Settings that must match to resume a run (``epochs``, ``workers``, ``device`` may change).
RESUME_KEYS = (
    "arch",
    "weights",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "image_size",
    "color_jitter",
    "seed",
    "classes",
    "aux_weight",
    "lr_schedule",
    "decoder",
    "resize",
)
#: Robust-training settings (issue 12): must match to resume too; a checkpoint written before they
#: existed holds none of them and is read as having their defaults (all off).
ROBUST_DEFAULTS: dict[str, Any] = {
    "translate_px": 0.0,
    "worst_of_k": 0,
    "worst_of": "color,rotation",
    "color_constancy": 0.0,
}


@dataclass
class TrainSettings:
    """All hyper-parameters of a training run (recorded in every checkpoint)."""

    data: str
    split: str
    out: str
    arch: str = "inception_v3"
    weights: str = "imagenet"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    image_size: int | None = None  # default: 299 for inception_v3, else 224
    color_jitter: float = 0.0  # per-channel gain range r (0 = off; --color-jitter gives 0.1)
    translate_px: float = 0.0  # random translation up to this many pixels in x and y (0 = off)
    worst_of_k: int = 0  # train each image on the worst of k random attack transforms (0/1 = off)
    worst_of: str = "color,rotation"  # registered perturbations the worst-of-k transforms come from
    color_constancy: float = 0.0  # train behind Shades of Gray with this Minkowski p (0 = off)
    seed: int = 0
    workers: int = (
        -1
    )  # DataLoader workers; -1: auto (min(8, CPUs) on CUDA, so the GPU never waits; 0 on the CPU)
    device: str = "auto"
    classes: tuple[str, ...] = ("mel", "nv")
    aux_weight: float = 0.4
    lr_schedule: str = "none"  # "none" | "cosine" (over `epochs`)
    checkpoint_every: int = 100  # also save last.pt every N batches (0: only at epoch ends)
    decoder: str = "pil"
    resize: str = "bilinear"
    amp: bool = True  # mixed precision on CUDA
    threads: int = 0  # torch CPU threads (0: torch's default)
    cache_dir: str | None = None
    allow_edited_split: bool = False  # use a split that fails verification (edited, lesion leak)

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes)
        if self.image_size is None:
            self.image_size = default_input_size(self.arch)
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be >= 2 (batch norm), got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.image_size >= 32, f"--image-size must be >= 32, got {self.image_size}"),
            (
                not (self.arch == "inception_v3" and self.image_size < 299),
                f"inception_v3 (its auxiliary head) needs --image-size >= 299, got {self.image_size}",
            ),
            (0 <= self.color_jitter < 1, f"colour jitter range must be in [0, 1), got {self.color_jitter}"),
            (self.translate_px >= 0, f"--translate must be >= 0 pixels, got {self.translate_px}"),
            (self.worst_of_k >= 0, f"--worst-of-k must be >= 0, got {self.worst_of_k}"),
            (
                self.color_constancy == 0 or self.color_constancy >= 1,
                f"--color-constancy must be 0 (off) or a Minkowski p >= 1, got {self.color_constancy}",
            ),
            (self.workers >= -1, f"--workers must be >= 0 (or -1: auto), got {self.workers}"),
            (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                f"--device must be auto, cpu or cuda, got {self.device!r}",
            ),
            (
                len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes),
                f"--classes needs at least two distinct classes, got {list(self.classes)}",
            ),
            ("mel" in self.classes, f"--classes must include 'mel' (melanoma), got {list(self.classes)}"),
            (
                self.lr_schedule in ("none", "cosine"),
                f"--lr-schedule must be none or cosine, got {self.lr_schedule!r}",
            ),
            (self.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {self.checkpoint_every}"),
            (self.threads >= 0, f"--threads must be 0 (torch's default) or positive, got {self.threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DermadvError(message)

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(
            size=self.input_size,
            color_jitter=self.color_jitter,
            translate_px=self.translate_px,
            color_constancy=self.color_constancy,
        )

    @property
    def input_size(self) -> int:
        """``image_size``, or the architecture's default when it was not given."""
        return int(self.image_size if self.image_size is not None else default_input_size(self.arch))

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["augmentation"] = self.augmentation.describe()
        d["optimizer"] = "SGD"
        d["loss"] = "cross-entropy" + (
            f" + {self.aux_weight} x auxiliary head" if self.arch in ("inception_v3", "googlenet") else ""
        )
        return d


@dataclass
class TrainResult:
    """What a training run produced."""

    out: Path
    best: Path
    last: Path
    epochs_run: int
    epochs: int
    best_epoch: int | None
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: dict[str, int] | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "best": str(self.best),
            "last": str(self.last),
            "epochs_run": self.epochs_run,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_val": self.best_metrics,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 2),
        }


# ----- helpers ------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DermadvError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return device


def _worker_init(worker_id: int) -> None:  # pragma: no cover - runs in DataLoader workers
    import torch

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    # Ctrl-C is handled by the main process, which saves its state at the next batch boundary.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class TrainImages:
    """torch Dataset over samples; items are requested as (index, epoch) and augmented from the cache."""

    def __init__(
        self, paths: Sequence[str], labels: Sequence[int], cache: ImageCache, aug: Augmentation, seed: int
    ) -> None:
        self.paths, self.labels = list(paths), list(labels)
        self.cache, self.aug, self.seed = cache, aug, seed
        self.cache_size = max(aug.size, int(round(aug.size * CACHE_SCALE)))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int]:  # (uint8 tensor, label)
        index, epoch = key
        rng = np.random.default_rng([self.seed, epoch, index])
        img = self.cache.get(self.paths[index], self.cache_size)
        return augment(img, self.aug, rng), self.labels[index]


def epoch_order(n: int, seed: int, epoch: int, batch_size: int) -> list[list[int]]:
    """The batches of an epoch: a permutation seeded by (seed, epoch); a trailing batch of 1 is dropped
    (batch norm cannot train on it)."""
    perm = np.random.default_rng([seed, epoch, 1_000_003]).permutation(n).tolist()
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if batches and len(batches[-1]) == 1 and len(batches) > 1:
        batches.pop()
    return batches


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between batches, so state is saved consistently."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _loss(outputs: Any, target: Any, aux_weight: float) -> Any:
    """Cross-entropy of the main head (+ ``aux_weight`` x each auxiliary head in train mode)."""
    import torch
    import torch.nn.functional as F

    if isinstance(outputs, torch.Tensor):
        return F.cross_entropy(outputs, target)
    main, *aux = [o for o in outputs if o is not None]
    loss = F.cross_entropy(main, target)
    for a in aux:
        loss = loss + aux_weight * F.cross_entropy(a, target)
    return loss


def train_step(
    module: Any,
    optimizer: Any,
    scaler: Any,
    x: Any,
    y: Any,
    mean_t: Any,
    std_t: Any,
    amp_dtype: Any,
    aux_weight: float,
) -> Any:
    """One optimizer step on uint8 N x 3 x H x W images ``x`` and class indices ``y`` (any device);
    returns the detached loss. On CUDA the batch goes channels-last (the module is converted to match);
    ``amp_dtype`` (torch.bfloat16 / float16, or None) is the autocast precision, ``scaler`` the
    gradient scaler (disabled for bf16)."""
    import torch

    device = mean_t.device
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    x = (x.float() - mean_t) / std_t
    y = y.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = _loss(module(x), y, aux_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@dataclass
class _Progress:
    """Where a run stands: the history so far, the best epoch, and the resume point."""

    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    start_batch: int = 0
    best_auc: float = -math.inf
    best_epoch: int | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    partial: dict[str, Any] = field(default_factory=lambda: {"loss_sum": 0.0, "n_seen": 0})
    resumed_from: dict[str, int] | None = None


# ----- the run ------------------------------------------------------------------------------------
class Trainer:
    """One training run in ``settings.out`` (see module docstring)."""

    def __init__(
        self, settings: TrainSettings, progress: bool = True, log: Callable[[str], None] | None = None
    ) -> None:
        self.s = settings
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.out = Path(settings.out).expanduser()
        self.last_path = self.out / "last.pt"
        self.best_path = self.out / "best.pt"

    # -- data --
    def _load_samples(self) -> None:
        from dermadv.data import dataset_hash, load_dataset, read_split, select_samples

        s = self.s
        split_path = Path(s.split).expanduser()
        if not split_path.is_file():
            raise DataError(f"{split_path}: split file not found (make one with `dermadv data split`)")
        dataset = load_dataset(s.data, progress=self.progress)
        split = read_split(split_path, dataset, allow_edited=s.allow_edited_split)
        self.train_samples = select_samples(dataset, split, subset="train", classes=s.classes)
        self.val_samples = select_samples(dataset, split, subset="val", classes=s.classes)
        for name, samples in (("train", self.train_samples), ("val", self.val_samples)):
            if not samples:
                raise DataError(f"{split_path}: no {name} images of classes {list(s.classes)}")
        counts = {c: sum(x.diagnosis == c for x in self.train_samples) for c in s.classes}
        empty = [c for c, k in counts.items() if k == 0]
        if empty:
            raise DataError(
                f"{split_path}: no training images of class(es) {empty}; drop them from --classes"
            )
        val_diag = {x.diagnosis for x in self.val_samples}
        if "mel" not in val_diag or "nv" not in val_diag:
            raise DataError(
                f"{split_path}: the val subset needs melanoma and naevus images for the AUC "
                f"(has {sorted(val_diag)})"
            )
        missing = [x.image_id for x in self.train_samples + self.val_samples if x.path is None]
        if missing:
            raise DataError(f"{s.data}: no image file for {len(missing)} image(s), e.g. {missing[:3]}")
        self.data_record = {
            "data": str(Path(s.data).expanduser().resolve()),
            "split": str(split_path.resolve()),
            "split_sha256": file_sha256(split_path),
            "split_hash": split.hash(),
            "train_hash": dataset_hash(self.train_samples),
            "val_hash": dataset_hash(self.val_samples),
            "n_train": len(self.train_samples),
            "n_val": len(self.val_samples),
            "train_counts": counts,
            "val_counts": {c: sum(x.diagnosis == c for x in self.val_samples) for c in s.classes},
        }

    def _hash_content(self) -> None:
        """``train_content`` / ``val_content`` in the data record: the order-free hash
        (:func:`dermadv.data.dataset_hash`) of every (image id, SHA-256 of its file) pair
        (:mod:`dermadv.runs.content`, cached in the run folder), so a resume notices replaced files."""
        from dermadv.data import dataset_hash
        from dermadv.runs.content import ContentHashes

        hashes = ContentHashes(self.out)
        for name, samples in (("train", self.train_samples), ("val", self.val_samples)):
            pairs = hashes.of_samples(samples).items()
            self.data_record[f"{name}_content"] = dataset_hash([(i, sha) for i, sha in pairs])
        hashes.save()

    # -- resume --
    def _check_resume(self, ckpt: dict[str, Any]) -> None:
        old = ckpt.get("training", {})
        new = self.s.record()
        keys = list(RESUME_KEYS) + (["epochs"] if self.s.lr_schedule == "cosine" else [])
        diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
        diffs += [
            f"{k}: {old.get(k, d)!r} -> {new.get(k)!r}"
            for k, d in ROBUST_DEFAULTS.items()
            if old.get(k, d) != new.get(k)
        ]
        for k in ("train_hash", "val_hash"):
            if ckpt.get("data", {}).get(k) != self.data_record[k]:
                diffs.append(
                    f"{k.replace('_hash', '')} images differ from the run's split "
                    f"({ckpt.get('data', {}).get('split')})"
                )
        for k in ("train_content", "val_content"):  # absent from checkpoints of older runs
            old_content = ckpt.get("data", {}).get(k)
            if old_content is not None and old_content != self.data_record.get(k):
                diffs.append(
                    f"{k.replace('_content', '')} image files changed since the run started (their content "
                    "hash differs; an epoch cannot be recomputed)"
                )
        if diffs:
            raise DermadvError(
                f"{self.last_path}: cannot resume: settings or data differ from the run being resumed ("
                + "; ".join(diffs)
                + "). Use a new --out directory, or the original settings"
            )

    @holding_run("self.out")  # one writer per run folder: checkpoints, cache, run.json, train.json
    def run(self) -> TrainResult:
        import torch

        s = self.s
        t0 = time.time()
        if s.threads:
            torch.set_num_threads(s.threads)
        if self.out.exists() and not self.out.is_dir():
            raise DermadvError(
                f"--out {self.out}: exists and is not a directory; --out takes a run directory"
            )
        self._load_samples()
        self.out.mkdir(parents=True, exist_ok=True)
        self._hash_content()
        device = resolve_device(s.device)
        self.device = torch.device(device)
        resume = read_checkpoint(self.last_path) if self.last_path.is_file() else None
        if resume is not None:
            self._check_resume(resume)
        run_record = RunDir.open(
            self.out, "train", self._run_settings(), run_provenance(data=self.data_record)
        )
        self._prepare_images()
        seed_everything(s.seed)
        self._build(resume)
        self.st = self._restore(resume) if resume is not None else _Progress()
        self._make_evaluator(device)

        with _StopFlag() as stop:
            for epoch in range(self.st.start_epoch, s.epochs):
                te = time.time()
                self._train_epoch(epoch, stop)
                self._end_epoch(epoch, te)
                if stop.signal is not None:
                    raise KeyboardInterrupt

        history, best_epoch, best_metrics = self.st.history, self.st.best_epoch, self.st.best_metrics
        resumed_from = self.st.resumed_from
        result = TrainResult(
            out=self.out,
            best=self.best_path,
            last=self.last_path,
            epochs_run=len(history),
            epochs=s.epochs,
            best_epoch=best_epoch,
            best_metrics=best_metrics,
            history=history,
            resumed_from=resumed_from,
            seconds=time.time() - t0,
        )
        info = {
            "settings": s.record(),
            "data": self.data_record,
            "versions": versions(),
            "device": device,
            "summary": result.summary(),
        }
        atomic_write_text(self.out / "train.json", json.dumps(info, indent=2, default=str) + "\n")
        run_record.update(device=device, summary=result.summary())
        return result

    # -- set-up --
    def _prepare_images(self) -> None:
        """The image cache filled with the train (crop margin) and val (input size) images."""
        s = self.s
        cache = ImageCache(s.cache_dir or default_cache_dir(self.out), s.decoder, s.resize)
        size = s.input_size
        train_ds = TrainImages(
            [str(x.path) for x in self.train_samples],
            [s.classes.index(x.diagnosis) for x in self.train_samples],
            cache,
            s.augmentation,
            s.seed,
        )
        fill_workers = max(1, s.workers if s.workers > 0 else min(4, os.cpu_count() or 1))
        cache.fill(
            [str(x.path) for x in self.train_samples],
            train_ds.cache_size,
            fill_workers,
            self.progress,
            "caching train images",
        )
        cache.fill(
            [str(x.path) for x in self.val_samples],
            (size, size),
            fill_workers,
            self.progress,
            "caching val images",
        )
        self.cache, self.size, self.train_ds = cache, size, train_ds

    def _build(self, resume: dict[str, Any] | None) -> None:
        """Module (new, or from ``resume``'s weights), optimizer, LR scheduler and AMP grad scaler."""
        import torch

        s = self.s
        kwargs = dict(resume["model_kwargs"]) if resume else arch_kwargs(s.arch, s.weights.lower() != "none")
        if resume is not None:
            module = module_from_checkpoint(resume, str(self.last_path))
        else:
            module = build_model(s.arch, len(s.classes), s.weights)
        module.to(self.device)
        optimizer = torch.optim.SGD(
            module.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs)
            if s.lr_schedule == "cosine"
            else None
        )
        # bf16 where the GPU has it (no loss scaling needed), else fp16 with a gradient scaler
        self.amp_dtype = mixed_precision_dtype(self.device) if s.amp else None
        use_amp = self.amp_dtype is not None
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.device.type == "cuda":  # cuDNN's fast convolutions take NHWC
            module.to(memory_format=torch.channels_last)
        self.module, self.model_kwargs, self.optimizer = module, kwargs, optimizer
        self.scheduler, self.use_amp, self.scaler = scheduler, use_amp, scaler

    def _make_evaluator(self, device: str) -> None:
        """The classifier that validates the module being trained (its normalisation is reused)."""
        from dermadv.models.accel import InferenceSettings
        from dermadv.models.base import TorchModuleClassifier

        s, size = self.s, self.size
        evaluator = TorchModuleClassifier(
            self.module,
            s.classes,
            (size, size),
            IMAGENET_MEAN,
            IMAGENET_STD,
            name=s.arch,
            decoder=s.decoder,
            device=device,
            batch_size=max(s.batch_size, 32),
            inference=InferenceSettings(compile="off"),  # the module changes every step
        )
        self.evaluator = evaluator
        self.mean_t, self.std_t = evaluator._mean_t, evaluator._std_t

    # -- restore --
    def _restore(self, resume: dict[str, Any]) -> _Progress:
        """Optimizer, scheduler, scaler and RNG state from ``last.pt``; where the run goes on."""
        s = self.s
        st = _Progress()
        self.optimizer.load_state_dict(resume["optimizer"])
        if self.scheduler is not None and resume.get("scheduler"):
            self.scheduler.load_state_dict(resume["scheduler"])
        if self.use_amp and resume.get("scaler"):
            self.scaler.load_state_dict(resume["scaler"])
        st.start_epoch, st.start_batch = int(resume["epoch"]), int(resume.get("batch", 0))
        st.partial = dict(resume.get("partial", st.partial))
        st.history = list(resume.get("history", []))
        st.best_auc = float(resume.get("best_auc", -math.inf))
        st.best_epoch = resume.get("best_epoch")
        st.best_metrics = dict(resume.get("best_metrics", {}))
        self._restore_rng(resume.get("rng", {}), self.device)
        st.resumed_from = {"epoch": st.start_epoch, "batch": st.start_batch}
        if st.start_epoch >= s.epochs:
            self.log(
                f"{self.out}: already trained for {st.start_epoch} epoch(s) (--epochs {s.epochs}); "
                "nothing to do"
            )
        else:
            self.log(
                f"resuming {self.out} at epoch {st.start_epoch + 1}"
                + (f", batch {st.start_batch + 1}" if st.start_batch else "")
            )
        return st

    # -- epoch --
    def _train_epoch(self, epoch: int, stop: _StopFlag) -> None:
        """One pass over the epoch's batches (from the resume point); saves and stops on a signal."""
        import torch
        from tqdm import tqdm

        s, st = self.s, self.st
        self.module.train()
        self.loader_workers = (
            s.workers
            if s.workers >= 0
            else (min(8, os.cpu_count() or 1) if self.device.type == "cuda" else 0)
        )
        batches = epoch_order(len(self.train_ds), s.seed, epoch, s.batch_size)
        first = st.start_batch if epoch == st.start_epoch else 0
        if first == 0:
            st.partial = {"loss_sum": 0.0, "n_seen": 0}
        # TrainImages is a map-style dataset by duck typing (this module does not import torch eagerly)
        dataset = cast("torch.utils.data.Dataset[tuple[Any, int]]", self.train_ds)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=[[(i, epoch) for i in b] for b in batches[first:]],
            num_workers=self.loader_workers,
            worker_init_fn=_worker_init,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.loader_workers else None,  # the GPU never waits for a decoded batch
            generator=torch.Generator().manual_seed(s.seed + epoch),
        )
        bar = tqdm(
            total=len(batches),
            initial=first,
            desc=f"epoch {epoch + 1}/{s.epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
            file=sys.stderr,
        )
        done = first
        try:
            for bi, (x, y) in enumerate(loader, start=first):
                if s.worst_of_k > 1:
                    x = self._worst_of_k(x, y, epoch, bi)
                self._step(x, y)
                bar.update()
                bar.set_postfix(loss=f"{st.partial['loss_sum'] / st.partial['n_seen']:.4f}")
                done = bi + 1
                if stop.signal is not None:
                    bar.close()
                    self._save_last(epoch, done)
                    self.log(f"stopped at epoch {epoch + 1}, batch {done}; state saved to {self.last_path}")
                    raise KeyboardInterrupt
                if s.checkpoint_every and done % s.checkpoint_every == 0 and done < len(batches):
                    self._save_last(epoch, done)
        except Exception:
            if stop.signal is None:
                raise
            # e.g. a DataLoader worker killed by the same signal: keep what was done.
            bar.close()
            self._save_last(epoch, done)
            self.log(f"stopped at epoch {epoch + 1}, batch {done}; state saved to {self.last_path}")
            raise KeyboardInterrupt from None
        bar.close()

    def _step(self, x: Any, y: Any) -> None:
        """One optimizer step on the batch ``(x, y)`` (uint8 images, class indices)."""
        loss = train_step(
            self.module,
            self.optimizer,
            self.scaler,
            x,
            y,
            self.mean_t,
            self.std_t,
            self.amp_dtype,
            self.s.aux_weight,
        )
        self.st.partial["loss_sum"] += float(loss) * len(y)
        self.st.partial["n_seen"] += len(y)

    def _worst_of_k(self, x: Any, y: Any, epoch: int, batch: int) -> Any:
        """Each image replaced by the worst (highest-loss) of ``worst_of_k`` random transforms drawn over
        the attacks' full ranges (Engstrom et al. 2019); draws from ``[seed, epoch, batch]``, so a resumed
        run repeats them. Losses are computed in eval mode without gradients."""
        import torch

        from dermadv.perturb.base import PERTURBATIONS

        s = self.s
        rng = np.random.default_rng([s.seed, epoch, batch, 0x0F])
        names = [n.strip() for n in s.worst_of.split(",") if n.strip()]
        images = x.permute(0, 2, 3, 1).contiguous().numpy()
        candidates = []
        for j in range(s.worst_of_k):
            pert = PERTURBATIONS.create(names[j % len(names)])
            bounds = np.asarray(pert.bounds(images.shape[1:]), dtype=np.float64)
            params = rng.uniform(bounds[:, 0], bounds[:, 1], size=(len(images), len(bounds)))
            out = pert.transform(images, params)
            if s.color_constancy:
                from dermadv.models.defences.colour import shades_of_gray

                out = shades_of_gray(out, s.color_constancy)
            candidates.append(out)
        stack = np.stack(candidates)  # k x B x H x W x 3
        self.module.eval()
        with torch.no_grad():
            losses = []
            for cand in stack:
                t = torch.from_numpy(cand).to(self.device).permute(0, 3, 1, 2).float()
                logits = self.module((t - self.mean_t) / self.std_t)
                logits = logits if isinstance(logits, torch.Tensor) else logits[0]
                losses.append(
                    torch.nn.functional.cross_entropy(logits.float(), y.to(self.device), reduction="none")
                )
            worst = torch.stack(losses).argmax(dim=0).cpu().numpy()
        self.module.train()
        chosen = stack[worst, np.arange(len(images))]
        return torch.from_numpy(np.ascontiguousarray(chosen)).permute(0, 3, 1, 2)

    def _end_epoch(self, epoch: int, te: float) -> None:
        """Validate, record the epoch, keep ``best.pt`` and write ``last.pt`` and the history."""
        st = self.st
        if self.scheduler is not None:
            self.scheduler.step()
        train_loss = st.partial["loss_sum"] / max(1, st.partial["n_seen"])
        val = self._validate(self.evaluator, self.cache, self.size)
        self.module.train()
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val": val,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - te, 2),
        }
        st.history.append(row)
        improved = val["auc"]["value"] > st.best_auc
        if improved:
            st.best_auc, st.best_epoch, st.best_metrics = val["auc"]["value"], epoch + 1, val
            save_checkpoint(self._state(epoch + 1, 0, "best", val), self.best_path)
        st.partial = {"loss_sum": 0.0, "n_seen": 0}
        self._save_last(epoch + 1, 0)
        self._write_history(st.history)
        self.log(self._epoch_line(row, improved))

    # -- save --
    def _state(self, epoch: int, batch: int, kind: str, metrics: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint of the module with the run's settings, data and progress."""
        s, st, size = self.s, self.st, self.size
        return make_checkpoint(
            self.module,
            arch=s.arch,
            classes=s.classes,
            input_size=(size, size),
            model_kwargs=self.model_kwargs,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            decoder=s.decoder,
            resize=s.resize,
            training=s.record(),
            data=self.data_record,
            metrics=metrics,
            epoch=epoch,
            kind=kind,
            batch=batch,
            history=st.history,
            best_auc=st.best_auc,
            best_epoch=st.best_epoch,
            best_metrics=st.best_metrics,
        )

    def _save_last(self, epoch: int, batch: int) -> None:
        """``last.pt``: the checkpoint plus optimizer, scheduler, scaler, RNG and partial-epoch state."""
        history = self.st.history
        ck = self._state(epoch, batch, "last", history[-1]["val"] if history else {})
        ck.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
            scaler=self.scaler.state_dict() if self.use_amp else None,
            rng=self._rng_state(self.device),
            partial=dict(self.st.partial),
        )
        save_checkpoint(ck, self.last_path)

    def _run_settings(self) -> dict[str, Any]:
        """run.json settings: the training record, its data by location and content, and the length of
        a cosine schedule (``epochs`` itself may grow: see :mod:`dermadv.runs.record`)."""
        record = {k: v for k, v in self.s.record().items() if k not in ("data", "split")}
        data = {k: self.data_record[k] for k in ("data", "split", "split_hash", "train_hash", "val_hash")}
        data["path"] = data.pop("data")
        cosine = self.s.lr_schedule == "cosine"
        return {**record, "data": data, "lr_schedule_epochs": self.s.epochs if cosine else None}

    # -- validation --
    def _validate(self, evaluator: Any, cache: ImageCache, size: int) -> dict[str, Any]:
        from dermadv.metrics import binary_metrics, melanoma_score

        evaluator.module.eval()
        probs = []
        bs = evaluator.batch_size
        for start in range(0, len(self.val_samples), bs):
            chunk = self.val_samples[start : start + bs]
            images = np.stack([cache.get(str(x.path), (size, size)) for x in chunk])
            if self.s.color_constancy:  # the model is trained behind colour constancy: validate behind it
                from dermadv.models.defences.colour import shades_of_gray

                images = shades_of_gray(images, self.s.color_constancy)
            probs.append(evaluator.predict_proba(images))
        p = np.concatenate(probs)
        labels = np.array([self.s.classes.index(x.diagnosis) for x in self.val_samples])
        loss = float(-np.log(np.clip(p[np.arange(len(p)), labels], 1e-12, 1)).mean())
        keep = np.array([x.diagnosis in ("mel", "nv") for x in self.val_samples])
        y = np.array([x.diagnosis == "mel" for x in self.val_samples], dtype=int)[keep]
        metrics = binary_metrics(y, melanoma_score(evaluator, p)[keep], threshold=0.5)
        metrics["loss"] = loss
        return metrics

    @staticmethod
    def _epoch_line(row: dict[str, Any], improved: bool) -> str:
        v = row["val"]
        auc = v["auc"]
        return (
            f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f}  val loss {v['loss']:.4f}  "
            f"acc {v['accuracy']['value']:.3f}  sens {v['sensitivity']['value']:.3f}  "
            f"spec {v['specificity']['value']:.3f}  AUC {auc['value']:.3f} "
            f"[{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]  ({row['seconds']:.0f} s)"
            + ("  *best" if improved else "")
        )

    def _write_history(self, history: list[dict[str, Any]]) -> None:
        atomic_write_text(self.out / "history.json", json.dumps(history, indent=2) + "\n")
        buf = io.StringIO()
        cols = [
            "epoch",
            "train_loss",
            "val_loss",
            "val_accuracy",
            "val_sensitivity",
            "val_specificity",
            "val_auc",
            "val_auc_ci_low",
            "val_auc_ci_high",
            "lr",
            "seconds",
        ]
        w = csv.writer(buf)
        w.writerow(cols)
        for r in history:
            v = r["val"]
            w.writerow(
                [
                    r["epoch"],
                    f"{r['train_loss']:.6f}",
                    f"{v['loss']:.6f}",
                    f"{v['accuracy']['value']:.6f}",
                    f"{v['sensitivity']['value']:.6f}",
                    f"{v['specificity']['value']:.6f}",
                    f"{v['auc']['value']:.6f}",
                    f"{v['auc']['ci_low']:.6f}",
                    f"{v['auc']['ci_high']:.6f}",
                    r["lr"],
                    r["seconds"],
                ]
            )
        atomic_write_text(self.out / "history.csv", buf.getvalue())

    # -- RNG state --
    @staticmethod
    def _rng_state(device: Any) -> dict[str, Any]:
        import torch

        st = np.random.get_state(legacy=True)
        assert isinstance(st, tuple)  # legacy=True: ("MT19937", keys, pos, has_gauss, cached_gaussian)
        rng = {
            "torch": torch.get_rng_state(),
            "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0],
            "numpy_key": torch.from_numpy(st[1].astype(np.int64)),
            "numpy_pos": int(st[2]),
        }
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        return rng

    @staticmethod
    def _restore_rng(rng: dict[str, Any], device: Any) -> None:
        import torch

        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "python" in rng:
            random.setstate((rng["python_version"], tuple(rng["python"]), None))
        if "numpy_key" in rng:
            np.random.set_state(
                ("MT19937", rng["numpy_key"].numpy().astype(np.uint32), rng["numpy_pos"], 0, 0.0)
            )
        if "cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], device)


def train(
    settings: TrainSettings, progress: bool = True, log: Callable[[str], None] | None = None
) -> TrainResult:
    """Train (or resume) a run; see :class:`Trainer`."""
    return Trainer(settings, progress=progress, log=log).run()
