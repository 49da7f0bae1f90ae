"""Helpers for the run-lock tests of both layers: a subprocess environment running this tree, and
waiting until a process holds a run folder."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import dermadv
from dermadv.runs.lock import read_holder

SRC = str(Path(dermadv.__file__).resolve().parents[1])


def subprocess_env() -> dict[str, str]:
    """This environment, one OpenMP thread, and this tree's ``src`` first on PYTHONPATH."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + (os.pathsep + path if path else "")}


def wait_for_holder(run: Path, proc: subprocess.Popen[Any], timeout: float = 120.0) -> dict[str, Any]:
    """The lock details of ``run`` once ``proc`` holds it (AssertionError if it ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = read_holder(run)
        if holder is not None and holder["pid"] == proc.pid:
            return holder
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before it held {run}")
        time.sleep(0.01)
    raise AssertionError(f"process did not lock {run} within {timeout} s")
