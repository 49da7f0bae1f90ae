"""Defences as Classifier wrappers: colour constancy invariance (exactly what holds under truncation),
TTA averaging, forward counting, chains, adaptive attacks (callable models, synthetic images; no data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from dermadv.attacks import make_attack
from dermadv.errors import ModelError
from dermadv.models.callable_adapter import CallableClassifier
from dermadv.models.defences import DEFENCES
from dermadv.models.defences.adaptive import adaptive_attacks
from dermadv.models.defences.base import apply_defences, chain_label, parse_defence
from dermadv.models.defences.colour import ColorConstancy, gain_invariance_bound, illuminant, shades_of_gray
from dermadv.models.defences.tta import TestTimeAugmentation
from dermadv.perturb.affine import rotate
from dermadv.perturb.color import color_balance
from robustness_support import BASE, constant_fn, green_model_fn, model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def smooth_image(seed: int, size: int = 48, lo: int = 40, hi: int = 200) -> np.ndarray:
    """A smooth, coloured, unclipped image with values in [lo, hi]."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random((size, size, 3)), sigma=(4, 4, 0))
    x = (x - x.min()) / (x.max() - x.min())
    tint = np.array([1.0, 0.8, 0.65])
    return np.rint(lo + (hi - lo) * x * tint + (1 - tint) * 20).astype(np.uint8)


def oriented_fn(images: np.ndarray) -> np.ndarray:
    """Orientation-dependent scores: P(mel) from red mass weighted by column and row position."""
    x = images[..., 0].astype(np.float64)
    h, w = x.shape[1:3]
    wx = np.linspace(-1, 1, w)[None, None, :] * 2 + np.linspace(-1, 1, h)[None, :, None]
    s = (x * wx).mean(axis=(1, 2)) / 40.0
    p = 1 / (1 + np.exp(-s))
    return np.stack([p, 1 - p], axis=1)


# ----- colour constancy ------------------------------------------------------------------------------
@pytest.mark.parametrize(("p", "sigma"), [(1.0, 0.0), (6.0, 0.0), (float("inf"), 0.0), (6.0, 2.0)])
def test_shades_of_gray_cancels_any_unclipped_gain_up_to_the_truncation_bound(p: float, sigma: float) -> None:
    rng = np.random.default_rng(1)
    for seed in range(4):
        image = smooth_image(seed)
        ref = shades_of_gray(image[None], p, sigma)[0].astype(int)
        for c in rng.uniform(0.6, 1.25, size=(6, 3)):
            moved = color_balance(image[None], c)  # the study's arithmetic: trunc(min(x c, 255))
            out = shades_of_gray(moved, p, sigma)[0].astype(int)
            bound = gain_invariance_bound(image, c, p, sigma)
            assert bound is not None  # max value 200 * 1.25 < 256: nothing clips
            diff = np.abs(out - ref).max()
            assert diff <= bound, (p, sigma, c, diff, bound)
            assert bound <= 6  # "unchanged to rounding": a few grey levels at most on these images
    # the gain itself moves the image by far more than that
    assert np.abs(color_balance(image[None], [0.7, 1.0, 1.2])[0].astype(int) - image).max() > 20


