"""The ``dermadv`` command line. One small module per command under ``dermadv.commands``;
all real work lives in the library modules. Heavy imports (torch, keras...) happen inside the
command functions so that ``--help`` stays fast."""

from __future__ import annotations

import errno
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

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
    # click's own layout: option names beside wrapped help that reads in an 80-column terminal (rich's
    # boxed tables squeezed the help into one-word lines there)
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
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
    "robustness",
    "defend",
    "transfer",
    "explain",
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


#: errno values only a write gives: always an output problem.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
#: errno values that are an output problem when the file lies under a path given to ``--out``.
_PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
#: sqlite's words for a full disk or an unwritable database (the attack results store).
_SQLITE_WRITE_ERRORS = ("disk is full", "readonly database", "unable to open database file", "disk i/o error")


def _out_paths(argv: list[str]) -> list[Path]:
    """The values given to ``--out`` on the command line (absolute)."""
    outs = []
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            outs.append(argv[i + 1])
        elif arg.startswith("--out="):
            outs.append(arg.split("=", 1)[1])
    return [Path(os.path.abspath(Path(o).expanduser())) for o in outs]


def output_error_message(exc: BaseException, argv: list[str]) -> str | None:
    """One line for an I/O error writing results (full disk, unwritable --out), or None for any other
    error (which keeps its usual behaviour)."""
    outs = _out_paths(argv)
    where = outs[0] if outs else None
    if isinstance(exc, sqlite3.OperationalError):
        if not any(w in str(exc).lower() for w in _SQLITE_WRITE_ERRORS):
            return None
        reason = str(exc)
    elif isinstance(exc, OSError):
        name = exc.filename if isinstance(exc.filename, (str, Path)) else None
        path = Path(os.path.abspath(name)) if name else None
        if exc.errno in _PERMISSION_ERRNOS:
            # the --out path itself, a file under it, or a folder it would be created in
            if path is None or not any(path == o or o in path.parents or path in o.parents for o in outs):
                return None
        elif exc.errno not in _WRITE_ERRNOS:
            return None
        where = path or where
        reason = exc.strerror or str(exc)
    else:
        return None
    target = str(where) if where is not None else "the output folder"
    return (
        f"cannot write {target}: {reason}; check free space/permissions there (results already written "
        "stay valid: rerun the same command to continue)"
    )


def main() -> None:
    """Console-script entry point.

    Typer/click handle usage errors themselves (message + exit status 2); a user error raised by
    dermadv (:class:`DermadvError`) prints one clear line, no traceback, and exits with status 2, and so
    does an I/O error writing results (:func:`output_error_message`: full disk, unwritable ``--out``).
    """
    try:
        if PLUGIN_ERROR is not None:
            raise PLUGIN_ERROR
        app()
    except DermadvError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except (OSError, sqlite3.OperationalError) as exc:
        message = output_error_message(exc, sys.argv[1:])
        if message is None:
            raise
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
