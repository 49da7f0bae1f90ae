"""Perturbations are exact: checked against numpy, np.rot90 and an independent bilinear rotation (PIL)
on synthetic lesion images (``dermadv.synthetic``; no data needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dermadv.data.images import resize_uint8
from dermadv.perturb import (
    ChannelShift,
    ColorBalance,
    FewPixels,
    RotationTranslation,
    color_balance,
    rotate,
    shift_channels,
)
from dermadv.synthetic import make_lesion_image


def _lesion(seed: int, size: tuple[int, int], melanoma: bool) -> np.ndarray:
    """A synthetic lesion (``dermadv.synthetic``): textured, shaded skin, a pigmented blob, hairs
    -- detail everywhere, so no perturbation is checked on a flat image."""
    return resize_uint8(make_lesion_image(np.random.default_rng(seed), max(size), melanoma), size)


@pytest.fixture(scope="module")
def square() -> np.ndarray:
    return _lesion(0, (96, 96), melanoma=True)


@pytest.fixture(scope="module")
def oblong() -> np.ndarray:
    return _lesion(1, (72, 100), melanoma=False)  # H != W: catches axis mix-ups


# ----- colour ----------------------------------------------------------------------------------
def test_color_balance_matches_study_numpy_exactly(square: np.ndarray) -> None:
    img = square.copy()
    img[:8, :8] = 255  # saturated pixels exercise the clip at 255
    img[8:16, :8] = 240
    rng = np.random.default_rng(0)
    c = np.vstack([rng.uniform(0.9, 1.1, size=(20, 3)), [[1.1, 1.1, 1.1], [0.9, 0.9, 0.9], [1.0, 1.0, 1.0]]])
    out = ColorBalance(0.1).apply(img, c)
    expected = np.clip(img[None].astype(np.float64) * c[:, None, None, :], 0, 255).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == (len(c), *img.shape)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[-1], img)  # c = 1 is the identity
    assert (out[-3][:8, :8] == 255).all()  # clipped, not wrapped
    # truncation, not rounding: 240 * 1.1 = 264 -> 255; 101 * 0.9 = 90.9 -> 90
    assert color_balance(np.full((1, 1, 1, 3), 101, np.uint8), [0.9, 0.9, 0.9])[0, 0, 0, 0] == 90
    # one factor vector per image
    two = color_balance(np.stack([img, img]), [[0.9, 1.0, 1.1], [1.1, 1.0, 0.9]])
    np.testing.assert_array_equal(two[1], expected_single(img, [1.1, 1.0, 0.9]))


def expected_single(img: np.ndarray, c: list[float]) -> np.ndarray:
    return np.clip(img * np.asarray(c), 0, 255).astype(np.uint8)


def test_color_balance_bounds_and_validation(square: np.ndarray) -> None:
    assert ColorBalance(0.1).bounds(square.shape) == [(0.9, 1.1)] * 3
    with pytest.raises(ValueError, match="params must be P x 3"):
        ColorBalance().apply(square, np.ones((4, 2)))
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        ColorBalance().apply(square.astype(np.float32), np.ones((1, 3)))
    with pytest.raises(ValueError, match="delta"):
        ColorBalance(1.5)


# ----- rotation / translation ------------------------------------------------------------------
def test_rotation_multiples_of_90_are_exact(square: np.ndarray, oblong: np.ndarray) -> None:
    np.testing.assert_array_equal(rotate(square, 90)[0], np.rot90(square))
    np.testing.assert_array_equal(rotate(square, 270)[0], np.rot90(square, -1))
    np.testing.assert_array_equal(rotate(rotate(oblong, 180), 180)[0], oblong)
    np.testing.assert_array_equal(rotate(oblong, 180)[0], oblong[::-1, ::-1])
    np.testing.assert_array_equal(rotate(oblong, 0)[0], oblong)
    np.testing.assert_array_equal(rotate(oblong, 360)[0], oblong)


def test_integer_translation_moves_pixels_and_fills_black(oblong: np.ndarray) -> None:
    out = rotate(oblong, 0, dx=7, dy=-4)[0]
    np.testing.assert_array_equal(out[:-4, 7:], oblong[4:, :-7])  # right by 7, up by 4
    assert (out[:, :7] == 0).all() and (out[-4:] == 0).all()


@pytest.mark.parametrize("angle,dx,dy", [(30.0, 0.0, 0.0), (123.4, 5.0, -7.0), (200.0, 3.5, 2.25)])
def test_rotation_matches_pil_bilinear(oblong: np.ndarray, angle: float, dx: float, dy: float) -> None:
    from scipy.ndimage import binary_erosion

    ours = rotate(oblong, angle, dx, dy)[0].astype(int)
    pil = Image.fromarray(oblong).rotate(angle, resample=Image.BILINEAR, translate=(dx, dy))
    # compare where the source lies well inside the image (PIL treats the border differently)
    inside = (
        np.asarray(
            Image.fromarray(np.full(oblong.shape[:2], 255, np.uint8)).rotate(
                angle, resample=Image.NEAREST, translate=(dx, dy)
            )
        )
        == 255
    )
    inside = binary_erosion(inside, iterations=3)
    assert inside.sum() > 0.3 * inside.size
    diff = np.abs(ours - np.asarray(pil).astype(int))[inside]
    assert diff.max() <= 1, diff.max()  # PIL rounds its bilinear result differently
    assert diff.mean() < 0.6


def test_rotation_leaves_corners_black_and_batches_exactly(square: np.ndarray) -> None:
    out = rotate(square, 45)[0]
    assert (out[0, 0] == 0).all() and (out[-1, -1] == 0).all()
    params = np.array([[10.0, 3.0, -2.0], [95.0, -12.5, 4.0], [300.0, 0.0, 0.0]])
    batched = RotationTranslation().apply(square, params)
    for p, img in zip(params, batched, strict=True):
        np.testing.assert_array_equal(img, rotate(square, *p)[0])


def test_rotation_needs_a_shift_range() -> None:
    # max_shift=0 used to be accepted and then fail inside every search with an empty DE bound
    from dermadv.attacks import AttackConfigError, make_attack

    with pytest.raises(ValueError, match="max_shift must be > 0"):
        RotationTranslation(max_shift=0)
    with pytest.raises(AttackConfigError, match="max_shift"):
        make_attack("rotation", max_shift="0")


def test_rotation_shift_bound_scales_with_image_size() -> None:
    rt = RotationTranslation(max_shift=50, reference_size=299)
    assert rt.bounds((299, 299, 3)) == [(0.0, 360.0), (-50.0, 50.0), (-50.0, 50.0)]
    (_, (lx, hx), (ly, hy)) = rt.bounds((64, 128, 3))
    assert hx == pytest.approx(50 * 128 / 299) and hy == pytest.approx(50 * 64 / 299) and lx == -hx


# ----- pixels ----------------------------------------------------------------------------------
def test_few_pixels_writes_exactly_d_pixels(square: np.ndarray) -> None:
    fp = FewPixels(3)
    rng = np.random.default_rng(1)
    lo, hi = np.array(fp.bounds(square.shape)).T
    params = lo + rng.uniform(size=(50, 15)) * (hi - lo)
    out = fp.apply(square, params)
    for p, img in zip(params, out, strict=True):
        changed = np.argwhere((img != square).any(axis=-1))
        q = np.floor(p).astype(int).reshape(3, 5)
        positions = {(int(y), int(x)) for x, y in q[:, :2]}
        assert {tuple(map(int, c)) for c in changed} <= positions  # nothing else touched
        for x, y, r, g, b in q:
            if len(positions) == 3:
                np.testing.assert_array_equal(img[y, x], [r, g, b])
    # distinct positions and colours that differ from the image: exactly d pixels change
    p = np.array([[1, 2, 0, 0, 0, 50.7, 60.2, 255, 255, 255, 95.99, 95.99, 1, 2, 3]], dtype=float)
    img = fp.apply(square, p)[0]
    assert (img != square).any(axis=-1).sum() == 3
    np.testing.assert_array_equal(img[60, 50], [255, 255, 255])
    np.testing.assert_array_equal(img[95, 95], [1, 2, 3])
    recorded = fp.describe_params(p, square.shape)["pixels"]
    assert recorded[1] == {"x": 50, "y": 60, "r": 255, "g": 255, "b": 255}


def test_few_pixels_later_pixel_wins_on_collision(square: np.ndarray) -> None:
    p = np.array([[5, 5, 10, 20, 30, 5.5, 5.9, 200, 100, 0]], dtype=float)
    img = FewPixels(2).apply(square, p)[0]
    np.testing.assert_array_equal(img[5, 5], [200, 100, 0])
    assert (img != square).any(axis=-1).sum() == 1
    with pytest.raises(ValueError, match="positive integer"):
        FewPixels(0)


# ----- intensity -------------------------------------------------------------------------------
def test_channel_shift_is_exact_integer_arithmetic(square: np.ndarray) -> None:
    offsets = np.array([[5, -5, 0], [50, 50, 50], [-50, 10, -10]], dtype=float)
    out = ChannelShift(50).apply(square, offsets)
    expected = np.clip(square[None].astype(int) + offsets[:, None, None, :].astype(int), 0, 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    np.testing.assert_array_equal(shift_channels(square, [0, 0, 0])[0], square)


def test_populations_are_c_contiguous(square: np.ndarray) -> None:
    # a population is copied into the model's batch (concatenate, stack): a transposed layout (what
    # fancy indexing returns) made each of those copies ~20x slower than the gather itself
    rng = np.random.default_rng(1)
    colour = ColorBalance().apply(square, rng.uniform(0.9, 1.1, (7, 3)))
    shifted = ChannelShift().apply(square, rng.uniform(-50, 50, (7, 3)))
    turned = RotationTranslation().apply(square, np.c_[rng.uniform(0, 360, 7), rng.uniform(-9, 9, (7, 2))])
    for out in (colour, shifted, turned):
        assert out.flags.c_contiguous and out.dtype == np.uint8 and out.shape == (7, *square.shape)
