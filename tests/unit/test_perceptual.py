"""Perceptual distance of adversarial images (CIEDE2000, SSIM) and its place in the results store."""

from __future__ import annotations

import numpy as np
import pytest

from dermadv.perceptual import JND_DELTA_E, below_jnd, delta_e_map, perceptual_distance, row_distance


def _image(seed: int = 0, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(40, 216, size=(size, size, 3), dtype=np.uint8)


def test_identical_images_have_zero_distance():
    a = _image()
    d = perceptual_distance(a, a.copy())
    assert d == {"delta_e_mean": 0.0, "delta_e_p95": 0.0, "ssim": 1.0}
    assert below_jnd(d) is True


def test_known_colour_difference():
    """Mid grey vs a slightly lighter grey: CIEDE2000 of a pure lightness step, checked against CIELAB."""
    from skimage.color import rgb2lab

    a = np.full((16, 16, 3), 128, np.uint8)
    b = np.full((16, 16, 3), 131, np.uint8)
    d = perceptual_distance(a, b)
    dl = float(rgb2lab(b)[0, 0, 0] - rgb2lab(a)[0, 0, 0])
    # CIEDE2000 for a lightness-only difference: dL / S_L, S_L = 1 + 0.015 (L-50)^2 / sqrt(20 + (L-50)^2)
    lbar = float(rgb2lab(a)[0, 0, 0] + rgb2lab(b)[0, 0, 0]) / 2
    s_l = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    assert d["delta_e_mean"] == pytest.approx(dl / s_l, rel=1e-6)
    assert d["delta_e_p95"] == pytest.approx(d["delta_e_mean"])
    assert d["delta_e_mean"] < JND_DELTA_E


def test_green_cast_is_visible_and_p95_catches_a_patch():
    a = _image(1)
    green = a.astype(int)
    green[..., 1] += 40
    d = perceptual_distance(a, np.clip(green, 0, 255).astype(np.uint8))
    assert d["delta_e_mean"] > 3 * JND_DELTA_E and below_jnd(d) is False
    patch = a.copy()
    patch[:8, :8] = 255 - patch[:8, :8]  # 1/16 of the image changed strongly
    p = perceptual_distance(a, patch)
    assert p["delta_e_p95"] > 5 * p["delta_e_mean"] / 2 and p["ssim"] < 1
    assert delta_e_map(a, patch)[8:, 8:].max() == 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="differ in size"):
        perceptual_distance(_image(size=8), _image(size=9))
    with pytest.raises(ValueError, match="adversarial: expected a uint8"):
        perceptual_distance(_image(), _image().astype(float))


def test_store_records_distance_and_row_distance_recomputes(tmp_path):
    from dermadv.campaign.store import ResultsStore

    a = _image(2)
    b = a.copy()
    b[..., 0] = np.clip(b[..., 0].astype(int) + 20, 0, 255).astype(np.uint8)
    with ResultsStore(tmp_path) as store:
        store.add({"image_id": "x", "attack": "color", "outcome": "success", "original": a, "adversarial": b})
        store.add({"image_id": "y", "attack": "color", "outcome": "misclassified"})
        rows = {r["image_id"]: r for r in store.rows()}
    want = perceptual_distance(a, b)
    assert {k: rows["x"][k] for k in want} == pytest.approx(want)
    assert rows["y"]["delta_e_mean"] is None and row_distance(tmp_path, rows["y"]) is None
    old = {**rows["x"], "delta_e_mean": None, "delta_e_p95": None, "ssim": None}  # a row from before
    assert row_distance(tmp_path, old) == pytest.approx(want)


def _campaign_with_visibility(run, shifts: list[int]) -> None:
    """A campaign store of successful colour attacks, one per red-channel shift (larger = more visible)."""
    from dermadv.campaign.store import ResultsStore

    with ResultsStore(run) as store:
        for i, shift in enumerate(shifts):
            a = _image(10 + i)
            b = a.copy()
            b[..., 0] = np.clip(b[..., 0].astype(int) + shift, 0, 255).astype(np.uint8)
            store.add(
                {
                    "image_id": f"img{i}",
                    "attack": "color",
                    "direction": "mel->nv",
                    "true_group": "melanoma",
                    "outcome": "success",
                    "original": a,
                    "adversarial": b,
                }
            )


def test_reader_study_filters_and_balances_on_visibility(tmp_path):
    from dermadv.campaign.store import ResultsStore
    from dermadv.readerstudy.build import build_from_runs

    run = tmp_path / "run"
    _campaign_with_visibility(run, [1, 2, 3, 30, 40, 50])
    with ResultsStore(run, create=False) as store:
        de = {r["image_id"]: r["delta_e_mean"] for r in store.rows()}
    invisible = {k for k, v in de.items() if v < JND_DELTA_E}
    assert invisible == {"img0", "img1", "img2"}, de

    study, summary = build_from_runs(
        [run], tmp_path / "s1", per_attack=6, unmodified=0, max_delta_e=JND_DELTA_E
    )
    shown = {im.source_image_id for im in study.images}
    assert shown == invisible and len(study.images) == 3
    assert any("left out" in s for s in summary["shortfalls"])
    assert study.settings["build"]["max_delta_e"] == JND_DELTA_E
    assert all(float(im.extra["delta_e_mean"]) < JND_DELTA_E for im in study.images)

    study, _ = build_from_runs([run], tmp_path / "s2", per_attack=2, unmodified=0, balance_visibility=True)
    picked = [im.source_image_id for im in study.images]
    assert sum(p in invisible for p in picked) == 1  # one below the JND, one above
