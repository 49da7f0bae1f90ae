"""CLI: ``dermadv transfer RUN... --models A,B`` -- score campaigns' adversarial images on other models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``transfer`` to the dermadv app."""

    @app.command("transfer")
    def transfer(
        runs: list[Path] = typer.Argument(..., help="Campaign RUN folders (written by dermadv attack)."),
        models: list[str] = typer.Option(
            ...,
            "--models",
            help="Target models, comma-separated or repeated: anything --model takes (a registered name "
            "such as sklesion or sklesion-onnx, a checkpoint, an ONNX/TorchScript/Keras file, a defence).",
        ),
        out: Path = typer.Option(Path("transfer"), "--out", help="Output folder (a transfer run)."),
        as_json: bool = typer.Option(False, "--json", help="Print the matrix as JSON."),
    ) -> None:
        """Score every saved adversarial image of the RUNs, with its original, on each target model.

        A transfer succeeds when the target called the original correctly and calls the adversarial
        image benign (for melanomas). Writes transfer.csv (attack x source x target, Wilson 95% CIs),
        transfer_rows.csv (per image) and transfer.json into --out; `dermadv report` draws the matrix."""
        from dermadv.transfer import run_transfer

        specs = [m.strip() for spec in models for m in spec.split(",") if m.strip()]
        result = run_transfer(runs, specs, out, log=lambda m: typer.echo(f"scoring {m}", err=True))
        if as_json:
            typer.echo(
                json.dumps({"out": str(out), "matrix": result.matrix, "notes": result.notes}, default=str)
            )
            return
        for m in result.matrix:
            rate = "–" if math.isnan(m["rate"]) else f"{100 * m['rate']:.1f}%"
            pair = f"{m['source']} -> {m['target']}"
            typer.echo(
                f"{m['attack']:10s} {pair}: {m['transferred']}/{m['attempted']} = {rate}"
                + ("" if math.isnan(m["ci_low"]) else f" ({100 * m['ci_low']:.1f}–{100 * m['ci_high']:.1f}%)")
            )
        for note in result.notes:
            typer.echo(f"note: {note}", err=True)
        typer.echo(f"written: {out / 'transfer.csv'}, {out / 'transfer.json'}")
