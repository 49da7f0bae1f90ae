"""Run the real ``dermadv`` Typer app in-process for tests."""

from __future__ import annotations


def run_cli(args: list[str]) -> str:
    """Invoke ``dermadv ARGS``; re-raise any exception it raised; assert exit 0; return its stdout."""
    from typer.testing import CliRunner

    from dermadv.cli import app

    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout
