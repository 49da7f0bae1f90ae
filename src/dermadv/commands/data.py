"""CLI: ``dermadv data check`` (layout, counts, every problem) and ``dermadv data split``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dermadv.errors import DataError

if TYPE_CHECKING:
    from dermadv.data.dataset import Dataset

data_app = typer.Typer(
    name="data",
    help="Inspect a dataset (layout, counts, problems) and make train/validation splits.",
    no_args_is_help=True,
    add_completion=False,
)


def register(app: typer.Typer) -> None:
    """Add the ``data`` sub-commands to the dermadv app."""
    app.add_typer(data_app, name="data")


def _counts_lines(counts: dict[str, int], indent: str = "  ") -> list[str]:
    width = max((len(k) for k in counts), default=0)
    return [f"{indent}{k:<{width}}  {v:>6}" for k, v in counts.items()]


@data_app.command("check")
def check(
    path: Path = typer.Argument(..., help="Dataset directory or its label CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable JSON report."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Do not decode the images (faster)."),
    model: str = typer.Option(
        None, "--model", help="Check as this model reads images: its decoder and input size (default: all)."
    ),
    decoder: str = typer.Option(None, "--decoder", help="Check with this JPEG decoder only: pil or tf."),
) -> None:
    """Detect a dataset's layout, count images per diagnosis, list every problem.

    Problems (each with its file): missing or unreadable images (every image
    is decoded fully unless --no-verify, with every decoder a model may use:
    pil and tf, or the one of --model / --decoder), unknown or ambiguous
    labels, duplicate ids, images with no label row, age/sex/site values
    outside ISIC's vocabulary (ignored), and warnings for images far below
    the model's input size or with an EXIF orientation (never applied).
    Exit status 1 when a problem is found or the dataset cannot be read,
    0 when it is clean.
    """
    from dermadv.data import check_dataset, summarize_problems

    decoders, min_side = _check_decoding(model, decoder)
    try:
        ds = check_dataset(
            path, verify_images=not no_verify, progress=True, decoders=decoders, min_side=min_side
        )
    except DataError as exc:
        if as_json:
            problem = {"kind": "invalid_dataset", "image_id": None, "path": str(path), "message": str(exc)}
            typer.echo(
                json.dumps(
                    {
                        "path": str(path),
                        "ok": False,
                        "layout": None,
                        "error": str(exc),
                        "n_samples": 0,
                        "counts": {},
                        "n_problems": 1,
                        "problem_counts": {"invalid_dataset": 1},
                        "problems": [problem],
                    },
                    indent=2,
                )
            )
        else:
            typer.echo(f"dataset: {path}\nlayout: not recognised\n1 problem:\n  [invalid_dataset] {exc}")
        raise typer.Exit(1) from None

    report = ds.to_dict()
    if as_json:
        typer.echo(json.dumps({"path": str(path), "ok": not ds.problems, **report}, indent=2))
    else:
        lines = [
            f"dataset: {ds.root}",
            f"layout:  {ds.layout}" + (f" ({ds.csv_path.name})" if ds.csv_path else ""),
        ]
        if ds.metadata_paths:
            lines.append("metadata: " + ", ".join(p.name for p in ds.metadata_paths))
        verified = "decoded" if ds.verified else "found (not decoded: --no-verify)"
        lines.append(
            f"images:  {len(ds)} usable ({verified}), {ds.n_lesions()} lesions, hash {report['hash']}"
        )
        lines += _counts_lines(ds.counts())
        meta = report["with_metadata"]
        lines.append("with metadata: " + ", ".join(f"{k} {v}/{len(ds)}" for k, v in meta.items()))
        lines.append(summarize_problems(ds.problems) + (":" if ds.problems else ""))
        lines += [f"  [{p.kind}] {p}" for p in ds.problems]
        typer.echo("\n".join(lines))
    if ds.problems:
        raise typer.Exit(1)


#: Without --model, images whose shorter side is under this many pixels get a small_image warning (half
#: of 224, the smallest input size of the study's models).
DEFAULT_MIN_SIDE = 112


def _check_decoding(model: str | None, decoder: str | None) -> tuple[tuple[str, ...], int]:
    """The decoders and the smallest acceptable shorter side ``data check`` uses."""
    from dermadv.data.images import DECODERS

    if decoder is not None and decoder not in DECODERS:
        raise DataError(f"--decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
    if model is None:
        return (decoder,) if decoder else DECODERS, DEFAULT_MIN_SIDE
    from dermadv.commands import common

    clf = common.load_cli_model(model)
    min_side = max(1, min(int(v) for v in clf.input_size) // 2)
    return (decoder or clf.decoder,), min_side


@data_app.command("split")
def split(
    path: Path = typer.Argument(..., help="Dataset directory or its label CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="Split CSV to write (a JSON sidecar goes beside it)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of each diagnosis for validation."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same split."),
    classes: str = typer.Option("mel,nv", "--classes", help="Comma-separated diagnoses to keep."),
    all_classes: bool = typer.Option(False, "--all-classes", help="Keep every diagnosis (multi-class)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing, different split file."),
    no_verify: bool = typer.Option(
        False,
        "--no-verify",
        help="Do not decode the images (faster; an undecodable image may enter the split).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the split summary as JSON."),
) -> None:
    """Write a train/validation split, stratified by diagnosis, grouped by lesion.

    OUT gets the columns image_id,diagnosis,lesion_id,subset; a JSON sidecar
    beside it records seed, fraction, classes, counts, dataset path and hash.
    Images of one lesion never straddle subsets; the same seed gives the
    same split. Rows that cannot be used (unknown labels, missing images...)
    and images that do not decode (each image of the kept classes is decoded
    unless --no-verify) are left out, with a warning on stderr naming them.
    """
    from dermadv.data import load_dataset, make_split, normalize_classes, read_split, sidecar_path

    if all_classes and classes != "mel,nv":
        raise DataError("give either --classes or --all-classes, not both")
    if out.is_dir():
        raise DataError(f"--out {out}: is a directory; --out takes the split CSV file to write")
    wanted = None if all_classes else normalize_classes(classes)
    ds = load_dataset(path)
    if not no_verify:
        ds = _without_undecodable(ds, wanted, progress=not as_json)
    left_out = _left_out(ds)
    for line in _left_out_lines(ds, left_out):
        typer.echo(f"warning: {line}", err=True)
    sp = make_split(ds, val_fraction=val_fraction, seed=seed, classes=wanted)
    status = "written"
    if out.exists():
        try:
            same = read_split(out, allow_edited=True).hash() == sp.hash()
        except DataError:
            same = False
        if same:
            status = "unchanged (identical split already there)"
        elif not force:
            raise DataError(f"{out}: exists and holds a different split; pass --force to overwrite it")
    sidecar = sp.write(out) if status == "written" or not sidecar_path(out).exists() else sidecar_path(out)
    summary = {
        "csv": str(out),
        "sidecar": str(sidecar),
        "status": status.split(" ")[0],
        **sp.describe(),
        "left_out": left_out,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    lines = [
        f"split {status}: {out} (+ {sidecar.name})",
        f"dataset: {ds.csv_path or ds.root} ({ds.layout}), seed {seed}, val fraction {val_fraction}",
    ]
    lesions = sp.lesion_counts()
    for sub, counts in sp.counts().items():
        lines.append(f"{sub}: {sum(counts.values())} images, {lesions[sub]} lesions")
        lines += _counts_lines(counts)
    lines.append(f"split hash: {sp.hash()}")
    typer.echo("\n".join(lines))


def _without_undecodable(ds: Dataset, wanted: tuple[str, ...] | None, progress: bool) -> Dataset:
    """``ds`` without the images of the ``wanted`` classes that do not decode (each becomes an
    ``unreadable_image`` problem); images of other classes are not decoded (they are not split)."""
    from dermadv.data.dataset import verify_dataset_images

    check = replace(
        ds, samples=[s for s in ds.samples if wanted is None or s.diagnosis in wanted], problems=[]
    )
    verify_dataset_images(check, progress=progress)
    bad = {p.image_id for p in check.problems if not p.keeps_row}
    return replace(
        ds, samples=[s for s in ds.samples if s.image_id not in bad], problems=[*ds.problems, *check.problems]
    )


def _left_out(ds: Dataset) -> dict[str, list[str]]:
    """``{problem kind: [image id (or file) of each row left out]}``, kinds in the order first seen."""
    out: dict[str, list[str]] = {}
    for p in ds.problems:
        if p.keeps_row:  # in the split (a value ignored, or a warning)
            continue
        out.setdefault(p.kind, []).append(p.image_id or str(p.path or ds.csv_path or ds.root))
    return out


def _left_out_lines(ds: Dataset, left_out: dict[str, list[str]], shown: int = 5) -> list[str]:
    """One warning line per kind of problem: how many rows were left out of the split, and the first ids."""
    from dermadv.data.dataset import PROBLEM_KINDS

    where = ds.csv_path or ds.root
    what = {
        "unknown_label": "row(s) with an unknown label",
        "ambiguous_label": "row(s) with an ambiguous label",
        "unreadable_image": "undecodable image(s)",
        "missing_image": "row(s) whose image file is missing",
    }
    lines = []
    for kind, ids in left_out.items():
        label = what.get(kind, f"row(s) with problem {kind} ({PROBLEM_KINDS.get(kind, kind)})")
        head = ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
        lines.append(f"{where}: {len(ids)} {label} left out of the split: {head}")
    return lines
