"""Every command's --help reads in an 80-column terminal: no line wider than 80, help text not
squeezed into one-word lines, and an example of use."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from dermadv.cli import app


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    out: list[list[str]] = []
    for name, cmd in getattr(group, "commands", {}).items():
        out.append([name])
        out += [[name, sub] for sub in getattr(cmd, "commands", {})]
    assert len(out) > 10
    return out


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p))
def test_help_fits_80_columns(path: list[str]) -> None:
    res = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide[:3]
    # option help starts in a column that leaves room for it (rich's tables squeezed it to ~15 chars)
    starts = [m.start(2) for line in lines if (m := re.match(r"^  (-\S.*?)\s{2,}(\S.*)$", line))]
    assert starts, res.output
    assert max(starts) <= 34, res.output
