"""CLI: ``dermadv reader-study build | serve | rotate-token | readers add/list/revoke | export | analyze``."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import typer

from dermadv.errors import DataError

study_app = typer.Typer(
    help="Blinded reader study with dermatologists: build, serve, manage readers, export, analyze.",
    no_args_is_help=True,
)
readers_app = typer.Typer(help="Create, list and revoke readers of a study.", no_args_is_help=True)
study_app.add_typer(readers_app, name="readers")

DbOpt = typer.Option(
    None, "--db", help="Database URL (default sqlite:///STUDY/answers.sqlite); postgresql://... accepted."
)


def _require_web() -> None:
    from dermadv.errors import require

    for mod in ("fastapi", "sqlalchemy", "uvicorn", "jinja2"):
        require(mod, "readerstudy", "The reader study")


def _store(study_dir: Path, db: str | None):  # noqa: ANN202
    _require_web()
    from dermadv.readerstudy.store import AnswerStore
    from dermadv.readerstudy.study import load_study

    return AnswerStore(load_study(study_dir), db)


@study_app.command("build")
def build(
    out: Path = typer.Option(..., "--out", help="New study directory to create."),
    runs: list[Path] | None = typer.Option(
        None,
        "--from",
        help="Attack RUN directory; more may follow it (--from RUN1 RUN2 ...) or repeat --from.",
    ),
    more_runs: list[Path] | None = typer.Argument(
        None, help="More attack RUN directories (as in --from RUN1 RUN2 ...).", show_default=False
    ),
    per_attack: int = typer.Option(34, help="Successful adversarial images per attack type."),
    unmodified: int = typer.Option(102, help="Unmodified images (half melanoma, half naevus)."),
    unmodified_from: Path | None = typer.Option(
        None,
        "--unmodified-from",
        help="Dataset for the unmodified images (default: the dataset the first "
        "run attacked, from its run.json; else the runs' own originals).",
    ),
    attack: list[str] | None = typer.Option(None, "--attack", help="Only these attack types (repeatable)."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images for a hand-made study."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="CSV for --images: image, ground truth [, condition, attack, ...]."
    ),
    seed: int = typer.Option(0, help="Seed for drawing images from the runs."),
    title: str = typer.Option("Dermoscopy reader study", help="Title shown to readers."),
    confidence: str = typer.Option("required", help="Confidence rating 1-5: required, optional or off."),
    allow_change: bool = typer.Option(
        False,
        "--allow-change/--no-allow-change",
        help="Let readers go back and change answers (changes are logged).",
    ),
    max_delta_e: float | None = typer.Option(
        None,
        "--max-delta-e",
        help="Only adversarial images whose mean CIEDE2000 colour difference from the original is below "
        "this (2.3 = just-noticeable difference).",
    ),
    balance_visibility: bool = typer.Option(
        False,
        "--balance-visibility/--no-balance-visibility",
        help="Draw each attack's images alternately below and above the just-noticeable difference.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Assemble a study: opaque image names, ground truth and provenance kept in the hidden manifest."""
    from dermadv.readerstudy.build import build_from_images, build_from_runs

    if more_runs and not runs:
        raise DataError(f"unexpected argument(s) {', '.join(map(str, more_runs))}: attack runs follow --from")
    runs = [*(runs or []), *(more_runs or [])]
    if images is not None or manifest is not None:
        if runs:
            raise DataError("use either --from RUN... or --images/--manifest, not both")
        if images is None or manifest is None:
            raise DataError("a hand-made study needs both --images FOLDER and --manifest CSV")
        study = build_from_images(
            images, manifest, out, title=title, confidence=confidence, allow_change=allow_change
        )
        summary: dict[str, Any] = {}
    elif runs:
        study, summary = build_from_runs(
            runs,
            out,
            per_attack=per_attack,
            unmodified=unmodified,
            seed=seed,
            attacks=attack or None,
            title=title,
            confidence=confidence,
            allow_change=allow_change,
            max_delta_e=max_delta_e,
            balance_visibility=balance_visibility,
        )
    else:
        raise DataError("give --from RUN (repeatable) or --images FOLDER --manifest CSV")
    counts: dict[str, int] = {}
    for im in study.images:
        k = f"{im.condition}/{im.ground_truth}" + (f"/{im.attack}" if im.attack else "")
        counts[k] = counts.get(k, 0) + 1
    result = {
        "study": str(study.root),
        "study_id": study.study_id,
        "images": len(study.images),
        "counts": counts,
        "shortfalls": summary.get("shortfalls", []),
        "warnings": list(study.settings.get("build", {}).get("warnings", [])),
    }
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"study {study.root}: {len(study.images)} images")
    for k, v in sorted(counts.items()):
        typer.echo(f"  {k}: {v}")
    for s in result["shortfalls"]:
        typer.secho(f"  shortfall: {s}", fg=typer.colors.YELLOW, err=True)
    for s in result["warnings"]:
        typer.secho(f"  warning: {s}", fg=typer.colors.YELLOW, err=True)