def test_shades_of_gray_is_exactly_invariant_when_truncation_is_exact() -> None:
    """Even pixel values and gains 1/2 or 1: trunc(x c) = x c exactly, so the output is identical."""
    image = (smooth_image(3, lo=40, hi=200) // 2 * 2).astype(np.uint8)
    for c in ([0.5, 1.0, 0.5], [0.5, 0.5, 0.5], [1.0, 0.5, 1.0]):
        moved = color_balance(image[None], c)
        np.testing.assert_array_equal(shades_of_gray(moved, 6.0)[0], shades_of_gray(image[None], 6.0)[0])
    np.testing.assert_allclose(
        illuminant(color_balance(image[None], [0.5, 1, 0.5]))[0],
        illuminant(image[None])[0] * [0.5, 1, 0.5],
        rtol=1e-12,
    )


def test_clipping_breaks_the_invariance_and_the_bound_says_so() -> None:
    image = np.full((16, 16, 3), 100, np.uint8)
    image[:8, :, 0] = 250  # bright red half: clips at c_r = 1.1
    assert gain_invariance_bound(image, [1.1, 1.0, 1.0], float("inf")) is None
    ref = shades_of_gray(image[None], float("inf"))[0].astype(int)
    out = shades_of_gray(color_balance(image[None], [1.1, 1.0, 1.0]), float("inf"))[0].astype(int)
    assert np.abs(out - ref).max() >= 3  # 110 * 160 / 255 = 69 against 100 * 160 / 250 = 64


def test_colour_constancy_stops_the_colour_attack_on_the_green_model() -> None:
    image = np.full((32, 32, 3), BASE, np.uint8)
    plain = model(green_model_fn)
    defended = apply_defences(plain, ["color-constancy:p=1"])
    attack = make_attack("color", popsize=5, maxiter=10)
    assert attack.run(plain, image, image_id="a", seed=0).success  # c_g >= 1.055 flips it
    result = attack.run(defended, image, image_id="a", seed=0)
    assert result.outcome == "failure"


def test_colour_constancy_option_errors_are_one_line() -> None:
    with pytest.raises(ModelError, match="p must be >= 1"):
        apply_defences(model(constant_fn), ["color-constancy:p=0.5"])
    with pytest.raises(ModelError, match="unknown defence 'jpeg'; choose one of: "):
        apply_defences(model(constant_fn), ["jpeg"])
    with pytest.raises(ModelError, match="not KEY=VALUE"):
        parse_defence("tta:rotations")


# ----- test-time augmentation ------------------------------------------------------------------------
def _explicit_mean(fn, views: list[np.ndarray]) -> np.ndarray:  # noqa: ANN001
    return np.mean([fn(v) for v in views], axis=0)


def test_tta_probabilities_are_the_mean_over_the_explicit_transforms() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 24, 24, 3), dtype=np.uint8)
    base = model(oriented_fn, size=24)
    d4 = [np.rot90(v, k, axes=(1, 2)) for v in (x, x[:, :, ::-1]) for k in range(4)]
    got = apply_defences(base, ["tta"]).predict_proba(x)
    np.testing.assert_allclose(got, _explicit_mean(oriented_fn, d4), rtol=1e-12)
    assert not np.allclose(got, oriented_fn(x))  # the model is not rotation-invariant: TTA changes it
    rot4 = [np.rot90(x, k, axes=(1, 2)) for k in range(4)]  # 90-degree turns are exact permutations
    np.testing.assert_allclose(
        apply_defences(base, ["tta:rotations=4"]).predict_proba(x),
        _explicit_mean(oriented_fn, rot4),
        rtol=1e-12,
    )
    rot8 = [rotate(x, 45.0 * j) for j in range(8)]
    np.testing.assert_allclose(
        apply_defences(base, ["tta:rotations=8"]).predict_proba(x),
        _explicit_mean(oriented_fn, rot8),
        rtol=1e-12,
    )
    gains = [color_balance(x, (a, b, c)) for a in (0.9, 1.1) for b in (0.9, 1.1) for c in (0.9, 1.1)]
    np.testing.assert_allclose(
        apply_defences(base, ["tta:gains=0.9;1.1"]).predict_proba(x),
        _explicit_mean(oriented_fn, gains),
        rtol=1e-12,
    )


def test_tta_passes_metadata_for_every_transformed_copy() -> None:
    seen: list[list] = []

    def fn(images: np.ndarray, metadata=None) -> np.ndarray:  # noqa: ANN001
        seen.append(list(metadata))
        return np.tile([0.6, 0.4], (len(images), 1))

    clf = CallableClassifier(fn, ("mel", "nv"), (16, 16), batch_size=64)
    clf.needs_metadata = True
    defended = apply_defences(clf, ["tta:rotations=4"])
    assert defended.needs_metadata
    defended.predict_proba(np.zeros((2, 16, 16, 3), np.uint8), [{"age": 30}, {"age": 70}])
    assert seen == [[{"age": 30}, {"age": 70}] * 4]


# ----- counting, chains, description -----------------------------------------------------------------
class Counting:
    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn, self.n = fn, 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.n += len(images)
        return self.fn(images)


