"""``dermadv defend compare``: defences measured against the same (and adaptive) attacks."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dermadv.commands import common


def register(app: typer.Typer) -> None:
    """Add ``dermadv defend ...`` to the app."""
    defend_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)

    @defend_app.command("compare")
    def compare(
        model: str = common.model_option(),
        data: list[Path] = typer.Option(
            ..., "--data", help="Dataset directory or metadata CSV (repeatable)."
        ),
        defences: str = typer.Option(
            "none;color-constancy:p=6;tta;tta:rotations=8;color-constancy:p=6+tta:rotations=8",
            "--defences",
            help="Chains to compare, separated by ';', defences within a chain by '+' (specs as --defence); "
            "the undefended model (none) is always the reference.",
        ),
        attacks: str = typer.Option(
            "color,rotation", "--attacks", help="Registered attacks run through each defence."
        ),
        adaptive: bool = typer.Option(
            True, "--adaptive/--no-adaptive", help="Also run the adaptive attacks."
        ),
        popsize: int = typer.Option(
            None, "--popsize", min=1, help="DE population multiplier (default: the study's)."
        ),
        maxiter: int = typer.Option(
            None, "--max-generations", min=0, help="DE generations (default: the study's)."
        ),
        direction: str = typer.Option("mel->nv", "--direction", help="mel->nv or nv->mel."),
        attack_limit: int = typer.Option(
            None, "--attack-limit", min=1, help="Attack at most N source images."
        ),
        transforms: str = typer.Option(
            "color,rotation", "--transforms", help="Robustness-run transforms for flip rates ('' to skip)."
        ),
        flip_samples: int = typer.Option(32, "--flip-samples", min=1, help="Draws per image and transform."),
        certify: str = typer.Option(
            "smoothing-gain,smoothing-rotation,exact-gain",
            "--certify",
            help="Certificate methods ('' to skip): smoothing-gain, smoothing-rotation, exact-gain.",
        ),
        certify_option: list[str] = typer.Option(
            None,
            "--certify-option",
            help="KEY=VALUE: n0, n, alpha, delta, max_angle, max_images, sigma_gain (log units), "
            "sigma_rotation (degrees).",
        ),
        certify_limit: int = typer.Option(None, "--certify-limit", min=1, help="Certify at most N images."),
        split: Path = typer.Option(None, "--split", help="Split CSV from `dermadv data split`."),
        allow_edited_split: bool = common.allow_edited_split_option(),
        subset: str = typer.Option(None, "--subset", help="Subset of the split: train or val."),
        ids: str = typer.Option(None, "--ids", help="Comma-separated image ids to use."),
        limit: int = typer.Option(None, "--limit", min=1, help="Use at most N images per --data."),
        threshold: float = typer.Option(0.5, "--threshold", help="Melanoma iff p_mel/(p_mel+p_ben) >= this."),
        seed: int = typer.Option(0, "--seed", help="Seed of attacks, draws and smoothing noise."),
        out: Path = typer.Option(Path("runs/defend"), "--out", help="Run directory."),
        model_option: list[str] = common.model_options_option(),
        melanoma_classes: str = common.melanoma_classes_option(),
        benign_classes: str = common.benign_classes_option(),
        device: str = typer.Option(None, "--device", help="torch device (cpu, cuda)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """For the undefended model and each defence chain: clean accuracy, sensitivity, specificity and AUC
        with CIs; attack success (Wilson CI), median queries and forwards, for each attack and the adaptive
        attacks aimed at the defence, with threat models; flip rates; certificates and certified robust
        accuracy; paired McNemar and DeLong tests against the undefended model.

        Writes RUN/defend.json, defend.csv, defend_attacks.csv, defend_certificates.csv, RUN/robustness/
        and RUN/run.json (kind defend); `dermadv report` shows it.
        """
        from dermadv.commands.robustness import select_sources
        from dermadv.errors import DataError
        from dermadv.models.defences.compare import compare_defences, format_summary, parse_chains
        from dermadv.models.registry import parse_model_options

        if not 0 < threshold < 1:
            raise DataError(f"--threshold must be strictly between 0 and 1, got {threshold}")
        chains = parse_chains(defences)
        clf = common.load_cli_model(model, model_option, melanoma_classes, benign_classes, device)
        chosen, _ = select_sources(list(data), split, subset, ids, limit, allow_edited_split)
        summary = compare_defences(
            clf,
            chosen,
            out,
            chains,
            attacks=common.split_list(attacks) or [],
            adaptive=adaptive,
            attack_options={"popsize": popsize, "maxiter": maxiter},
            direction=direction,
            attack_limit=attack_limit,
            transforms=common.split_list(transforms) or [],
            flip_samples=flip_samples,
            certify=common.split_list(certify) or [],
            certify_options=parse_model_options(certify_option),
            certify_limit=certify_limit,
            threshold=threshold,
            seed=seed,
            progress=progress,
            data_info={"paths": [str(Path(d).resolve()) for d in data], "ids": ids, "limit": limit},
        )
        if as_json:
            typer.echo(json.dumps(summary, indent=2, default=str))
            return
        typer.echo(format_summary(summary))
        typer.echo(f"{out}: tables {summary['files']['csv']}, {summary['files']['attacks_csv']}")

    app.add_typer(
        defend_app, name="defend", help="Defences: compare them against the same and adaptive attacks."
    )