@study_app.command("serve")
def serve(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    db: str | None = DbOpt,
    coordinator_token: str | None = typer.Option(
        None,
        "--coordinator-token",
        envvar="DERMADV_COORDINATOR_TOKEN",
        help="Coordinator password (default: a random one, printed at start).",
    ),
    public_url: str | None = typer.Option(
        None,
        "--public-url",
        help="Address readers use (e.g. https://study.example.org behind an HTTPS proxy): invite links "
        "are built from it only. Default: http://HOST:PORT, with this machine's address for --host 0.0.0.0.",
    ),
) -> None:
    """Start the web app: readers answer via their invite links; coordinator pages at /coordinator.

    Listens on 127.0.0.1 by default. To serve readers over a network, put it behind an HTTPS reverse
    proxy and give --public-url: invite links and the coordinator token must not travel in clear
    text. The proxy's X-Forwarded-Proto/-For are trusted from 127.0.0.1 (uvicorn's FORWARDED_ALLOW_IPS
    environment variable names other proxy addresses). The coordinator token is made once per study
    and kept (hashed) in its database; 'reader-study rotate-token' replaces it.
    """
    _require_web()
    import uvicorn

    from dermadv.readerstudy.app import create_app
    from dermadv.readerstudy.store import PUBLIC_URL_KEY
    from dermadv.readerstudy.study import load_study

    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise DataError(f"--public-url must start with http:// or https://, got {public_url!r}")
    if coordinator_token is not None and len(coordinator_token) < 8:
        raise DataError("--coordinator-token must be at least 8 characters")
    study = load_study(study_dir)
    base = (public_url or default_public_url(host, port)).rstrip("/")
    app = create_app(study, db, coordinator_token, base)
    app.state.store.set_meta(PUBLIC_URL_KEY, base)  # 'readers add' builds its links from it too
    typer.echo(
        f"reader study {study.title!r}: {len(study.images)} images, database {app.state.store.safe_url}",
        err=True,
    )
    typer.echo(f"coordinator page: {base}/coordinator", err=True)
    typer.echo(f"invite links: {base}/r/...", err=True)
    if public_url is None and host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            "  warning: plain HTTP on a network: invite links and the coordinator token travel in clear "
            "text; serve behind an HTTPS proxy and give --public-url https://...",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if coordinator_token is None:
        if app.state.coordinator_token is not None:
            typer.echo(f"coordinator token: {app.state.coordinator_token}", err=True)
            typer.echo("  (shown once; kept hashed in the study's database across restarts)", err=True)
        else:
            typer.echo(
                "coordinator token: the study's token, unchanged (stored hashed); "
                f"'dermadv reader-study rotate-token {study_dir}' makes a new one",
                err=True,
            )
    uvicorn.run(
        app, host=host, port=port, log_level=os.environ.get("DERMADV_LOG_LEVEL", "warning"), access_log=False
    )


def default_public_url(host: str, port: int) -> str:
    """``http://HOST:PORT``; for a wildcard host (0.0.0.0, ::) this machine's outward address instead."""
    if host in ("0.0.0.0", "::", ""):
        address = _outward_address()
        host = address if address else socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _outward_address() -> str | None:
    """The address other machines reach this one at (the interface of the default route), if any."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect sends nothing, it only picks a route
            address = str(s.getsockname()[0])
    except OSError:
        try:
            address = socket.gethostbyname(socket.gethostname())
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@study_app.command("rotate-token")
def rotate_token(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    db: str | None = DbOpt,
) -> None:
    """Replace the study's coordinator token: the old one and every coordinator session stop working
    (also in a running server); prints the new token once."""
    store = _store(study_dir, db)
    typer.echo(store.rotate_coordinator_token())
    typer.echo("coordinator token rotated: the old token and all coordinator sessions are void", err=True)


@readers_app.command("add")
def readers_add(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    name: str = typer.Option(..., help="Reader's name."),
    role: str = typer.Option("", help="Role, e.g. 'consultant dermatologist'."),
    years: float | None = typer.Option(None, help="Years of experience."),
    base_url: str | None = typer.Option(
        None,
        help="Server address for the invite link (default: the --public-url 'serve' last used, else "
        "http://127.0.0.1:8000).",
    ),
    db: str | None = DbOpt,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a reader and print their invite link (shown once: only a hash of the token is stored)."""
    from dermadv.readerstudy.store import PUBLIC_URL_KEY

    store = _store(study_dir, db)
    base = base_url or store.get_meta(PUBLIC_URL_KEY) or "http://127.0.0.1:8000"
    if not base.startswith(("http://", "https://")):
        raise DataError(f"--base-url must start with http:// or https://, got {base!r}")
    reader, token = store.add_reader(name, role, years)
    link = f"{base.rstrip('/')}/r/{token}"
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "id": reader.id,
                    "name": reader.name,
                    "token": token,
                    "invite_url": link,
                    "seed": reader.seed,
                }
            )
        )
    else:
        typer.echo(f"reader {reader.id} ({reader.name}): {link}")


