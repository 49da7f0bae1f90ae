"""The ``dermadv`` command line. One small module per command under ``dermadv.commands``;
all real work lives in the library modules. Heavy imports (torch, keras...) happen inside the
command functions so that ``--help`` stays fast."""

from __future__ import annotations

import importlib
import sys

import typer

from dermadv.errors import DermadvError

app = typer.Typer(
    name="dermadv",
    help="Find, measure and test with dermatologists the ways a skin-cancer classifier can be fooled.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, each exposing ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "data",
    "train",
    "evaluate",
    "models",
    "attack",
    "perturb",
    "report",
    "demo",
    "readerstudy",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"dermadv.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point: user errors print one clear line and exit with status 2."""
    try:
        rc = app(standalone_mode=False)
        # In non-standalone mode click returns (not raises) the code of `raise typer.Exit(code)`.
        if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
            sys.exit(rc)
    except DermadvError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
