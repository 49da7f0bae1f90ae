"""Options and helpers shared by the commands that take ``--model`` (evaluate, perturb, attack, models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

#: Fixed text: building it from the format registries would import every adapter at CLI start-up
#: (--help went from about 0.1 s to 0.35 s); `dermadv models list` lists the formats, plugins included.
MODEL_HELP = (
    "Model: a model file (dermadv checkpoint or TorchScript .pt/.pth/.ts, Keras .keras, ONNX .onnx, or a "
    "plugin's format: see `dermadv models list`), a registered name (e.g. sklesion) or "
    "package.module:function."
)


def model_option() -> Any:
    return typer.Option(..., "--model", help=MODEL_HELP)


def model_options_option() -> Any:
    return typer.Option(
        None,
        "--model-option",
        "-o",
        help="Adapter option KEY=VALUE (repeatable), e.g. classes=nv,mel input_size=224 output=probs.",
    )


DEFENCE_HELP = (
    "Defence in front of the model, NAME or NAME:KEY=VALUE[,KEY=VALUE] (repeatable: the image meets them "
    "in the order given), e.g. color-constancy:p=6, tta (D4), tta:rotations=8, tta:gains=0.9;1;1.1, "
    "lowpass:sigma=1. Queries are counted in forwards of the undefended model."
)


def defence_option() -> Any:
    """``--defence SPEC`` (repeatable) for every command that takes ``--model``; pass the value to
    :func:`load_cli_model` as ``defences=``."""
    return typer.Option(None, "--defence", help=DEFENCE_HELP)


def check_defence_executor(defences: list[str] | None, executor: str) -> None:
    """A defended model runs in this process only: Ray workers reload the model from its spec."""
    from dermadv.errors import ModelError

    if defences and executor != "local":
        raise ModelError(
            f"--defence runs with --executor local only (the {executor} workers reload the model from "
            "--model without its defences)"
        )


def melanoma_classes_option() -> Any:
    return typer.Option(
        None, "--melanoma-classes", help="Model classes counted as melanoma (comma-separated)."
    )


def benign_classes_option() -> Any:
    return typer.Option(
        None, "--benign-classes", help="Model classes counted as benign naevus (comma-separated)."
    )


def allow_edited_split_option() -> Any:
    """``--allow-edited-split`` for every command that takes ``--split`` (see ``read_split``)."""
    return typer.Option(
        False,
        "--allow-edited-split",
        help="Use a --split that fails verification (rows edited since `dermadv data split` wrote it, "
        "or a lesion in two subsets); recorded in run.json.",
    )


def aligned_table(lines: list[list[str]]) -> str:
    """Rows of cells (the first row the header) as left-aligned text columns two spaces apart."""
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines)


def split_list(text: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None or empty -> None."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def check_device(device: str | None) -> None:
    """Refuse a ``--device`` torch cannot parse, or CUDA where there is none, with one clear line."""
    if device is None or device == "auto":
        return
    import torch

    from dermadv.errors import ModelError

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"--device {device!r} is not a torch device; use cpu or cuda (or cuda:N)") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"--device {device}: CUDA is not available on this machine; use --device cpu")


def hold_out(ctx: typer.Context, out: str | Path | None) -> None:
    """Hold the run folder ``--out`` (its ``RUN/.lock``) until the command of ``ctx`` returns.

    DataError, one line naming the holder's PID and command, when another process holds it.
    """
    if out is None:
        return
    from dermadv.runs.lock import hold_run

    ctx.call_on_close(hold_run(out).release)


def load_cli_model(
    model: str,
    model_option: list[str] | None = None,
    melanoma_classes: str | None = None,
    benign_classes: str | None = None,
    device: str | None = None,
    classes: str | None = None,
    defences: list[str] | None = None,
    executor: str = "local",
) -> Any:
    """Load ``--model`` with its adapter options and class-group overrides (every command's one path),
    behind the chain of ``--defence`` specs ``defences`` (the first is the first the image meets)."""
    from dermadv.models.defences.base import apply_defences
    from dermadv.models.registry import as_classes, load_model, parse_model_options

    check_device(device)
    check_defence_executor(defences, executor)
    if device == "auto":  # as `dermadv train --device auto`: CUDA when available, else the CPU
        device = None
    options: dict[str, Any] = parse_model_options(model_option)
    if classes:
        options["classes"] = classes
    loaded = load_model(
        model,
        melanoma_classes=as_classes(melanoma_classes, "--melanoma-classes"),
        benign_classes=as_classes(benign_classes, "--benign-classes"),
        device=device,
        **options,
    )
    return apply_defences(loaded, defences)


def executor_option(unit: str) -> Any:
    """``--executor local|ray``; ``unit`` says what one Ray work unit is (for the help text)."""
    return typer.Option(
        "local",
        "--executor",
        help=f"Where the work runs: local (this process) or ray (a Ray cluster, {unit}; pip install "
        "'dermadv[ray]'; data and model must be readable at the same path on every node).",
    )


def address_option() -> Any:
    return typer.Option(
        None, "--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: start Ray here)."
    )


def workers_option() -> Any:
    return typer.Option(
        None, "--workers", min=1, help="Ray workers (default: one per GPU, else one per CPU in the cluster)."
    )


def cli_executor(
    executor: str,
    clf: Any,
    model: str,
    model_option: list[str] | None,
    melanoma_classes: str | None,
    benign_classes: str | None,
    device: str | None,
    address: str | None,
    workers: int | None,
    progress: bool,
) -> Any:
    """The executor of ``--executor/--address/--workers`` for a command's loaded model ``clf`` (Ray
    workers load the same ``--model`` with the same options from its spec)."""
    from dermadv.models.registry import parse_model_options
    from dermadv.runs.executor import make_executor
    from dermadv.runs.specs import ModelSpec

    spec = ModelSpec(
        model,
        split_list(melanoma_classes),
        split_list(benign_classes),
        device,
        parse_model_options(model_option),
    )
    return make_executor(executor, spec, model=clf, address=address, workers=workers, verbose=progress)
