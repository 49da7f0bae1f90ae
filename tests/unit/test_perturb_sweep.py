"""The perturbation sweep's transforms (on a synthetic lesion, ``dermadv.synthetic``) and statistics; the
sweep itself on real images is in tests/integration/test_perturb_sweep.py."""

from __future__ import annotations

import numpy as np
import pytest

from dermadv.perturb.points import SpecError, parse_one, parse_specs, study_specs
from dermadv.perturb.sweep import paired_difference_ci
from dermadv.synthetic import make_lesion_image


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
    assert parse_one("shift:g:-5").values == (0.0, -5.0, 0.0)
    assert parse_one("shift:g:-5").perturbation == "shift"
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


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A synthetic lesion (``dermadv.synthetic``) at 96 px: textured skin, a pigmented blob."""
    return make_lesion_image(np.random.default_rng(0), 96, melanoma=True)


def test_rotation_180_twice_is_exact(image):
    rot = parse_one("rot180")
    batch = image[None]
    once = rot.apply(batch)
    assert not np.array_equal(once, batch)
    np.testing.assert_array_equal(once[0], image[::-1, ::-1])
    np.testing.assert_array_equal(rot.apply(once), batch)
    tall = np.ascontiguousarray(image[:, :72])  # non-square too
    np.testing.assert_array_equal(rot.apply(rot.apply(tall[None])), tall[None])


def test_rotation_45_black_corners(image):
    out = parse_one("rot45").apply(image[None])[0]
    assert out[0, 0].max() == 0 and out[-1, -1].max() == 0  # exposed corners are black
    assert abs(int(out[48, 48].astype(int).sum()) - int(image[48, 48].astype(int).sum())) < 30


def test_plus50_saturates_one_channel_only(image):
    img = image.copy()
    img[:4, :4, 0] = 230  # make sure some red pixels saturate
    out = parse_one("shift:r:+50").apply(img[None])[0]
    red, red_out = img[..., 0].astype(int), out[..., 0].astype(int)
    assert (red_out[red >= 205] == 255).all()
    np.testing.assert_array_equal(red_out[red < 205], red[red < 205] + 50)
    np.testing.assert_array_equal(out[..., 1:], img[..., 1:])
    down = parse_one("shift:b:-50").apply(img[None])[0]
    blue = img[..., 2].astype(int)
    np.testing.assert_array_equal(down[..., 2].astype(int), np.maximum(blue - 50, 0))
    np.testing.assert_array_equal(down[..., :2], img[..., :2])


def test_extra_corruptions_change_images(image):
    batch = image[None]
    for spec in ("hue:0.05", "blur:1.5", "jpeg:30", "brightness:1.2", "contrast:0.7"):
        out = parse_one(spec).apply(batch)
        assert out.dtype == np.uint8 and out.shape == batch.shape
        assert not np.array_equal(out, batch), spec
    np.testing.assert_array_equal(parse_one("hue:0").apply(batch), batch)
    np.testing.assert_array_equal(parse_one("brightness:1").apply(batch), batch)
    assert parse_one("blur:1.5").apply(batch).astype(float).std() < batch.astype(float).std()


def test_sweep_points_are_registered_perturbations_at_fixed_parameters(image):
    """One transform model: any registered perturbation is a sweep point; canonical specs don't depend
    on how a point was written; colour balance is usable in the sweep."""
    from dermadv.perturb import ColorBalance, RotationTranslation

    assert parse_one("rotation:45,0,0").spec == parse_one("rot45").spec == "rot:45"
    assert parse_one("shift:0,50,0").spec == "shift:g:+50"
    assert parse_one("shift:5,5,5").spec == "shift:rgb:+5"
    assert parse_one("shift:1.5,0,-2").spec == "shift:1.5,0,-2"
    gains = parse_one("color:1.1,0.9,1.0")
    assert gains.spec == "color:1.1,0.9,1" and gains.perturbation == "color"
    np.testing.assert_array_equal(
        gains.apply(image[None])[0], ColorBalance().apply(image, [1.1, 0.9, 1.0])[0]
    )
    moved = parse_one("rot:30,5,-4")
    np.testing.assert_array_equal(
        moved.apply(image[None])[0], RotationTranslation().apply(image, [30, 5, -4])[0]
    )
    specs = parse_specs("color:1.1,0.9,1,rot45,shift:r:+5")  # values may hold commas
    assert [c.spec for c in specs] == ["none", "color:1.1,0.9,1", "rot:45", "shift:r:+5"]
    with pytest.raises(SpecError, match="takes 3 values"):
        parse_one("color:1.1")
    with pytest.raises(SpecError, match="severity"):
        parse_one("color@7")


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
