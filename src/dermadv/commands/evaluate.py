"""CLI command: ``dermadv evaluate`` (any model, melanoma vs naevus metrics with 95% CIs)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dermadv.commands import common


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the dermadv app."""

    @app.command("evaluate")
    def evaluate_command(
        ctx: typer.Context,
        model: str = common.model_option(),
        model_option: list[str] = common.model_options_option(),
        defence: list[str] = common.defence_option(),
        data: str = typer.Option(..., "--data", help="Dataset directory or label CSV."),
        split: Path = typer.Option(None, "--split", help="Split CSV; with it only --subset images are used."),
        allow_edited_split: bool = common.allow_edited_split_option(),
        subset: str = typer.Option(
            None, help="Split subset: train or val (default: val when --split is given)."
        ),
        ids: str = typer.Option(None, help="Comma-separated image ids to evaluate."),
        limit: int = typer.Option(None, help="Evaluate at most N images."),
        threshold: float = typer.Option(0.5, help="Melanoma iff p_mel/(p_mel+p_benign) >= threshold."),
        out: Path = typer.Option(
            None, "--out", help="Directory for predictions.csv, metrics.json, roc.png..."
        ),
        isic_submission: bool = typer.Option(
            False, "--isic-submission", help="Also write an ISIC 2019 challenge submission CSV (needs --out)."
        ),
        melanoma_classes: str = common.melanoma_classes_option(),
        benign_classes: str = common.benign_classes_option(),
        batch_size: int = typer.Option(None, help="Inference batch size (default: the model's)."),
        device: str = typer.Option(None, help="Torch device for torch models (cpu, cuda) (default: auto)."),
        threads: int = typer.Option(0, help="torch CPU threads for torch models (0: torch's default)."),
        no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
        json_out: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    ) -> None:
        """Evaluate a model on melanoma vs naevus images: accuracy, sensitivity, specificity (Wilson 95% CIs)
        and ROC AUC (DeLong 95% CI) at a threshold; with --out also predictions.csv, metrics.json, roc.png
        and the confusion matrix. Other diagnoses are predicted but left out of the metrics."""
        from dermadv.data import load_dataset, select_samples
        from dermadv.errors import DermadvError
        from dermadv.evaluate import evaluate_model, format_report, write_evaluation

        if not 0.0 <= threshold <= 1.0:  # also refuses nan: the melanoma score lies in [0, 1]
            raise DermadvError(f"--threshold must be between 0 and 1 (melanoma score scale), got {threshold}")
        if batch_size is not None and batch_size < 1:
            raise DermadvError(f"--batch-size must be a positive integer, got {batch_size}")
        if threads < 0:
            raise DermadvError(f"--threads must be 0 (torch's default) or positive, got {threads}")
        if out is not None and out.exists() and not out.is_dir():
            raise DermadvError(f"--out {out}: exists and is not a directory; --out takes a directory")
        if isic_submission and out is None:
            raise DermadvError("--isic-submission needs --out DIR to write the submission file into")
        if subset is not None and split is None:
            raise DermadvError("--subset needs --split")
        if threads:
            import torch

            torch.set_num_threads(threads)
        use_subset = subset if subset is not None else ("val" if split is not None else None)
        clf = common.load_cli_model(
            model, model_option, melanoma_classes, benign_classes, device, defences=defence
        )
        dataset = load_dataset(data, progress=not no_progress)
        samples = select_samples(
            dataset,
            split=split,
            subset=use_subset,
            classes=None,
            ids=common.split_list(ids),
            limit=limit,
            allow_edited_split=allow_edited_split,
        )
        common.hold_out(ctx, out)  # one writer from the first saved prediction to the last file
        from dermadv.runs.provenance import model_file_sha256

        model_hash = model_file_sha256(model) if out is not None else None
        ev = evaluate_model(
            clf,
            samples,
            threshold=threshold,
            batch_size=batch_size,
            progress=not no_progress,
            resume_dir=out,
            model_file_hash=model_hash,
        )
        summary = ev.summary()
        # Models fed clinical metadata (sklesion) state how often their documented defaults stood in.
        metadata_note = clf.describe().get("metadata_defaults_note") if clf.needs_metadata else None
        if metadata_note:
            summary["metadata_note"] = metadata_note
        if out is not None:
            from dermadv.data import dataset_hash

            data_record = {
                "dataset": dataset.describe(),
                "split": None if split is None else str(Path(split).resolve()),
                "subset": use_subset,
                "ids": common.split_list(ids),
                "limit": limit,
                "hash": dataset_hash(samples),
            }
            settings = {
                "model": model,
                "threshold": threshold,
                "batch_size": batch_size,
                "device": device,
                "melanoma_classes": sorted(clf.melanoma),
                "benign_classes": sorted(clf.benign),
                "allow_edited_split": allow_edited_split,
            }
            files = write_evaluation(
                ev,
                clf,
                out,
                data=data_record,
                settings=settings,
                isic_submission=isic_submission,
                model_file_hash=model_hash,
            )
            summary["files"] = {k: str(v) for k, v in files.items()}
        if json_out:
            typer.echo(json.dumps(summary, indent=2))
            return
        typer.echo(format_report(ev, clf.name))
        if metadata_note:
            typer.echo(f"metadata: {metadata_note}")
        if out is not None:
            typer.echo(f"wrote {', '.join(p.name for p in files.values())} to {out}")
