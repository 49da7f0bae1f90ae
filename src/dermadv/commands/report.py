"""CLI: ``dermadv report`` -- one self-contained HTML report from run folders."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``report`` to the dermadv app."""

    @app.command("report")
    def report(
        runs: list[Path] = typer.Argument(
            ...,
            help="Run folders: evaluate runs (metrics.json, predictions.csv), perturb runs "
            "(perturbation.json) and attack runs (results.sqlite); the kind is detected from the files.",
        ),
        out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
        reference: Path = typer.Option(
            None,
            "--reference",
            help="CSV of reference results to show beside your models: columns model (or name), any of "
            "accuracy, sensitivity, specificity, auc (fractions or %), optional source.",
        ),
        title: str = typer.Option("dermadv report", "--title", help="Report title."),
        examples: int = typer.Option(2, "--examples", min=0, help="Example images per attack and model."),
        pdf: Path = typer.Option(
            None, "--pdf", help="Also print the report to this PDF (headless Chromium), e.g. for a dossier."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Write ONE self-contained HTML report (figures embedded, no external resources) with model
        metrics and CIs, ROC curves, the perturbation table and plot, attack success per model side by
        side, the before/after confidence heat map and example attack grids."""
        from dermadv.report.html import SECTIONS, build_report
        from dermadv.report.runs import detect_run

        path = build_report(runs, out, reference_csv=reference, title=title, examples_per_attack=examples)
        kinds = {str(r): detect_run(r).kinds for r in runs}
        pdf_facts: dict[str, int] | None = None
        if pdf is not None:
            from dermadv.report.pdf import html_to_pdf
            from dermadv.report.pdf import pdf_facts as count

            pdf_facts = count(html_to_pdf(path, pdf))
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "report": str(path),
                        "runs": kinds,
                        "sections": [k for k, _ in SECTIONS],
                        "bytes": path.stat().st_size,
                        **({"pdf": str(pdf), "pdf_pages": pdf_facts["pages"]} if pdf_facts else {}),
                    },
                    indent=2,
                )
            )
        else:
            typer.echo(
                f"report: {path} ({path.stat().st_size / 1e6:.1f} MB; open it in any browser, offline)"
            )
            if pdf_facts:
                typer.echo(f"pdf: {pdf} ({pdf_facts['pages']} pages, {pdf_facts['images']} images)")