@pytest.mark.parametrize(
    ("specs", "k"), [(["tta"], 8), (["tta:rotations=3"], 3), (["color-constancy", "tta:rotations=4"], 4)]
)
def test_defended_query_count_is_k_times_the_undefended_one(specs: list[str], k: int) -> None:
    image = np.full((24, 24, 3), BASE, np.uint8)
    attack = make_attack("color", popsize=2, maxiter=3, threshold=1.0)  # never stops early: full budget
    plain_fn = Counting(constant_fn)
    plain = model(plain_fn, size=24)
    r0 = attack.run(plain, image, image_id="a", seed=0)
    def_fn = Counting(constant_fn)
    defended = apply_defences(model(def_fn, size=24), specs)
    r1 = attack.run(defended, image, image_id="a", seed=0)
    assert r0.outcome == r1.outcome == "failure"
    assert r1.queries == r0.queries == plain_fn.n  # (3 + 1) generations x 6 candidates + 1
    assert defended.cost == k
    assert defended.model_forwards == def_fn.n == k * r0.queries
    defended.reset_forwards()
    assert defended.model_forwards == 0


def test_chain_order_description_and_interface() -> None:
    base = model(green_model_fn, size=32, batch_size=7)
    base.set_groups(["mel"], ["nv"])
    d = apply_defences(base, ["color-constancy:p=6", "tta:rotations=8", "lowpass:sigma=1.5"])
    assert [x.defence for x in d.chain()] == ["color-constancy", "tta", "lowpass"]
    assert isinstance(d, ColorConstancy) and isinstance(d.model, TestTimeAugmentation)
    assert chain_label(d) == "color-constancy + tta:rotations=8 + lowpass:sigma=1.5"
    assert (d.classes, d.input_size, d.batch_size, d.decoder) == (
        base.classes,
        base.input_size,
        7,
        base.decoder,
    )
    assert d.melanoma == base.melanoma and not d.white_box
    desc = d.describe()
    json.dumps(desc)
    assert desc["query_cost"] == 8 and desc["undefended"] == base.describe()
    assert desc["defences"][1] == {"defence": "tta", "d4": False, "rotations": 8, "gains": []}
    other = apply_defences(base, ["color-constancy:p=1"]).describe()
    assert other["defences"] != desc["defences"] and other["name"] != desc["name"]
    assert apply_defences(base, ["none"]) is base and chain_label(base) == "none"
    assert set(DEFENCES.names()) >= {"color-constancy", "tta", "lowpass"}


def test_gradient_attacks_refuse_a_defended_model() -> None:
    from dermadv.errors import NotWhiteBoxError

    d = apply_defences(model(constant_fn), ["tta"])
    with pytest.raises(NotWhiteBoxError):
        make_attack("fgsm").run(d, np.zeros((32, 32, 3), np.uint8), image_id="a")


# ----- adaptive attacks -------------------------------------------------------------------------------
def test_adaptive_attacks_aim_at_what_each_defence_leaves_open() -> None:
    base = model(constant_fn)
    assert adaptive_attacks(base, {}) == ([], [])
    cc, skipped = adaptive_attacks(apply_defences(base, ["color-constancy"]), {"popsize": 1})
    names = [p.name for p in cc]
    assert "adaptive:shift" in names and "adaptive:clipping-gain" in names
    assert all(p.adaptive and "knows the defence" in p.threat_model for p in cc)
    assert all(s.split(":")[0] in ("illumination_gradient", "color_field", "black_corner") for s in skipped)
    rot, _ = adaptive_attacks(apply_defences(base, ["tta:rotations=8"]), {})
    gap = [p for p in rot if p.name == "adaptive:orbit-gap-rotation"]
    assert len(gap) == 1
    assert gap[0].attack.perturbation.bounds((32, 32, 3))[0] == (0.0, 45.0)
    d4, _ = adaptive_attacks(apply_defences(base, ["tta:d4=true,rotations=3"]), {})
    assert next(p for p in d4 if "orbit" in p.name).attack.perturbation.step == 30.0  # lcm(4, 3) = 12


# ----- comparison helpers -----------------------------------------------------------------------------
def test_parse_chains_puts_the_undefended_model_first() -> None:
    from dermadv.models.defences.compare import parse_chains

    assert parse_chains("color-constancy:p=6;none;tta+tta:rotations=8") == [
        [],
        ["color-constancy:p=6"],
        ["tta", "tta:rotations=8"],
    ]
    assert parse_chains(["none"]) == [[]]


def test_exact_mcnemar_on_discordant_pairs() -> None:
    from dermadv.models.defences.compare import mcnemar_exact

    r = mcnemar_exact([True] * 6 + [False] * 4, [False] * 6 + [False] * 4)
    assert (r["reference_only"], r["defence_only"]) == (6, 0)
    assert r["p_value"] == pytest.approx(2 * 0.5**6)  # two-sided binomial, 6 of 6 discordant one way
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact([True], [True, False])
