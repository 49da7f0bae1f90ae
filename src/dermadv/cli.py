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
    """Console-script entry point.

    Typer/click handle usage errors themselves (message + exit status 2); a user error raised by
    dermadv (:class:`DermadvError`) prints one clear line, no traceback, and exits with status 2.
    """
    try:
        app()
    except DermadvError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
