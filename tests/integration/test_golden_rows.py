"""Behaviour unchanged: evaluation, sweep and campaign rows on real images equal rows stored before
the refactor of issue 10 (``tests/golden/rows.json``, recorded by ``tests/golden/make_golden.py``
with the fixed tiny CNN ``tests/golden/tiny_cnn.pt``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))

import make_golden  # noqa: E402


def _parsed(value: Any) -> Any:
    """SQLite stores JSON columns as text: compare what they say, not how they are spaced."""
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _parsed(v) for k, v in r.items()} for r in rows]


def test_rows_equal_those_stored_before_the_refactor(isic2019_dir: Path, tmp_path: Path) -> None:
    want = json.loads(make_golden.ROWS.read_text())
    got = make_golden.compute(isic2019_dir, tmp_path)
    assert got["evaluate"] == want["evaluate"]
    assert got["sweep"]["rows"] == want["sweep"]["rows"]
    assert got["sweep"]["scores"] == want["sweep"]["scores"]
    assert len(want["sweep"]["scores"]) == 21  # unmodified + the study's 20 points
    assert _rows(got["attack"]) == _rows(want["attack"])
    assert {r["attack"] for r in want["attack"]} == {"fgsm", "pgd", "pixel", "color", "rotation"}
