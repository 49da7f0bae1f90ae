"""dermadv.data without data: CSV column errors and the console exit codes. The loaders on the real
development images and on hostile copies of them: tests/integration/test_data.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data_support import write_csv
from dermadv.data import (
    load_dataset,
)
from dermadv.errors import DataError


def test_missing_column_names_csv_and_columns(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "HAM10000_metadata.csv",
        ["lesion_id", "image_id", "dx_type", "age", "sex", "localization"],
        [["HAM_1", "ISIC_1", "histo", 50, "male", "back"]],
    )
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert "HAM10000_metadata.csv" in msg and "lacks column(s) dx" in msg and "it has: lesion_id" in msg


def test_console_exit_codes(tmp_path: Path) -> None:
    """Through the real entry point: problems -> exit 1; unusable input -> exit 2 with a one-line error."""
    (tmp_path / "mel").mkdir()
    (tmp_path / "mel" / "ISIC_1.jpg").write_bytes(b"")
    cmd = [sys.executable, "-m", "dermadv.cli", "data"]
    res = subprocess.run([*cmd, "check", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    assert f"[unreadable_image] {tmp_path / 'mel' / 'ISIC_1.jpg'}: file is empty" in res.stdout
    res = subprocess.run(
        [*cmd, "split", str(tmp_path / "absent"), "--out", str(tmp_path / "s.csv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {tmp_path / 'absent'}: no such file or directory"
