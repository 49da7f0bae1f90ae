"""CLI: ``dermadv attack`` (run a resumable attack campaign) and ``dermadv attack summarize RUN``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NoReturn

import typer

from dermadv.commands import common


def _usage_error(ctx: typer.Context, message: str) -> NoReturn:
    """Usage + message on stderr and exit status 2, as a usage error of the command line parser."""
    typer.echo(f"{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help.\n\nError: {message}", err=True)
    raise typer.Exit(2)


def _split_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise typer.BadParameter(f"{what}: empty list")
    return items


def _eps_list(text: str | None) -> list[float] | None:
    items = _split_list(text, "--eps")
    if items is None:
        return None
    try:
        values = [float(t) for t in items]
    except ValueError as exc:
        raise typer.BadParameter(
            f"--eps: expected comma-separated numbers (pixel units 0..255), got {text!r}"
        ) from exc
    if any(v <= 0 for v in values):
        raise typer.BadParameter(f"--eps: values must be > 0, got {text!r}")
    return values


def _check_choices(fitness: str | None, criterion: str | None, stop: str | None, search: str | None) -> None:
    """A BadParameter naming the flag whose value is not one of its choices."""
    for flag, value, choices in (
        ("--fitness", fitness, ("study", "margin")),
        ("--criterion", criterion, ("group", "top1")),
        ("--stop", stop, ("threshold", "success")),
    ):
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
    if search is not None:
        from dermadv.attacks import SEARCHES

        if search not in SEARCHES:
            raise typer.BadParameter(f"--search {search!r}: choose one of {', '.join(SEARCHES.names())}")


def _batch_size(text: str | None) -> int | str | None:
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        value = int(text)
    except ValueError:
        raise typer.BadParameter(
            f"--batch-size: expected a positive integer or 'auto', got {text!r}"
        ) from None
    if value < 1:
        raise typer.BadParameter(f"--batch-size: expected a positive integer or 'auto', got {text!r}")
    return value


def _fmt(v: Any, pct: bool = False) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{100 * v:.1f}%" if pct else f"{v:.3g}"
    return "-" if v is None else str(v)


def format_table(table: list[dict[str, Any]]) -> str:
    """Human-readable success table."""
    head = [
        "attack",
        "images",
        "misclass.",
        "attempted",
        "success",
        "rate",
        "95% CI",
        "med.queries(succ)",
        "med.queries(all)",
        "p90 q(succ)",
        "med.s",
        "search",
        "criterion",
    ]
    lines = [head]
    for r in table:
        ci = (
            "-"
            if r["ci_low"] is None or (isinstance(r["ci_low"], float) and math.isnan(r["ci_low"]))
            else f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}%"
        )
        lines.append(
            [
                r["attack"],
                str(r["images"]),
                str(r["misclassified"]),
                str(r["attempted"]),
                str(r["successful"]),
                _fmt(r["success_rate"], pct=True),
                ci,
                _fmt(r["median_queries_success"]),
                _fmt(r["median_queries_all"]),
                _fmt(r.get("p90_queries_success")),
                _fmt(r["median_seconds"]),
                r.get("search") or "-",
                r.get("criterion") or "-",
            ]
        )
        if r.get("errors"):
            lines[-1][0] += f" ({r['errors']} errors)"
    return common.aligned_table(lines)


def register(app: typer.Typer) -> None:
    """Add ``attack`` (a group: the campaign itself, plus ``summarize``) to the dermadv app."""
    attack_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @attack_app.callback(invoke_without_command=True)
    def attack(
        ctx: typer.Context,
        model: str = typer.Option(
            None, "--model", help="Model: file, registered name (e.g. sklesion) or module:function."
        ),
        model_option: list[str] = common.model_options_option(),
        defence: list[str] = common.defence_option(),
        data: Path = typer.Option(None, "--data", help="Dataset directory or metadata CSV."),
        split: Path = typer.Option(None, "--split", help="Split CSV from `dermadv data split`."),
        allow_edited_split: bool = common.allow_edited_split_option(),
        subset: str = typer.Option(None, "--subset", help="Subset of the split to attack, e.g. val."),
        attacks: str = typer.Option(
            None,
            "--attacks",
            help="Comma-separated attacks (fgsm,pgd,pixel,color,rotation; evolve or a plugin's when named). "
            "Default: the study's five that the model supports (gradient attacks only on white-box "
            "models; naming one for a black-box model is an error).",
        ),
        attack_option: list[str] = typer.Option(
            None,
            "--attack-option",
            "-a",
            help="Option of one attack NAME.KEY=VALUE (repeatable), e.g. color.delta=0.05 pgd.steps=20 "
            "evolve.perturbation=shift; overrides the shared flags (--popsize...) for that attack.",
        ),
        out: Path = typer.Option(
            None, "--out", help="Run directory (created; rerun the same command to resume)."
        ),
        limit: int = typer.Option(None, "--limit", min=1, help="Attack at most N images."),
        ids: str = typer.Option(None, "--ids", help="Comma-separated image ids to attack."),
        direction: str = typer.Option(
            "mel->nv", "--direction", help="mel->nv attacks melanomas, nv->mel attacks naevi."
        ),
        seed: int = typer.Option(0, "--seed", help="Campaign seed; each job's seed derives from it."),
        batch_images: int = typer.Option(
            1,
            "--batch-images",
            min=1,
            help="Evolve N images' populations together (one forward pass; on a GPU use e.g. 64).",
        ),
        batch_size: str = typer.Option(
            None,
            "--batch-size",
            help="Images per forward pass (default: the model's own batch size, set by its adapter); "
            "'auto': the batch of best measured throughput on this model and device (cached). "
            "Set it >= the population (60 for color/rotation, 300 for pixel at popsize 20) to score "
            "a whole generation in one pass.",
        ),
        search: str = typer.Option(
            None,
            "--search",
            help="Search strategy of the black-box attacks: de (default, the study's), grid, random, "
            "sparse_rs, two_stage, cmaes (a registered search).",
        ),
        search_option: list[str] = typer.Option(
            None,
            "--search-option",
            help="Option of the search KEY=VALUE (repeatable), e.g. points=31,5,5 (grid), k=500 (random).",
        ),
        max_queries: int = typer.Option(
            None, "--max-queries", min=1, help="Query budget per image (initial prediction included)."
        ),
        chunk: int = typer.Option(
            None,
            "--chunk",
            min=1,
            help="Candidates per image per forward pass; the search stops at the first candidate that "
            "meets the stop rule (default: a whole population for DE, as the study checked).",
        ),
        criterion: str = typer.Option(
            None,
            "--criterion",
            help="Success: group (P(benign group) > P(melanoma group), default) or top1 (top-1 class "
            "melanoma before, any other after).",
        ),
        stop: str = typer.Option(
            None, "--stop", help="Stop rule: threshold (P(target) > --threshold, default) or success."
        ),
        popsize: int = typer.Option(
            None,
            "--popsize",
            min=1,
            help="Differential evolution population multiplier (scipy's popsize): max(5, popsize x D) "
            "candidates per generation for D parameters; default 20 (60 for color/rotation, 300 for pixel).",
        ),
        max_generations: int = typer.Option(
            None,
            "--max-generations",
            min=1,
            help="Stop after this many generations after the initial population (scipy's counting; "
            "default 20, the study's callback allowed 21).",
        ),
        threshold: float = typer.Option(
            None,
            "--threshold",
            min=0.0,
            max=1.0,
            help="Stop early when the wrong class reaches this confidence (study: 0.9).",
        ),
        fitness: str = typer.Option(None, "--fitness", help="Fitness: study (confidence) or margin."),
        eps: str = typer.Option(
            None,
            "--eps",
            help="Epsilons in pixel units, e.g. 1,2,4,8: FGSM tries each, PGD uses the largest.",
        ),
        melanoma_classes: str = common.melanoma_classes_option(),
        benign_classes: str = common.benign_classes_option(),
        device: str = typer.Option(
            None, "--device", help="torch device (cpu, cuda); default: cuda if present."
        ),
        executor: str = common.executor_option("images are spread over workers"),
        address: str = common.address_option(),
        workers: int = common.workers_option(),
        retry_errors: bool = typer.Option(False, "--retry-errors", help="Redo jobs stored as errors."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Run attacks on every selected image into RUN (resumable: rerun the same command).

        Writes RUN/results.sqlite (one row per image x attack), RUN/images/*.png and RUN/run.json,
        then prints the success table. See also `dermadv attack summarize RUN`.
        """
        if ctx.invoked_subcommand is not None:
            return
        if model is None and data is None and out is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        for name, value in (("--model", model), ("--data", data), ("--out", out)):
            if value is None:
                _usage_error(ctx, f"Missing option '{name}'.")
        if subset is not None and split is None:
            _usage_error(ctx, "--subset needs --split")
        _check_choices(fitness, criterion, stop, search)

        from dermadv.campaign.runner import file_sha256, run_campaign
        from dermadv.campaign.summary import summarize_run
        from dermadv.data import dataset_hash, select_samples
        from dermadv.models.registry import parse_model_options
        from dermadv.vocab import check_direction

        source_diagnosis = check_direction(direction).source_diagnosis
        attack_names = _split_list(attacks, "--attacks")
        options = {
            "batch_size": _batch_size(batch_size),
            "search": search,
            "search_options": ",".join(search_option) if search_option else None,
            "max_queries": max_queries,
            "chunk": chunk,
            "criterion": criterion,
            "stop": stop,
            "popsize": popsize,
            "max_generations": max_generations,
            "threshold": threshold,
            "fitness": fitness,
            "eps": _eps_list(eps),
        }
        clf = common.load_cli_model(
            model, model_option, melanoma_classes, benign_classes, device, defences=defence, executor=executor
        )
        if attack_option:  # NAME.KEY=VALUE, checked against the attacks this campaign runs
            from dermadv.attacks import parse_attack_options
            from dermadv.campaign.runner import resolve_attacks

            options.update(parse_attack_options(attack_option, resolve_attacks(attack_names, clf)[0]))
        samples = select_samples(
            data,
            split=split,
            subset=subset,
            classes=(source_diagnosis,),
            ids=_split_list(ids, "--ids"),
            limit=limit,
            allow_edited_split=allow_edited_split,
        )
        from dermadv.runs.executor import executor_json, format_executor_summary, make_executor
        from dermadv.runs.specs import ModelSpec

        campaign_executor = make_executor(
            executor,
            ModelSpec(
                model,
                _split_list(melanoma_classes, "--melanoma-classes"),
                _split_list(benign_classes, "--benign-classes"),
                device,
                parse_model_options(model_option),
            ),
            model=clf,
            address=address,
            workers=workers,
            verbose=progress,
        )
        model_path = Path(model).expanduser()
        model_hash = file_sha256(model_path) if model_path.is_file() else None
        data_info = {
            "path": str(Path(data).resolve()),
            "split": str(split.resolve()) if split else None,
            "subset": subset,
        }
        provenance = {
            "model_spec": model,
            "data": {
                **data_info,
                "hash": dataset_hash(samples),
                "n_selected": len(samples),
                "ids": [s.image_id for s in samples],
            },
        }
        common.hold_out(ctx, out)  # one writer from the settings check to the summary files
        result = run_campaign(
            clf,
            samples,
            out,
            attack_names,
            direction=direction,
            seed=seed,
            batch_images=batch_images,
            attack_options=options,
            data_info=data_info,
            provenance=provenance,
            model_file_hash=model_hash,
            progress=progress,
            executor=campaign_executor,
            retry_errors=retry_errors,
            extra_settings={"allow_edited_split": allow_edited_split},
        )
        if options["batch_size"] == "auto":
            from dermadv.attacks.throughput import measured

            tuned = measured(clf)
            if tuned is not None:
                curve = ", ".join(
                    f"{r['batch_size']}: {r['images_per_s']:.1f}/s" for r in tuned.get("curve", [])
                )
                result.notes.append(
                    f"forward batch {tuned['batch_size']} (measured images/s by batch: {curve})"
                )
        for note in result.notes:
            typer.echo(f"note: {note}", err=True)
        summary = summarize_run(out)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "run": str(out),
                        "attacks_run": result.attacks,
                        "jobs": result.planned,
                        "already_done": result.already_done,
                        "ran": result.ran,
                        "changed_images": result.changed_images,
                        "seconds": round(result.seconds, 3),
                        "notes": result.notes,
                        **executor_json(campaign_executor),
                        "summary": summary,
                    },
                    indent=2,
                )
            )
        else:
            typer.echo(
                f"{out}: {result.ran} job(s) run, {result.already_done} already done, "
                f"{result.planned} in this selection ({result.seconds:.1f} s)"
            )
            summary_line = format_executor_summary(campaign_executor.stats())
            if summary_line:
                typer.echo(summary_line)
            typer.echo(format_table(summary["attacks"]))
            typer.echo(
                f"table: {summary['files']['csv']}  heat map: {summary['files']['heatmap']}  "
                f"success vs queries: {summary['files']['queries']}"
            )

    @attack_app.command("summarize")
    def summarize(
        run: Path = typer.Argument(..., help="Campaign run directory (holds results.sqlite and run.json)."),
        out: Path = typer.Option(
            None, "--out", help="Where to write summary.csv/heatmap.png (default RUN/summary)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Success table per attack (Wilson 95% CI, median and 90th-percentile queries per success,
        time, search, criterion) as CSV, the before/after melanoma-score heat map PNG and the success
        rate against query budget with Wilson bands (queries.png)."""
        from dermadv.campaign.summary import summarize_run

        summary = summarize_run(run, out)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            typer.echo(format_table(summary["attacks"]))
            typer.echo(
                f"table: {summary['files']['csv']}  heat map: {summary['files']['heatmap']}  "
                f"success vs queries: {summary['files']['queries']}"
            )

    app.add_typer(
        attack_app,
        name="attack",
        help="Attack a model on real images (resumable campaign); `attack summarize RUN` tabulates a run.",
    )
