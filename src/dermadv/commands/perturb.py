"""CLI: ``dermadv perturb`` -- the systematic perturbation sweep (the study's Supplementary Figure 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dermadv.commands import common


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The sweep table as aligned text."""
    head = ["perturbation", "n", "correct", "FN", "FP", "accuracy", "change (95% CI)", "flipped"]
    lines = [head]
    for r in rows:
        change = (
            ""
            if r["perturbation"] == "none"
            else (f"{r['delta_accuracy']:+.3f} ({r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f})")
        )
        lines.append(
            [
                r["label"],
                str(r["n"]),
                str(r["correct"]),
                str(r["false_negatives"]),
                str(r["false_positives"]),
                f"{r['accuracy']:.3f}",
                change,
                str(r["flipped"]),
            ]
        )
    return common.aligned_table(lines)


def register(app: typer.Typer) -> None:
    """Add ``perturb`` to the dermadv app."""

    @app.command("perturb")
    def perturb(
        model: str = common.model_option(),
        data: Path = typer.Option(..., "--data", help="Dataset directory or metadata CSV."),
        split: Path = typer.Option(None, "--split", help="Split CSV from `dermadv data split`."),
        allow_edited_split: bool = common.allow_edited_split_option(),
        subset: str = typer.Option(
            None, "--subset", help="Subset of the split: train or val (default: val when --split is given)."
        ),
        out: Path = typer.Option(Path("runs/perturb"), "--out", help="Run directory (rerun to resume)."),
        perturbations: str = typer.Option(
            "study",
            "--perturbations",
            help="Comma-separated specs: study (rot180, rot45, +-5/10/50 per RGB channel), sam-c (14 "
            "corruptions x 5 severities), rot:ANGLE, shift:{r,g,b,rgb}:N, color:CR,CG,CB, hue:F, blur:SIGMA, "
            "jpeg:Q, brightness:F, contrast:F, any registered transform as NAME:V1,V2,... or "
            "NAME@SEVERITY (`dermadv transforms` lists them), decoder:{pil,tf,other}. The unmodified set "
            "is always included.",
        ),
        batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per forward pass."),
        limit: int = typer.Option(None, "--limit", min=1, help="Use at most N images."),
        threshold: float = typer.Option(
            0.5, "--threshold", min=0.0, max=1.0, help="Melanoma decision threshold on p_mel/(p_mel+p_ben)."
        ),
        model_option: list[str] = common.model_options_option(),
        defence: list[str] = common.defence_option(),
        melanoma_classes: str = common.melanoma_classes_option(),
        benign_classes: str = common.benign_classes_option(),
        device: str = typer.Option(None, "--device", help="torch device (cpu, cuda)."),
        executor: str = common.executor_option("one perturbation per unit"),
        address: str = common.address_option(),
        workers: int = common.workers_option(),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Accuracy, false negatives/positives and flipped predictions of a model on a whole (validation)
        set after each fixed perturbation, with paired 95% CIs of the change.

        Writes RUN/perturbation.csv, perturbation.json, perturbation.png, perturbation_scores.csv,
        per-perturbation results in RUN/perturb/ (a rerun skips finished ones) and RUN/run.json.
        """
        from dermadv.data import select_samples
        from dermadv.errors import DataError
        from dermadv.perturb.points import parse_specs
        from dermadv.perturb.sweep import run_sweep
        from dermadv.runs.provenance import model_file_sha256

        if subset is not None and split is None:
            raise DataError("--subset needs --split (the split CSV the subset comes from)")
        parse_specs(perturbations)  # bad specs fail before the model loads
        if not 0 < threshold < 1:
            raise DataError(f"--threshold must be strictly between 0 and 1, got {threshold}")
        if split is not None and subset is None:
            subset = "val"  # the study sweeps the validation set, as `dermadv evaluate` does
        clf = common.load_cli_model(
            model, model_option, melanoma_classes, benign_classes, device, defences=defence, executor=executor
        )
        samples = select_samples(
            data,
            split=split,
            subset=subset,
            classes=("mel", "nv"),
            limit=limit,
            allow_edited_split=allow_edited_split,
        )
        from dermadv.runs.executor import executor_json, format_executor_summary

        sweep_executor = common.cli_executor(
            executor,
            clf,
            model,
            model_option,
            melanoma_classes,
            benign_classes,
            device,
            address,
            workers,
            progress,
        )
        result = run_sweep(
            clf,
            samples,
            out,
            perturbations,
            batch_size=batch_size,
            threshold=threshold,
            progress=progress,
            executor=sweep_executor,
            data_info={
                "path": str(Path(data).resolve()),
                "split": str(split.resolve()) if split else None,
                "subset": subset,
                "limit": limit,
            },
            extra_settings={"allow_edited_split": allow_edited_split},
            provenance={"model_spec": model},
            model_file_hash=model_file_sha256(model),
        )
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "run": str(out),
                        "rows": result.rows,
                        "files": result.files,
                        "resumed": result.skipped,
                        "computed": result.computed,
                        "changed_images": result.changed_images,
                        "seconds": round(result.seconds, 2),
                        **executor_json(sweep_executor),
                    },
                    indent=2,
                )
            )
            return
        typer.echo(format_rows(result.rows))
        typer.echo(
            f"{out}: {len(result.computed)} perturbation(s) computed, {len(result.skipped)} resumed "
            f"({result.seconds:.1f} s). Table: {result.files['csv']}  plot: {result.files['png']}"
        )
        summary_line = format_executor_summary(sweep_executor.stats())
        if summary_line:
            typer.echo(summary_line)
