"""The ``dermadv`` command line. One small module per command under ``dermadv.commands``;
all real work lives in the library modules. Heavy imports (torch, keras...) happen inside the
command functions so that ``--help`` stays fast."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import typer

from dermadv.errors import DermadvError
from dermadv.registry import Registry

if __name__ == "__main__":  # `python -m dermadv.cli`: plugins importing dermadv.cli get this module
    sys.modules.setdefault("dermadv.cli", sys.modules[__name__])

app = typer.Typer(
    name="dermadv",
    help="Find, measure and test with dermatologists the ways a skin-cancer classifier can be fooled.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Commands: name -> ``register(app: typer.Typer) -> None`` adding the command(s) to the app.
#: Another package adds one through the ``dermadv.commands`` entry point (``my_pkg.cli:register``,
#: registered under the entry point's name, or a module calling ``COMMANDS.register``).
COMMANDS: Registry[Callable[[typer.Typer], None]] = Registry("command")

#: dermadv's own command modules (``dermadv.commands.NAME``), each exposing ``register(app)``.
BUILTIN_COMMANDS: tuple[str, ...] = (
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

#: A plugin command that failed to load: ``main`` reports it (one line) instead of running.
PLUGIN_ERROR: DermadvError | None = None


def add_commands(target: typer.Typer) -> None:
    """Add every registered command to ``target``: dermadv's own, then the plugins'."""
    for entry in COMMANDS.entries():
        entry.obj(target)


_builtins = {name: importlib.import_module(f"dermadv.commands.{name}").register for name in BUILTIN_COMMANDS}
for _name, _register in _builtins.items():
    COMMANDS.add(_name, _register)
try:
    add_commands(app)
except DermadvError as _exc:  # a broken plugin (nothing was added yet): keep the built-ins, main() says why
    PLUGIN_ERROR = _exc
    for _register in _builtins.values():
        _register(app)


def main() -> None:
    """Console-script entry point.

    Typer/click handle usage errors themselves (message + exit status 2); a user error raised by
    dermadv (:class:`DermadvError`) prints one clear line, no traceback, and exits with status 2.
    """
    try:
        if PLUGIN_ERROR is not None:
            raise PLUGIN_ERROR
        app()
    except DermadvError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
