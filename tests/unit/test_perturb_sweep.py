"""The systematic perturbation sweep on real ISIC images: transforms, statistics, resume, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from dermadv.perturb.corruptions import SpecError, parse_one, parse_specs, study_specs
from dermadv.perturb.sweep import paired_difference_ci


# ----- transforms ---------------------------------------------------------------------------------
def test_spec_language():
    assert [c.spec for c in parse_specs(None)] == ["none", *study_specs()]
    assert len(study_specs()) == 20 and sum(s.startswith("shift:") for s in study_specs()) == 18
    specs = parse_specs(
        "rot180,rot45,shift:r:+50,hue:0.05,blur:1.5,jpeg:75,brightness:1.2,decoder:pil,rot180"
    )
    assert [c.spec for c in specs] == [
        "none",
        "rot:180",
        "rot:45",
        "shift:r:+50",
        "hue:0.05",
        "blur:1.5",
        "jpeg:75",
        "brightness:1.2",
        "decoder:pil",
    ]
    assert specs[-1].file_level and not specs[1].file_level
    assert parse_one("shift:g:-5").params == {"channel": "g", "value": -5}
    for bad, why in (
        ("shift:x:5", "channel"),
        ("jpeg:0", "quality"),
        ("hue:0.9", "hue"),
        ("decoder:libjpeg", "decoder"),
        ("sharpen:2", "unknown"),
        ("rot:abc", "not a float"),
    ):
        with pytest.raises(SpecError, match=why):
            parse_one(bad)


# ----- statistics ---------------------------------------------------------------------------------
def test_paired_difference_ci_bonett_price():
    base = np.array([True] * 20 + [False] * 10)
    new = base.copy()
    new[:5] = False  # 5 right -> wrong
    new[20] = True  # 1 wrong -> right
    diff, lo, hi = paired_difference_ci(base, new)
    assert diff == pytest.approx(-4 / 30)
    pb, pc = 6 / 32, 2 / 32
    half = 1.959963984540054 * np.sqrt((pb + pc - (pc - pb) ** 2) / 32)
    assert (lo, hi) == pytest.approx((pc - pb - half, pc - pb + half))
    d0, lo0, hi0 = paired_difference_ci(base, base)
    assert d0 == 0 and lo0 < 0 < hi0 and lo0 == pytest.approx(-hi0)
    with pytest.raises(ValueError):
        paired_difference_ci(base, base[:5])


def test_three_decimals_round_the_exact_fraction():
    """39/80 = 0.4875 and 37/80 = 0.4625 both round half up (float round() gives 0.487 and 0.463)."""
    from dermadv.perturb.sweep import round_fraction, summarize

    assert round_fraction(39, 80) == 0.488 and round_fraction(37, 80) == 0.463
    assert round_fraction(-1, 80) == -0.013 and round_fraction(1, 80) == 0.013
    y = np.array([True] * 40 + [False] * 40)
    base = np.where(y, 0.9, 0.1)  # all 80 right before
    scores = base.copy()
    scores[:41] = 1 - scores[:41]  # 40 melanomas and 1 naevus wrong: 39/80 right
    scores[:40] = 0.1
    scores[40] = 0.9
    row = summarize("rot:180", "Rotation 180°", y, scores, base)
    assert row["correct"] == 39 and row["accuracy"] == 0.488
    assert row["delta_accuracy"] == -0.513  # -41/80 = -0.5125
    assert row["specificity"] == 0.975 and row["sensitivity"] == 0.0
