"""CLI command: ``dermadv train`` (fine-tune a torchvision classifier on a split)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dermadv.commands import common


def _parse_classes(text: str) -> tuple[str, ...]:
    from dermadv.errors import DermadvError
    from dermadv.labels import DIAGNOSES, canonical_diagnosis

    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        code = canonical_diagnosis(part)
        if code is None:
            raise DermadvError(
                f"--classes: unknown diagnosis {part.strip()!r}; use codes from {list(DIAGNOSES)}"
            )
        out.append(code)
    return tuple(out)


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the dermadv app."""

    @app.command("train")
    def train_command(
        data: str = typer.Option(..., "--data", help="Dataset directory or label CSV."),
        split: Path = typer.Option(..., "--split", help="Split CSV (from `dermadv data split`)."),
        allow_edited_split: bool = common.allow_edited_split_option(),
        out: Path = typer.Option(..., "--out", help="Run directory; an existing run there is resumed."),
        arch: str = typer.Option(
            "inception_v3", help="torchvision architecture (resnet18, efficientnet_b0, ...)."
        ),
        weights: str = typer.Option(
            "imagenet", help="'imagenet' (torchvision), 'none' (random init) or a path to a state dict."
        ),
        epochs: int = typer.Option(20, help="Total number of epochs (raise it to continue a finished run)."),
        batch_size: int = typer.Option(32, help="Training batch size."),
        lr: float = typer.Option(0.001, help="SGD learning rate."),
        momentum: float = typer.Option(0.9, help="SGD momentum."),
        weight_decay: float = typer.Option(0.0, help="SGD weight decay."),
        lr_schedule: str = typer.Option(
            "none", help="'none' (constant lr) or 'cosine' (annealed over --epochs)."
        ),
        image_size: int = typer.Option(
            None, help="Input size in pixels (default: 299 for inception_v3, else 224)."
        ),
        color_jitter: bool = typer.Option(
            False, "--color-jitter", help="Random colour balance: each RGB channel x a gain in [1-r, 1+r]."
        ),
        color_jitter_range: float = typer.Option(0.1, help="r for --color-jitter."),
        translate: float = typer.Option(
            0.0, "--translate", min=0.0, help="Random translation up to PX pixels in x and y (black fill)."
        ),
        robust_affine: bool = typer.Option(
            False,
            "--robust-affine",
            help="Translation over the rotation attack's full range (50 px at 299 px, scaled to the input "
            "size; rotation is already 0-360 degrees).",
        ),
        worst_of_k: int = typer.Option(
            0,
            "--worst-of-k",
            min=0,
            help="Train each image on the worst of K random attack transforms (Engstrom 2019).",
        ),
        worst_of: str = typer.Option(
            "color,rotation",
            "--worst-of",
            help="Registered perturbations the worst-of-k transforms are drawn from.",
        ),
        color_constancy: float = typer.Option(
            0.0,
            "--color-constancy",
            help="Train behind Shades of Gray with Minkowski p (e.g. 6); evaluate with "
            "--defence color-constancy:p=P.",
        ),
        seed: int = typer.Option(0, help="Seed for initialisation, data order and augmentation."),
        workers: int = typer.Option(
            -1,
            help="DataLoader worker processes (0: load in the main process; -1: auto, min(8, CPUs) on "
            "CUDA so the GPU never waits, 0 on the CPU).",
        ),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        classes: str = typer.Option("mel,nv", help="Comma-separated classes, in output order."),
        checkpoint_every: int = typer.Option(
            100,
            help="Also save last.pt every N batches, so a run killed mid-epoch resumes at that batch "
            "(0: at the end of each epoch only).",
        ),
        cache_dir: Path = typer.Option(
            None, help="Decoded-image cache (default: $DERMADV_CACHE or RUN_DIR/../.dermadv-cache)."
        ),
        threads: int = typer.Option(0, help="torch CPU threads (0: torch's default, one per core)."),
        no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
        json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    ) -> None:
        """Fine-tune a classifier (default: ImageNet Inception v3, SGD lr 0.001 momentum 0.9) with rotation,
        crop and flip augmentation; validate every epoch (loss, accuracy, sensitivity, specificity, AUC);
        keep best.pt (best val AUC) and last.pt (resume: run the same command again)."""
        from dermadv.models.checkpoint import default_input_size
        from dermadv.models.train import TrainSettings, train

        if robust_affine:
            translate = max(translate, 50.0 * (image_size or default_input_size(arch)) / 299.0)

        settings = TrainSettings(
            data=data,
            split=str(split),
            allow_edited_split=allow_edited_split,
            out=str(out),
            arch=arch,
            weights=weights,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            image_size=image_size,
            color_jitter=color_jitter_range if color_jitter else 0.0,
            translate_px=translate,
            worst_of_k=worst_of_k,
            worst_of=worst_of,
            color_constancy=color_constancy,
            seed=seed,
            workers=workers,
            device=device,
            classes=_parse_classes(classes),
            checkpoint_every=checkpoint_every,
            cache_dir=None if cache_dir is None else str(cache_dir),
            threads=threads,
        )
        result = train(settings, progress=not no_progress)
        summary = result.summary()
        if json_out:
            typer.echo(json.dumps(summary, indent=2, default=str))
            return
        best = result.best_metrics
        typer.echo(f"run: {result.out}  ({result.epochs_run} epoch(s) recorded, {result.seconds:.0f} s)")
        if best:
            auc = best["auc"]
            typer.echo(
                f"best: epoch {result.best_epoch}, val AUC {auc['value']:.3f} "
                f"[{auc['ci_low']:.3f}, {auc['ci_high']:.3f}], accuracy {best['accuracy']['value']:.3f}, "
                f"sensitivity {best['sensitivity']['value']:.3f}, "
                f"specificity {best['specificity']['value']:.3f} -> {result.best}"
            )