@readers_app.command("list")
def readers_list(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    db: str | None = DbOpt,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List readers with their progress."""
    rows = _store(study_dir, db).progress()
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>4}  {r['name']:<24} {r['role']:<24} {r['answered']:>4}/{r['total']:<4} {r['status']}"
        )


@readers_app.command("revoke")
def readers_revoke(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    reader_id: int = typer.Argument(..., help="Reader id (see 'readers list')."),
    db: str | None = DbOpt,
) -> None:
    """Revoke a reader's invite link (their answers are kept)."""
    from dermadv.readerstudy.store import UnknownReader

    try:
        reader = _store(study_dir, db).revoke(reader_id)
    except UnknownReader as exc:
        raise DataError(str(exc)) from exc
    typer.echo(f"reader {reader.id} ({reader.name}) revoked")


@study_app.command("export")
def export(
    study_dir: Path = typer.Argument(..., help="Study directory."),
    out: Path = typer.Option(..., "--out", help="CSV file to write."),
    fmt: str = typer.Option(
        "full",
        "--format",
        help="full (one row per answer with ground truth), changes (every change of an answer: old and "
        "new answer and confidence, when) or original (Image_name, Diagnosis; needs --reader).",
    ),
    reader: int | None = typer.Option(None, "--reader", help="Reader id for --format original."),
    db: str | None = DbOpt,
) -> None:
    """Export answers as CSV (atomically written)."""
    from dermadv.fileio import atomic_write_text
    from dermadv.readerstudy.store import changes_csv_text, export_csv_text, original_csv_text

    store = _store(study_dir, db)
    rows = store.change_rows() if fmt == "changes" else store.export_rows()
    if fmt == "full":
        text = export_csv_text(rows)
    elif fmt == "changes":
        text = changes_csv_text(rows)
    elif fmt == "original":
        if reader is None:
            raise DataError("--format original needs --reader ID (one two-column file per reader)")
        store.get_reader(reader)
        text = original_csv_text(rows, reader)
    else:
        raise DataError(f"--format must be 'full', 'changes' or 'original', got {fmt!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    from dermadv import __version__

    sidecar = {
        "study": str(store.study.root.resolve()),
        "study_id": store.study.study_id,
        "database": store.safe_url,
        "format": fmt,
        "reader": reader,
        "rows": len(rows),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dermadv_version": __version__,
    }
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(sidecar, indent=2) + "\n")
    typer.echo(f"{out}: {text.count(chr(10)) - 1} {'changes' if fmt == 'changes' else 'answers'}", err=True)


@study_app.command("analyze")
def analyze(
    answers: Path = typer.Argument(..., help="Answers CSV from 'reader-study export'."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the report JSON, tables and figure."),
    reference_band: str | None = typer.Option(
        None, "--reference-band", help="LOW,HIGH band (0-1) drawn on the figure."
    ),
    min_answers: int = typer.Option(10, help="Readers with fewer answers are reported but not analysed."),
    covariance: str = typer.Option(
        "jackknife",
        "--covariance",
        help="MRMC covariance estimator: jackknife (default; what OR-DBM MRMC, RJafroc and MRMCaov use) "
        "or delong.",
    ),
    incomplete: str = typer.Option(
        "refuse",
        "--incomplete",
        help="When included readers did not all read the same images: refuse (default; names them), "
        "complete-readers, common-cases, or all-readings (each reader's own images; --covariance delong).",
    ),
    model_scores: Path | None = typer.Option(
        None,
        "--model-scores",
        help="CSV (image, score) of a standalone model on the same images: model vs readers test.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
) -> None:
    """Per-reader sensitivity/specificity/AUC with CIs, logistic regression, MRMC; figure."""
    from dermadv.errors import require

    require("statsmodels", "readerstudy", "The reader-study analysis")
    from dermadv.readerstudy.analysis import analyze_file, format_report, parse_band

    band = parse_band(reference_band) if reference_band else None
    result = analyze_file(
        answers,
        out_dir=out,
        reference_band=band,
        min_answers=min_answers,
        covariance=covariance,
        incomplete=incomplete,
        model_scores=model_scores,
    )
    if json_out:
        from dermadv.readerstudy.analysis import jsonable

        typer.echo(json.dumps(jsonable(result), indent=2, default=str))
    else:
        typer.echo(format_report(result))


def register(app: typer.Typer) -> None:
    """Add the reader-study commands to the dermadv app."""
    app.add_typer(study_app, name="reader-study")
