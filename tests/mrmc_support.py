"""Helpers shared by the MRMC validation tests."""

from __future__ import annotations

import pytest


def printed(value: float, reference: str) -> None:
    """``value`` equals the published ``reference`` to its printed number of decimals (rounding)."""
    decimals = len(reference.split(".")[1]) if "." in reference else 0
    assert round(value, decimals) == pytest.approx(float(reference), abs=10**-decimals * 0.51), (
        value,
        reference,
    )
