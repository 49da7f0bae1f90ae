"""CLI: ``dermadv demo`` -- the whole pipeline in one command, offline, on a CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the dermadv app."""

    @app.command("demo")
    def demo(
        data: Path = typer.Option(
            None,
            "--data",
            help="Dataset folder or label CSV (ISIC 2019/2018, HAM10000, class folders). Default: "
            "$DERMADV_DEMO_DATA, else a built-in SYNTHETIC set generated on the fly.",
        ),
        out: Path = typer.Option(Path("dermadv-demo"), "--out", help="Output folder (rerun to resume)."),
        size: str = typer.Option(
            "full", "--size", help="small (CI smoke run) or full; on 2 idle CPU cores ~20 s and ~80 s."
        ),
        sklesion: bool = typer.Option(
            True,
            "--sklesion/--no-sklesion",
            help="Also evaluate and attack the third-party sklesion model when installed: on the real ISIC "
            "2017 sample shipped as dermadv.samples, or with --data on that data set's validation images.",
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Split, train a small classifier, evaluate it, sweep perturbations, run every attack on a few
        melanomas, evaluate and attack the third-party sklesion model, score its adversarial images on
        other models, map what drives the calls, and write one HTML report (and a PDF) -- offline, on a CPU.

        Without --data our classifier is trained and tested on procedurally generated SYNTHETIC images
        (and every output says so), while sklesion runs on 24 real ISIC 2017 dermoscopy images shipped
        with dermadv (dermadv.samples, CC-0). On real data: dermadv demo --data /path/to/ISIC_2019
        """
        from dermadv.demo import ISIC_HINT, run_demo

        def log(message: str) -> None:
            typer.echo(message, err=as_json)

        result = run_demo(data=data, out=out, size=size, progress=progress, log=log, sklesion=sklesion)
        if result.synthetic:
            typer.secho(
                "These results are on SYNTHETIC images, not dermoscopy: they show the pipeline works, "
                "nothing about real classifiers.",
                fg=typer.colors.YELLOW,
                err=as_json,
            )
            typer.echo(ISIC_HINT, err=as_json)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
            return
        typer.echo(f"report: {result.report.resolve()}  (open it in a browser; it works offline)")
        typer.echo(f"all outputs: {result.out.resolve()}  ({result.seconds:.0f} s)")
        sys.stdout.flush()
