"""Every test file sits in one of the two layers the README's test command runs."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_file_is_in_a_layer() -> None:
    stray = [
        p.relative_to(TESTS).as_posix()
        for p in TESTS.rglob("test_*.py")
        if p.relative_to(TESTS).parts[0] not in ("unit", "integration", "plugins")
    ]
    assert stray == [], f"test files outside tests/unit and tests/integration never run: {stray}"


def test_unit_layer_has_no_data_fixtures() -> None:
    assert not (TESTS / "unit" / "conftest.py").exists() or "isic" not in (
        TESTS / "unit" / "conftest.py"
    ).read_text(encoding="utf-8")
    assert "def isic2019_dir" in (TESTS / "integration" / "conftest.py").read_text(encoding="utf-8")
    assert "def isic2019_dir" not in (TESTS / "conftest.py").read_text(encoding="utf-8")
