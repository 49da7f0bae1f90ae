"""CLI: ``dermadv models list | describe | export-onnx | export-torchscript``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dermadv.commands.common import MODEL_HELP, defence_option, load_cli_model
from dermadv.fileio import atomic_write_json

models_app = typer.Typer(
    help="List, describe and export models (any framework, one interface).", no_args_is_help=True
)

CLASSES_HELP = "Class names in the model's output order, comma-separated (for files without metadata)."
OPTION_HELP = "Adapter option KEY=VALUE (repeatable): input_size, mean, std, normalize, output, decoder..."


def _verification_inputs(model: Any, data: Path | None, n: int) -> tuple[list[Any], list[Any] | None, str]:
    """Up to ``n`` real images (with metadata) from ``data``, else seeded noise images."""
    import numpy as np

    if data is not None:
        from dermadv.data import load_dataset

        ds = load_dataset(data, progress=False)
        samples = [s for s in ds.samples if s.path is not None][:n]
        images = [model.load_image(str(s.path)) for s in samples]
        return images, [s.metadata() for s in samples], f"{len(images)} images from {data}"
    rng = np.random.default_rng(0)
    h, w = model.input_size
    images = list(rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8))
    return images, None, f"{n} random noise images (pass --data for real ones)"


def list_models(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered model names and the model formats dermadv can load (plugins included)."""
    from dermadv.models.formats import formats
    from dermadv.models.registry import NAMED_MODELS, file_types, model_target

    named = {name: model_target(name) for name in NAMED_MODELS.names()}
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "named": named,
                    "file_types": file_types(),
                    "formats": {f.name: f.to_json() for f in formats()},
                },
                indent=2,
            )
        )
        return
    typer.echo("Registered models (--model NAME):")
    for name, target in sorted(named.items()):
        typer.echo(f"  {name:<16} {target}")
    typer.echo("Model formats (--model PATH or module:function; options via --model-option KEY=VALUE):")
    for f in formats():
        source = "" if f.source == "dermadv" else f" [from {f.source}]"
        typer.echo(f"  {f.kind:<18} {f.name}: {f.summary()}{source}")


def describe(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    classes: str | None = typer.Option(None, "--classes", help=CLASSES_HELP),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help=OPTION_HELP),
    melanoma_classes: str | None = typer.Option(
        None, "--melanoma-classes", help="Classes counted as melanoma."
    ),
    benign_classes: str | None = typer.Option(
        None, "--benign-classes", help="Classes counted as benign naevus."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    defence: list[str] = defence_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Load a model and show what it is: classes, groups, input size, decoder, preprocessing (and the
    defences in front of it)."""
    clf = load_cli_model(
        model, model_option, melanoma_classes, benign_classes, device, classes=classes, defences=defence
    )
    d = clf.describe()
    if json_out:
        typer.echo(json.dumps(d, indent=2, default=str))
        return
    for key, value in d.items():
        if isinstance(value, dict) and key in ("metadata", "exported_from"):
            value = {k: v for k, v in value.items() if k not in ("site_groups", "metadata")}
        typer.echo(f"{key:>18}: {value}")


def export_onnx_cmd(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", help="ONNX file to write."),
    classes: str | None = typer.Option(None, "--classes", help=CLASSES_HELP),
    model_option: list[str] = typer.Option([], "--model-option", "-o", help=OPTION_HELP),
    data: Path | None = typer.Option(None, "--data", help="Dataset whose first images verify the export."),
    n_verify: int = typer.Option(4, "--n-verify", min=1, help="Images used to verify the export."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's)."),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Largest accepted probability difference."),
) -> None:
    """Export a white-box model (checkpoint, TorchScript, Keras, sklesion) to ONNX and verify it.

    The graph takes 0..255 pixels (N x 3 x H x W, dynamic batch) plus metadata for models that use it,
    includes the preprocessing, and returns probabilities. Writes OUT and OUT.json (provenance).
    """
    from dermadv.errors import ModelError
    from dermadv.models.export import compare_probs, export_onnx
    from dermadv.models.onnx_adapter import OnnxClassifier

    if out.suffix.lower() != ".onnx":
        raise ModelError(f"--out {out}: the file name must end in .onnx")
    clf = load_cli_model(model, model_option, device="cpu", classes=classes)
    typer.echo(f"exporting {clf.name} ({type(clf).__name__}) to {out} ...", err=True)
    export_onnx(clf, out, opset=opset)
    onnx_model = OnnxClassifier.from_file(out)
    images, metadata, what = _verification_inputs(clf, data, n_verify)
    diff = compare_probs(clf, onnx_model, images, metadata)
    typer.echo(f"verified on {what}: max abs probability difference ONNX vs source = {diff:.3g}")
    atomic_write_json(
        Path(f"{out}.json"),
        {
            "onnx": str(out),
            "source": clf.describe(),
            "verification": {"inputs": what, "max_abs_diff": diff},
            "onnx_model": onnx_model.describe(),
        },
    )
    if diff > tolerance:
        raise ModelError(
            f"{out}: ONNX probabilities differ from the source model by {diff:.3g} "
            f"(> --tolerance {tolerance})"
        )


def export_torchscript_cmd(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", help="TorchScript file to write (.ts or .pt)."),
    data: Path | None = typer.Option(None, "--data", help="Dataset whose first images verify the export."),
    n_verify: int = typer.Option(4, "--n-verify", min=1, help="Images used to verify the export."),
) -> None:
    """Trace a torch model (dermadv checkpoint) to TorchScript with its preprocessing metadata."""
    from dermadv.models.export import compare_probs, export_torchscript
    from dermadv.models.torchscript_adapter import TorchScriptClassifier

    clf = load_cli_model(model, device="cpu")
    export_torchscript(clf, out)
    ts = TorchScriptClassifier.from_file(out, device="cpu")
    images, metadata, what = _verification_inputs(clf, data, n_verify)
    diff = compare_probs(clf, ts, images, metadata)
    typer.echo(f"verified on {what}: max abs probability difference TorchScript vs source = {diff:.3g}")


def register(app: typer.Typer) -> None:
    """Add ``dermadv models ...`` to the app."""
    models_app.command("list")(list_models)
    models_app.command("describe")(describe)
    models_app.command("export-onnx")(export_onnx_cmd)
    models_app.command("export-torchscript")(export_torchscript_cmd)
    app.add_typer(models_app, name="models")
