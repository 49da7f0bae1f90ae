"""ITA skin-tone estimate: the sRGB -> CIELAB conversion against published reference values, ITA of
synthetic skin built from a chosen Lab colour (inverse conversion written out here), robustness of the
skin mask to a central lesion, hair and vignette, and the category boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dermadv.robustness.skin_tone import estimate_ita, ita_category, ita_degrees, srgb_to_lab

# Reference CIELAB (D65) of sRGB colours, as tabulated e.g. by Lindbloom's and EasyRGB's calculators.
REFERENCE_LAB = [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((128, 128, 128), (53.585, 0.0, 0.0)),
    ((255, 0, 0), (53.2408, 80.0925, 67.2032)),
    ((0, 255, 0), (87.7347, -86.1827, 83.1793)),
    ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
]


@pytest.mark.parametrize(("rgb", "lab"), REFERENCE_LAB)
def test_srgb_to_lab_matches_reference_values(
    rgb: tuple[int, int, int], lab: tuple[float, float, float]
) -> None:
    assert srgb_to_lab(np.array(rgb, dtype=np.uint8)).tolist() == pytest.approx(list(lab), abs=2e-3)


def lab_to_srgb(lab: tuple[float, float, float]) -> np.ndarray:
    """CIELAB (D65) -> 8-bit sRGB (float), the inverse formulas (CIE 1976; IEC 61966-2-1)."""
    L, a, b = lab
    fy = (L + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200
    d = 6 / 29

    def finv(t: float) -> float:
        return t**3 if t > d else 3 * d * d * (t - 4 / 29)

    xyz = np.array([0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)])
    m_inv = np.array(
        [
            [3.2404542, -1.5371385, -0.4985314],
            [-0.9692660, 1.8760108, 0.0415560],
            [0.0556434, -0.2040259, 1.0572252],
        ]
    )
    linear = m_inv @ xyz
    assert ((linear >= 0) & (linear <= 1)).all(), f"{lab} is outside the sRGB gamut"
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return srgb * 255


def skin(lab: tuple[float, float, float], h: int = 240, w: int = 320) -> np.ndarray:
    rgb = np.round(lab_to_srgb(lab)).astype(np.uint8)
    return np.broadcast_to(rgb, (h, w, 3)).copy()


# (Lab of the skin, ITA by hand = atan((L - 50) / b) in degrees, category)
SKINS = [
    ((72.0, 8.0, 14.0), math.degrees(math.atan(22 / 14)), "very light"),
    ((65.0, 12.0, 18.0), math.degrees(math.atan(15 / 18)), "intermediate"),
    ((58.0, 12.0, 20.0), math.degrees(math.atan(8 / 20)), "tan"),
    ((45.0, 14.0, 22.0), math.degrees(math.atan(-5 / 22)), "brown"),
    ((30.0, 10.0, 18.0), math.degrees(math.atan(-20 / 18)), "dark"),
]


@pytest.mark.parametrize(("lab", "ita", "category"), SKINS)
def test_ita_of_uniform_skin_of_known_lab(lab: tuple[float, float, float], ita: float, category: str) -> None:
    # the conversion inverts the inverse before 8-bit rounding ...
    assert srgb_to_lab(lab_to_srgb(lab)).tolist() == pytest.approx(list(lab), abs=1e-3)
    # ... and after it the estimate is within the rounding of 8-bit values
    res = estimate_ita(skin(lab))
    assert res["ita"] == pytest.approx(ita, abs=0.6)
    assert res["category"] == category and res["estimate"] is True and res["reason"] is None
    assert res["L_star"] == pytest.approx(lab[0], abs=0.3) and res["b_star"] == pytest.approx(lab[2], abs=0.5)
    assert res["skin_pixels"] > 1000


def _dermoscopy(lab: tuple[float, float, float], lesion_radius: float, seed: int = 0) -> np.ndarray:
    """Skin with a dark-brown central lesion, black vignette corners, hairs and a little noise."""
    rng = np.random.default_rng(seed)
    img = skin(lab).astype(np.int16)
    h, w = img.shape[:2]
    y = (np.arange(h) + 0.5 - h / 2) / (h / 2)
    x = (np.arange(w) + 0.5 - w / 2) / (w / 2)
    r = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    img[r < lesion_radius] = (90, 55, 40)
    img[r > 1.0] = (3, 3, 3)
    for row in rng.integers(0, h, 6):  # dark hairs across the image
        img[row : row + 2, :] = (35, 25, 20)
    img += rng.integers(-3, 4, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_lesion_hair_and_vignette_barely_move_the_estimate() -> None:
    lab = (65.0, 12.0, 18.0)
    plain = estimate_ita(skin(lab))["ita"]
    assert estimate_ita(_dermoscopy(lab, 0.5))["ita"] == pytest.approx(plain, abs=1.0)
    # a lesion reaching into the skin ring: its pixels are excluded as much darker than the ring
    assert estimate_ita(_dermoscopy(lab, 0.75))["ita"] == pytest.approx(plain, abs=1.0)
    # without the exclusions the mean colour of the whole image would be far off
    whole = srgb_to_lab(_dermoscopy(lab, 0.75).reshape(-1, 3)).mean(axis=0)
    assert abs(ita_degrees(whole[0], whole[2]) - plain) > 10


def test_lesion_mask_is_excluded() -> None:
    lab = (65.0, 12.0, 18.0)
    img = skin(lab)
    mask = np.zeros(img.shape[:2], dtype=bool)
    mask[:, : img.shape[1] // 2] = True
    img[mask] = np.round(lab_to_srgb((40.0, 10.0, 20.0))).astype(np.uint8)  # half the ring a different tone
    masked = estimate_ita(img, lesion_mask=mask)
    assert masked["ita"] == pytest.approx(estimate_ita(skin(lab))["ita"], abs=0.1)
    with pytest.raises(ValueError, match="lesion_mask"):
        estimate_ita(img, lesion_mask=mask[:10])


@pytest.mark.parametrize(
    ("ita", "category"),
    [
        (55.0001, "very light"),
        (55.0, "light"),
        (41.0001, "light"),
        (41.0, "intermediate"),
        (28.0, "tan"),
        (28.0001, "intermediate"),
        (10.0, "brown"),
        (10.0001, "tan"),
        (-29.999, "brown"),
        (-30.0, "dark"),
        (-89.0, "dark"),
        (float("nan"), "undetermined"),
    ],
)
def test_category_boundaries(ita: float, category: str) -> None:
    assert ita_category(ita) == category


def test_undetermined_results_say_why() -> None:
    black = np.zeros((100, 100, 3), dtype=np.uint8)
    res = estimate_ita(black)
    assert math.isnan(res["ita"]) and res["category"] == "undetermined" and "non-black" in res["reason"]
    blue = np.broadcast_to(np.array([60, 90, 200], dtype=np.uint8), (100, 100, 3)).copy()
    res = estimate_ita(blue)
    assert res["category"] == "undetermined" and "b*" in res["reason"] and res["b_star"] < 0
    assert estimate_ita(skin((65.0, 12.0, 18.0), 20, 20), min_pixels=500)["category"] == "undetermined"


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        estimate_ita(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        estimate_ita(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="inner < outer"):
        estimate_ita(skin((65.0, 12.0, 18.0)), inner=0.9, outer=0.5)
    with pytest.raises(ValueError, match="b\\* > 0"):
        ita_degrees(60.0, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        srgb_to_lab([300, 0, 0])
