"""Certificates never contradict a dense grid search over the same range (toy models with a known flip
region), the exact enumeration covers every reachable image, and smoothing abstains where it must."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dermadv.models.callable_adapter import CallableClassifier
from dermadv.models.defences.base import apply_defences
from dermadv.models.defences.certify import (
    certified_accuracy,
    change_points,
    exact_gain_certificate,
    gain_invariance_note,
    smoothing_certificate,
)
from dermadv.perturb.affine import rotate
from dermadv.perturb.color import color_balance, color_tables
from robustness_support import GREEN_LIMIT, green_model_fn, model

SIZE = 8


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def gain_grid_flips(clf: CallableClassifier, image: np.ndarray, n_green: int = 401, n_other: int = 5) -> bool:
    """Dense grid over [0.9, 1.1]^3 (fine in green, coarse in red and blue)."""
    g = np.linspace(0.9, 1.1, n_green)
    o = np.linspace(0.9, 1.1, n_other)
    c = np.array(np.meshgrid(o, g, o, indexing="ij")).reshape(3, -1).T
    clean = clf.predict_proba(image[None])[0, 0] > 0.5
    calls = clf.predict_proba(color_balance(np.broadcast_to(image, (len(c), *image.shape)), c))[:, 0] > 0.5
    return bool((calls != clean).any())


def test_change_points_give_every_distinct_table() -> None:
    values = np.array([0, 1, 37, 100, 200, 255])
    cs = change_points(values, 0.9, 1.1)
    dense = np.linspace(0.9, 1.1, 200_001)
    v = values.astype(np.float64)
    # the colour perturbation's arithmetic (as color_tables), for the present values only
    dense_tables = {tuple(t) for t in np.clip(dense[:, None] * v[None], 0, 255).astype(np.uint8)}
    exact_tables = {tuple(t) for t in color_tables(np.repeat(cs[:, None], 3, 1))[:, 0, values]}
    assert {tuple(t) for t in np.clip(cs[:, None] * v[None], 0, 255).astype(np.uint8)} == exact_tables
    assert dense_tables <= exact_tables  # the dense grid finds nothing the enumeration misses
    assert len(exact_tables) == len(cs)  # one new table per change point (monotone steps)


@pytest.mark.parametrize("level", [150, 190, 191, 192, 200])
def test_no_certificate_for_an_image_the_grid_search_flips(level: int) -> None:
    clf = model(green_model_fn, size=SIZE, batch_size=8192)
    image = np.full((SIZE, SIZE, 3), level, np.uint8)
    flips = gain_grid_flips(clf, image)
    assert flips == (math.floor(level * 1.1) > GREEN_LIMIT)  # the known flip region: trunc(v c_g) > 210
    exact = exact_gain_certificate(clf, image, truth="melanoma", batch_size=8192)
    smooth = smoothing_certificate(clf, image, truth="melanoma", sigma=0.08, n0=64, n=1000, batch_size=8192)
    assert exact.certified is (not flips)  # exact: certified exactly when nothing in the box flips
    if flips:
        assert not smooth.certified
        assert "flipping_tables" in exact.details
    assert smooth.method == "smoothing-gain" and exact.method == "exact-gain"


def test_smoothing_certifies_far_from_the_flip_region_and_abstains_near_it() -> None:
    clf = model(green_model_fn, size=SIZE, batch_size=8192)
    far = smoothing_certificate(
        clf, np.full((SIZE, SIZE, 3), 150, np.uint8), sigma=0.08, n=3000, batch_size=8192
    )
    assert far.certified and far.radius is not None and far.radius >= far.required_radius
    assert far.required_radius == pytest.approx(math.sqrt(3) * -math.log(0.9))
    assert "clean image's transform parameter" in far.scope
    # on the flip boundary the smoothed call is a coin toss: no radius
    edge = smoothing_certificate(
        clf, np.full((SIZE, SIZE, 3), 211, np.uint8), sigma=0.08, n=200, batch_size=8192
    )
    assert not edge.certified and edge.reason


def test_exact_certificate_is_not_attempted_beyond_its_budget() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, size=(SIZE, SIZE, 3), dtype=np.uint8)
    cert = exact_gain_certificate(model(green_model_fn, size=SIZE), image, max_images=1000)
    assert cert.certified is None and cert.reason.startswith("not attempted")
    assert cert.details["reachable_images"] > 1000


def _dot_image(angle_deg: float, size: int = 33) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    c = (size - 1) / 2
    col = int(round(c + 11 * math.cos(math.radians(angle_deg))))
    row = int(round(c - 11 * math.sin(math.radians(angle_deg))))
    image[row - 1 : row + 2, col - 1 : col + 2] = 255
    return image


def cone_fn(images: np.ndarray) -> np.ndarray:
    """Melanoma while the bright mass lies within 30 degrees of 'east' (angle counter-clockwise)."""
    x = images[..., 0].astype(np.float64)
    h, w = x.shape[1:3]
    rows, cols = np.mgrid[0:h, 0:w]
    total = x.sum(axis=(1, 2)) + 1e-9
    dx = (x * (cols - (w - 1) / 2)).sum(axis=(1, 2)) / total
    dy = -(x * (rows - (h - 1) / 2)).sum(axis=(1, 2)) / total
    inside = np.abs(np.degrees(np.arctan2(dy, dx))) <= 30
    p = np.where(inside, 0.9, 0.1)
    return np.stack([p, 1 - p], axis=1)


@pytest.mark.parametrize("dot", [0.0, 12.0, 25.0, -27.0])
def test_rotation_certificate_never_contradicts_the_angle_grid(dot: float) -> None:
    clf = CallableClassifier(cone_fn, ("mel", "nv"), (33, 33), batch_size=512)
    image = _dot_image(dot)
    angles = np.linspace(-10, 10, 801)
    calls = clf.predict_proba(rotate(np.broadcast_to(image, (len(angles), 33, 33, 3)), angles))[:, 0] > 0.5
    flips = bool((calls != calls[400]).any())
    assert flips == (abs(dot) > 20)  # the dot leaves the 30-degree cone within +-10 degrees
    cert = smoothing_certificate(clf, image, kind="rotation", max_angle=10, sigma=5.0, n=600, batch_size=512)
    if flips:
        assert not cert.certified
    if dot == 0.0:
        assert cert.certified  # 30 degrees from the edge: p_low ~ 1, radius > 10
    assert cert.method == "smoothing-rotation" and cert.range == [-10.0, 10.0]


def test_colour_constancy_gives_no_exact_certificate_and_says_why() -> None:
    clf = model(green_model_fn, size=SIZE)
    image = np.full((SIZE, SIZE, 3), 120, np.uint8)
    image[:4, :, 1] = 180
    note = gain_invariance_note(apply_defences(clf, ["color-constancy:p=6"]), image)
    assert note["exact"] == "not sound" and "truncation" in note["reason"] and note["bound_grey_levels"] > 0
    bright = image.copy()
    bright[0, 0] = 250
    assert "clip" in gain_invariance_note(apply_defences(clf, ["color-constancy"]), bright)["reason"]
    assert "does not start with colour constancy" in gain_invariance_note(clf, image)["reason"]


def test_certified_accuracy_counts_only_certified_correct_calls() -> None:
    clf = model(green_model_fn, size=SIZE, batch_size=8192)
    certs = [
        exact_gain_certificate(
            clf, np.full((SIZE, SIZE, 3), v, np.uint8), image_id=str(v), truth=t, batch_size=8192
        )
        for v, t in ((150, "melanoma"), (200, "melanoma"), (150, "benign"))
    ]
    acc = certified_accuracy(certs)["exact-gain"]
    assert (acc["k"], acc["n"], acc["certified"], acc["clean_correct"]) == (1, 3, 2, 2)
    assert acc["method"].startswith("Wilson")
