"""CLI: ``dermadv explain`` -- what drives the call (occlusion, Integrated Gradients, Grad-CAM)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the dermadv app."""

    @app.command("explain")
    def explain_cmd(
        model: str = typer.Option(..., "--model", help="Model to explain (anything --model takes)."),
        data: Path | None = typer.Option(None, "--data", help="Data set holding the images to explain."),
        run: Path | None = typer.Option(
            None, "--run", help="Instead of --data: a campaign RUN; explains its original/adversarial pairs."
        ),
        ids: str = typer.Option("", "--ids", help="Image ids, comma-separated (with --run: default 4 rows)."),
        methods: str = typer.Option(
            "", "--methods", help="occlusion, integrated_gradients, gradcam (default: all the model allows)."
        ),
        out: Path = typer.Option(
            Path("explain"), "--out", help="Folder for the PNG/NPY maps and explain.json."
        ),
    ) -> None:
        """Write attribution maps as PNGs: red = pushes the call towards melanoma, blue = towards benign.

        Occlusion works for every model (black-box, batched sliding patches); white-box models also get
        Integrated Gradients and Grad-CAM through Captum (the 'explain' extra)."""
        from dermadv.errors import DataError
        from dermadv.explain.run import explain_campaign, explain_dataset
        from dermadv.models.registry import load_model

        id_list = [i.strip() for i in ids.split(",") if i.strip()]
        method_list = [m.strip() for m in methods.split(",") if m.strip()] or None
        if (data is None) == (run is None):
            raise DataError("give either --data D --ids ... or --run RUN")
        clf = load_model(model)
        log = lambda m: typer.echo(m, err=True)  # noqa: E731
        if run is not None:
            where = explain_campaign(clf, run, out, ids=id_list or None, methods=method_list, log=log)
        else:
            assert data is not None
            where = explain_dataset(clf, data, id_list, out, methods=method_list, log=log)
        typer.echo(f"maps: {where} ({len(list(where.glob('*.png')))} PNGs; index {where / 'explain.json'})")
