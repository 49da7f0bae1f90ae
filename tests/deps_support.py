"""Running the CLI with some packages made unimportable (tests/*/test_deps.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

POISON = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # `import name` now raises ImportError, as if it were not installed
sys.argv = ["dermadv", *sys.argv[2:]]
from dermadv.cli import main
main()
"""


def run_without(modules: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", POISON, ",".join(modules), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        env=env,
    )


def assert_names_extra(proc: subprocess.CompletedProcess[str], package: str, extra: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert f"'{package}'" in lines[0] and f"pip install 'dermadv[{extra}]'" in lines[0], lines[0]
