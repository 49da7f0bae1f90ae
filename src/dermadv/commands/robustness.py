"""CLI: ``dermadv robustness`` -- how often the call flips under clinically plausible variation,
and ``dermadv sam-submission`` -- a SAM benchmark submission file for any model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dermadv.commands import common


def _pct(v: Any) -> str:
    return "" if v is None else f"{100 * float(v):.1f}%"


def format_rows(summary: dict[str, Any]) -> str:
    """The per-transform table as aligned text, then the benchmark metrics."""
    lines = [
        [
            "transform",
            "n",
            "flip rate (95% CI)",
            "fragile >0",
            "fragile >50%",
            "accuracy clean -> under",
            "forwards (saved)",
        ]
    ]
    for r in summary["rows"]:
        lines.append(
            [
                r["transform"],
                str(r["n_images"]),
                f"{_pct(r['flip_rate'])} ({_pct(r['flip_ci_low'])}, {_pct(r['flip_ci_high'])})",
                _pct(r["fragile_any"]),
                _pct(r["fragile_half"]),
                f"{r['accuracy_clean']:.3f} -> {r['accuracy']:.3f}",
                f"{r['forwards']} ({_pct(r['forwards_saved'])})",
            ]
        )
    text = common.aligned_table(lines) if len(lines) > 1 else ""
    if "sam_c" in summary:
        c = summary["sam_c"]
        text += (
            f"\nSAM-C: clean BCE {c['clean_bce']:.4f}, mBCE {c['mbce']:.4f}, "
            f"relative mBCE {c['relative_mbce']:.4f}"
        )
    if "sam_p" in summary:
        text += f"\nSAM-P: mFR {summary['sam_p']['mfr']:.4f}"
    return text.strip("\n")


def select_sources(
    data: list[Path],
    split: Path | None,
    subset: str | None,
    ids: str | None,
    limit: int | None,
    allow_edited_split: bool,
) -> tuple[list[Any], dict[str, str]]:
    """Samples of every ``--data`` (mel and nv), and each image's source (its data set's folder name)."""
    from dermadv.data import select_samples

    samples, sources = [], {}
    for d in data:
        chosen = select_samples(
            d,
            split=split,
            subset=subset,
            classes=("mel", "nv"),
            ids=ids,
            limit=limit,
            allow_edited_split=allow_edited_split,
        )
        name = Path(d).name if Path(d).is_dir() else Path(d).parent.name
        samples += chosen
        sources.update({s.image_id: name for s in chosen})
    return samples, sources


def register(app: typer.Typer) -> None:
    """Add ``robustness`` and ``sam-submission`` to the dermadv app."""

    @app.command("robustness")
    def robustness(
        model: str = common.model_option(),
        data: list[Path] = typer.Option(
            ..., "--data", help="Dataset directory or metadata CSV (repeat: one per source)."
        ),
        split: Path = typer.Option(None, "--split", help="Split CSV from `dermadv data split`."),
        allow_edited_split: bool = common.allow_edited_split_option(),
        subset: str = typer.Option(None, "--subset", help="Subset of the split: train or val."),
        ids: str = typer.Option(None, "--ids", help="Comma-separated image ids to use."),
        limit: int = typer.Option(None, "--limit", min=1, help="Use at most N images per --data."),
        transforms: str = typer.Option(
            "color,rotation",
            "--transforms",
            help="Comma-separated registered transforms (`dermadv transforms`), each over its "
            "clinical range, or NAME@S at severity S; `all` = every clinical transform.",
        ),
        severity: str = typer.Option(
            None,
            "--severity",
            help="Severities to measure each transform at: 1-5, 2,4 "
            "or all (default: the whole clinical range).",
        ),
        benchmark: str = typer.Option(
            None,
            "--benchmark",
            help="Also score sam-c (14 corruptions x 5 severities) "
            "and/or sam-p (10 sequences of 31 frames): sam-c,sam-p.",
        ),
        samples: int = typer.Option(256, "--samples", min=1, help="Draws per image and transform (at most)."),
        sampler: str = typer.Option("sobol", "--sampler", help="sobol (scrambled), lhs or random."),
        seed: int = typer.Option(0, "--seed", help="Seed of the draws (per image and transform)."),
        check_every: int = typer.Option(16, "--check-every", min=1, help="Draws between stopping checks."),
        stop_below: float = typer.Option(
            0.02, "--stop-below", help="Stop an image once its flip probability's upper bound is below this."
        ),
        stop_above: float = typer.Option(0.5, "--stop-above", help="... or its lower bound is above this."),
        precision: float = typer.Option(
            None, "--precision", help="... or its interval's half-width is at most this (default: off)."
        ),
        sequential: bool = typer.Option(
            True, "--sequential/--fixed-n", help="Sequential stopping, or always --samples."
        ),
        threshold: float = typer.Option(
            0.5, "--threshold", help="Melanoma decision threshold on p_mel/(p_mel+p_ben)."
        ),
        out: Path = typer.Option(Path("runs/robustness"), "--out", help="Run directory (rerun to resume)."),
        batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per forward pass."),
        images_per_unit: int = typer.Option(8, "--images-per-unit", min=1, help="Images per work unit."),
        model_option: list[str] = common.model_options_option(),
        melanoma_classes: str = common.melanoma_classes_option(),
        benign_classes: str = common.benign_classes_option(),
        device: str = typer.Option(None, "--device", help="torch device (cpu, cuda)."),
        defence: list[str] = common.defence_option(),
        executor: str = common.executor_option("one transform x a few images per unit"),
        address: str = common.address_option(),
        workers: int = common.workers_option(),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Average-case robustness: per image, up to --samples draws of each transform over its clinical
        range; flip probability per image (Clopper-Pearson), flip rate per transform with CIs over lesions,
        fragile shares, performance under each transform vs clean, strata by source and estimated skin tone.

        Writes RUN/robustness.json, robustness.csv, robustness_images.csv, robustness_strata.csv, figures,
        per-unit results in RUN/robustness/ (a rerun resumes) and RUN/run.json.
        """
        from dermadv.errors import DataError
        from dermadv.robustness.run import StopRule, benchmark_keys, parse_transforms, run_robustness
        from dermadv.runs.executor import executor_json, format_executor_summary
        from dermadv.runs.provenance import model_file_sha256

        try:
            keys = parse_transforms(transforms, severity) if transforms.strip() else []
            if benchmark:
                keys += benchmark_keys([b.strip().lower() for b in benchmark.split(",") if b.strip()])
            stop = StopRule(samples, check_every, stop_below, stop_above, precision, enabled=sequential)
        except ValueError as e:
            raise DataError(str(e)) from None
        if not keys:
            raise DataError("nothing to measure: give --transforms and/or --benchmark")
        if not 0 < threshold < 1:
            raise DataError(f"--threshold must be strictly between 0 and 1, got {threshold}")
        clf = common.load_cli_model(
            model, model_option, melanoma_classes, benign_classes, device, defences=defence, executor=executor
        )
        chosen, sources = select_sources(list(data), split, subset, ids, limit, allow_edited_split)
        run_executor = common.cli_executor(
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
        result = run_robustness(
            clf,
            chosen,
            out,
            keys,
            stop=stop,
            sampler=sampler,
            seed=seed,
            threshold=threshold,
            batch_size=batch_size,
            images_per_unit=images_per_unit,
            sources=sources,
            executor=run_executor,
            progress=progress,
            data_info={
                "paths": [str(Path(d).resolve()) for d in data],
                "split": str(split.resolve()) if split else None,
                "subset": subset,
                "ids": ids,
                "limit": limit,
            },
            extra_settings={"allow_edited_split": allow_edited_split},
            provenance={"model_spec": model},
            model_file_hash=model_file_sha256(model),
        )
        if as_json:
            s = result.summary
            typer.echo(
                json.dumps(
                    {
                        "run": str(out),
                        "rows": s["rows"],
                        "sam_c": s.get("sam_c"),
                        "sam_p": s.get("sam_p"),
                        "forwards": s["forwards"],
                        "forwards_fixed_n": s["forwards_fixed_n"],
                        "files": result.files,
                        "computed_units": len(result.computed),
                        "resumed_units": len(result.resumed),
                        "changed_images": result.changed_images,
                        "seconds": round(result.seconds, 2),
                        **executor_json(run_executor),
                    },
                    indent=2,
                )
            )
            return
        typer.echo(format_rows(result.summary))
        s = result.summary
        typer.echo(
            f"{out}: {len(result.computed)} unit(s) computed, {len(result.resumed)} resumed "
            f"({result.seconds:.1f} s); {s['forwards']} forwards against {s['forwards_fixed_n']} with a "
            f"fixed --samples. Table: {result.files['csv']}"
        )
        line = format_executor_summary(run_executor.stats())
        if line:
            typer.echo(line)

    @app.command("sam-submission")
    def sam_submission(
        model: str = common.model_option(),
        template: Path = typer.Option(
            ..., "--template", help="The benchmark's submission template CSV (image_path column)."
        ),
        root: Path = typer.Option(..., "--root", help="Folder the template's image paths are relative to."),
        out: Path = typer.Option(..., "--out", help="Submission CSV to write (image_path,nevus,melanoma)."),
        batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per forward pass."),
        model_option: list[str] = common.model_options_option(),
        melanoma_classes: str = common.melanoma_classes_option(),
        benign_classes: str = common.benign_classes_option(),
        device: str = typer.Option(None, "--device", help="torch device (cpu, cuda)."),
        defence: list[str] = common.defence_option(),
    ) -> None:
        """Score the SAM / SAM-C / SAM-P images listed in a submission template with any model and write the
        submission file: melanoma = p_mel/(p_mel+p_ben) of the model, nevus = 1 - melanoma."""
        from dermadv.robustness.submission import score_sam_template

        clf = common.load_cli_model(
            model, model_option, melanoma_classes, benign_classes, device, defences=defence
        )
        n = score_sam_template(clf, template, root, out, batch_size=batch_size)
        typer.echo(f"{out}: {n} images scored with {clf.describe().get('name', model)}")

    @app.command("transforms")
    def list_transforms(
        size: int = typer.Option(299, "--size", min=8, help="Image size the ranges are shown for (pixels)."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """Every registered transform: its parameters with their clinical range, identity and severity 1
        and 5 values, and where its definition comes from. Sweep points, attacks and robustness runs all
        use these."""
        from dermadv.perturb.base import PERTURBATIONS

        shape = (size, size, 3)
        listing = []
        for name in PERTURBATIONS.names():
            t = PERTURBATIONS.create(name)
            space = t.space(shape)
            entry: dict[str, Any] = {
                "name": name,
                "params": [
                    {
                        "name": p.name,
                        "low": p.low,
                        "high": p.high,
                        "identity": p.identity,
                        "integer": p.integer,
                    }
                    for p in space
                ],
                "source": t.source,
            }
            try:
                entry["severity_1"] = t.severity_params(1, shape)[0].tolist()
                entry["severity_5"] = t.severity_params(5, shape)[0].tolist()
            except (ValueError, NotImplementedError):
                pass
            listing.append(entry)
        if as_json:
            typer.echo(json.dumps(listing, indent=2))
            return
        for e in listing:
            params = ", ".join(f"{p['name']} [{p['low']:g}, {p['high']:g}]" for p in e["params"])
            typer.echo(f"{e['name']}: {params}")
            if e["source"]:
                typer.echo(f"    source: {e['source']}")
