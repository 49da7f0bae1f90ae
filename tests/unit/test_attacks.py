"""Attacks on synthetic lesion images (``dermadv.synthetic``; no data needed) against a small trained
white-box CNN and deterministic black-box models defined here. Checks the study's success definition, query
counting, stopping rules, scipy equivalence of the DE search and batching invariance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dermadv.attacks import ATTACK_NAMES, AttackConfigError, DESearch, make_attack
from dermadv.attacks.criteria import Misclassification
from dermadv.attacks.de import DEOptions, differential_evolution
from dermadv.errors import NotWhiteBoxError
from dermadv.models.base import Classifier, TorchModuleClassifier
from dermadv.perturb import FewPixels, rotate
from dermadv.synthetic import make_lesion_image

SIZE = (64, 64)


def _lesions(melanoma: bool, n: int) -> list[np.ndarray]:
    """``n`` synthetic lesions (``dermadv.synthetic``) at 64 px: variegated, irregular melanomas or
    smooth brown naevi on skin-toned, textured backgrounds."""
    seed = 1 if melanoma else 2
    return [make_lesion_image(np.random.default_rng([seed, i]), SIZE[0], melanoma) for i in range(n)]


@pytest.fixture(scope="module")
def melanomas() -> list[np.ndarray]:
    return _lesions(True, 12)


@pytest.fixture(scope="module")
def naevi() -> list[np.ndarray]:
    return _lesions(False, 12)


class ColourRatioModel(Classifier):
    """Deterministic black box: P(mel) = sigmoid(k * (log(mean R / mean B) - t)).

    A colour-balance change moves log(R/B) by at most log(1.1 / 0.9) = 0.2, so a threshold ``t``
    just below an image's own log-ratio makes the model easy to fool, a low one makes it impossible.
    With ``bkl`` a third class takes a fixed share ``other`` of the probability.
    """

    name = "colour-ratio"
    input_size = SIZE

    def __init__(
        self, t: float, k: float = 50.0, classes: tuple[str, ...] = ("nv", "mel"), other: float = 0.0
    ) -> None:
        super().__init__()
        self.t, self.k, self.classes, self.other = t, k, classes, other

    @staticmethod
    def log_ratio(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64)
        return np.log(x[..., 0].mean(axis=(1, 2)) / x[..., 2].mean(axis=(1, 2)))

    def _predict(self, images: np.ndarray, metadata) -> np.ndarray:
        p_mel = (1 - self.other) / (1 + np.exp(-self.k * (self.log_ratio(images) - self.t)))
        cols = {"mel": p_mel, "nv": 1 - self.other - p_mel, "bkl": np.full(len(images), self.other)}
        return np.stack([cols[c] for c in self.classes], axis=1)


def _ratio_model(image: np.ndarray, margin: float, **kw) -> ColourRatioModel:
    """A model whose P(mel) for ``image`` is sigmoid(50 * margin)."""
    return ColourRatioModel(t=float(ColourRatioModel.log_ratio(image[None])[0]) - margin, **kw)


@pytest.fixture(scope="module")
def cnn(melanomas: list[np.ndarray], naevi: list[np.ndarray]) -> TorchModuleClassifier:
    """A tiny CNN trained for 60 steps on 24 synthetic melanoma/naevus images at 64 px."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the test machine is shared; one thread is fastest under load
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 2),
    )
    model = TorchModuleClassifier(net, ("nv", "mel"), SIZE, device="cpu", name="tiny-cnn")
    x = torch.from_numpy(np.stack(melanomas + naevi)).permute(0, 3, 1, 2).float()
    y = torch.tensor([1] * len(melanomas) + [0] * len(naevi))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    net.train()
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model.torch_forward(x), y).backward()
        opt.step()
    net.eval()
    return model


def _correct_melanomas(model: Classifier, melanomas: list[np.ndarray]) -> list[np.ndarray]:
    p_mel, p_ben = model.group_probs(model.predict_proba(np.stack(melanomas)))
    chosen = [im for im, a, b in zip(melanomas, p_mel, p_ben, strict=True) if a > b]
    assert len(chosen) >= 4, "the test CNN should get most training melanomas right"
    return chosen


# ----- criterion -------------------------------------------------------------------------------
def test_success_is_the_study_definition_binary_and_multiclass() -> None:
    binary = ColourRatioModel(0.0)  # classes (nv, mel)
    crit = Misclassification("mel->nv")
    probs = np.array([[0.3, 0.7], [0.7, 0.3], [0.5, 0.5], [0.95, 0.05]])
    np.testing.assert_array_equal(crit.is_correct(binary, probs), [True, False, False, False])
    np.testing.assert_array_equal(crit.is_success(binary, probs), [False, True, False, True])
    np.testing.assert_array_equal(crit.should_stop(binary, probs), [False, False, False, True])
    np.testing.assert_allclose(crit.fitness(binary, probs), [0.7, 0.3, 0.5, 0.05])  # study: P(true)
    back = Misclassification("nv->mel")
    np.testing.assert_array_equal(back.is_success(binary, probs), [True, False, False, False])
    assert crit.true_group == "melanoma" and back.true_group == "benign"

    multi = ColourRatioModel(0.0, classes=("mel", "nv", "bkl"))
    probs3 = np.array([[0.30, 0.25, 0.45], [0.20, 0.25, 0.55], [0.05, 0.91, 0.04]])
    # success = P(nv) > P(mel), whatever the other classes get
    np.testing.assert_array_equal(crit.is_success(multi, probs3), [False, True, True])
    np.testing.assert_array_equal(crit.should_stop(multi, probs3), [False, False, True])
    assert crit.resolved_fitness(multi) == "margin" and crit.resolved_fitness(binary) == "study"
    np.testing.assert_allclose(crit.fitness(multi, probs3), [0.05, -0.05, -0.86])
    with pytest.raises(ValueError, match="direction"):
        Misclassification("mel->bcc")


def test_misclassified_images_are_not_attacked(melanomas: list[np.ndarray], naevi: list[np.ndarray]) -> None:
    mel = melanomas[0]
    says_benign = _ratio_model(mel, margin=-0.05)  # P(mel) = sigmoid(-2.5) < 0.5
    for name in ("color", "pixel", "rotation"):
        r = make_attack(name).run(says_benign, mel, image_id="m0")
        assert r.outcome == "misclassified" and r.queries == 1 and r.generations == 0
        assert r.final_probs is None and r.adversarial is None and r.final_conf is None
        assert r.initial_conf == pytest.approx(1 / (1 + np.exp(2.5)))
        np.testing.assert_array_equal(r.original, mel)
    # a naevus the model calls melanoma is "misclassified" for nv->mel
    nv = naevi[0]
    r = make_attack("color").run(_ratio_model(nv, 0.05), nv, image_id="n0", direction="nv->mel")
    assert r.outcome == "misclassified" and r.true_group == "benign"


# ----- differential evolution ------------------------------------------------------------------
def test_de_is_bit_identical_to_scipy_best1bin_deferred() -> None:
    from scipy.optimize import differential_evolution as scipy_de
    from scipy.optimize import rosen

    bounds = [(-2.0, 2.0), (-1.0, 3.0), (0.0, 5.0)]
    for init, mutation, cr in [("latinhypercube", (0.5, 1.0), 1.0), ("random", 0.7, 0.5)]:
        ours = differential_evolution(
            lambda x: rosen(x.T),
            bounds,
            seed=np.random.default_rng(3),
            maxiter=12,
            popsize=7,
            init=init,
            mutation=mutation,
            recombination=cr,
        )
        ref = scipy_de(
            rosen,
            bounds,
            rng=np.random.default_rng(3),
            maxiter=12,
            popsize=7,
            init=init,
            mutation=mutation,
            recombination=cr,
            polish=False,
            updating="deferred",
            vectorized=True,
            tol=0,
            atol=-1,
        )
        np.testing.assert_array_equal(ours.x, ref.x)
        np.testing.assert_array_equal(ours.population, ref.population)
        assert ours.fun == ref.fun and ours.generations == ref.nit == 12
        assert ours.nfev == 13 * 21  # (maxiter + 1) * popsize * D


def test_de_options_as_scipy_arguments_give_the_same_search() -> None:
    from scipy.optimize import differential_evolution as scipy_de
    from scipy.optimize import rosen

    bounds = [(-2.0, 2.0), (-1.0, 3.0), (0.0, 5.0)]
    opts = DEOptions(popsize=6, maxiter=8)
    search = DESearch(bounds, opts, np.random.default_rng(4))
    while not search.done:
        search.tell(rosen(search.ask().T))
    ref = scipy_de(rosen, bounds, rng=np.random.default_rng(4), vectorized=True, **opts.scipy_kwargs())
    np.testing.assert_array_equal(search.best_x, ref.x)
    assert search.best_energy == ref.fun


def test_de_options_are_validated() -> None:
    assert DEOptions().population_size(3) == 60 and DEOptions().population_size(15) == 300
    assert DEOptions(popsize=1).population_size(3) == 5  # scipy's minimum
    with pytest.raises(ValueError, match="maxiter"):
        DEOptions(maxiter=-1)
    with pytest.raises(ValueError, match="bounds\\[1\\]"):
        DESearch([(0, 1), (2, 2)])
    with pytest.raises(AttackConfigError, match="unknown option"):
        make_attack("color", popsiz=3)
    with pytest.raises(AttackConfigError, match="unknown attack"):
        make_attack("deepfool")
    assert make_attack("fgsm", eps="4,1,2").eps == (1.0, 2.0, 4.0)
    assert make_attack("color", mutation="0.7").options.mutation == 0.7  # command-line strings
    assert make_attack("color", mutation="0.5,1", popsize="5").options.population_size(3) == 15
    only_init = differential_evolution(lambda x: (x**2).sum(axis=1), [(-1, 1)] * 2, maxiter=0)
    assert only_init.generations == 0 and only_init.nfev == 40 and only_init.stop_reason == "maxiter"


def test_color_attack_stops_at_threshold_on_an_easy_model(melanomas: list[np.ndarray]) -> None:
    mel = melanomas[1]
    model = _ratio_model(mel, margin=0.14)  # P(mel) = 0.999; an extreme colour balance fools it
    r = make_attack("color", maxiter=20).run(model, mel, image_id="m1", seed=0)
    assert r.outcome == "success" and r.params["stop_reason"] == "threshold"
    assert 0 < r.generations < 20  # needed some evolution, stopped well before the cap
    assert 1 - r.final_conf > 0.9  # P(benign) of the returned image passed the threshold
    assert r.queries == 1 + 60 * (r.generations + 1)
    row = json.loads(json.dumps(r.to_dict()))  # JSON-ready for the results store
    assert row["outcome"] == "success" and row["params"] == r.params and "adversarial" not in row
    c = np.array(r.params["c"])
    assert ((0.9 <= c) & (c <= 1.1)).all() and c[0] < c[2]  # less red, more blue
    expected = np.clip(mel * c, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(r.adversarial, expected)
    np.testing.assert_allclose(model.predict_proba(r.adversarial)[0], r.final_probs)  # honest re-check


def test_color_attack_runs_to_the_generation_cap_on_a_hard_model(melanomas: list[np.ndarray]) -> None:
    mel = melanomas[2]
    model = _ratio_model(mel, margin=0.5)  # needs a log-ratio change of 0.5 > 0.2: impossible
    r = make_attack("color", maxiter=4).run(model, mel, image_id="m2", seed=0)
    assert r.outcome == "failure" and r.generations == 4 and r.params["stop_reason"] == "maxiter"
    assert r.queries == 1 + 60 * 5
    assert r.final_conf < r.initial_conf  # the search still lowered P(melanoma)
    r1 = make_attack("color", maxiter=4, batch_score=False).run(model, mel, image_id="m2", seed=0)
    assert r1.params == r.params  # same trajectory scored one candidate at a time


def test_nv_to_mel_direction(naevi: list[np.ndarray]) -> None:
    nv = naevi[1]
    model = _ratio_model(nv, margin=-0.05)  # calls it a naevus with P(nv) = 0.92
    r = make_attack("color").run(model, nv, image_id="n1", direction="nv->mel", seed=2)
    assert r.direction == "nv->mel" and r.true_group == "benign" and r.outcome == "success"
    assert r.params["c"][0] > r.params["c"][2]  # redder


def test_multiclass_margin_fitness(melanomas: list[np.ndarray]) -> None:
    mel = melanomas[3]
    model = _ratio_model(mel, margin=0.05, classes=("mel", "nv", "bkl"), other=0.3)
    r = make_attack("color", maxiter=6).run(model, mel, image_id="m3", seed=1)
    p_mel, p_nv = r.final_probs[0], r.final_probs[1]
    assert r.outcome == "success" and p_nv > p_mel
    assert r.params["fitness"] == pytest.approx(p_mel - p_nv)  # margin for a multi-class model


def test_de_batch_and_one_at_a_time_are_bit_identical(cnn: TorchModuleClassifier, melanomas) -> None:
    mel = _correct_melanomas(cnn, melanomas)[0]
    batched = make_attack("color", maxiter=2).run(cnn, mel, image_id="a", seed=11)
    single = make_attack("color", maxiter=2, batch_score=False).run(cnn, mel, image_id="a", seed=11)
    assert batched.params["c"] == single.params["c"]  # bit-identical parameters
    assert batched.queries == single.queries == 1 + 60 * 3
    np.testing.assert_array_equal(batched.adversarial, single.adversarial)


def test_run_many_equals_one_by_one(melanomas: list[np.ndarray]) -> None:
    images = np.stack([melanomas[i] for i in (6, 9, 5, 7)])
    model = _ratio_model(melanomas[6], margin=0.12)  # the others sit elsewhere: mixed outcomes
    attack = make_attack("color", maxiter=6)
    ids, seeds = ["m6", "m9", "m5", "m7"], [5, 6, 7, 8]
    together = attack.run_many(model, images, image_ids=ids, seeds=seeds)
    alone = [attack.run(model, im, image_id=i, seed=s) for im, i, s in zip(images, ids, seeds, strict=True)]
    # populations that stop at different generations, an image not attacked, one never fooled
    assert [r.outcome for r in together] == ["success", "success", "misclassified", "failure"]
    assert len({r.generations for r in together}) >= 3
    for a, b in zip(together, alone, strict=True):
        assert (a.image_id, a.outcome, a.params, a.queries, a.generations) == (
            b.image_id,
            b.outcome,
            b.params,
            b.queries,
            b.generations,
        )
        assert a.final_probs == b.final_probs
        if a.adversarial is not None:
            np.testing.assert_array_equal(a.adversarial, b.adversarial)


def test_pixel_and_rotation_attacks_record_what_they_did(cnn: TorchModuleClassifier, melanomas) -> None:
    mel = _correct_melanomas(cnn, melanomas)[1]
    r = make_attack("pixel", maxiter=1, popsize=4).run(cnn, mel, image_id="p", seed=3)
    assert r.queries == 1 + 60 * 2 and len(r.params["pixels"]) == 3
    changed = (r.adversarial != mel).any(axis=-1)
    assert changed.sum() <= 3
    pixels = FewPixels(3)
    params = [v for px in r.params["pixels"] for v in (px["x"], px["y"], px["r"], px["g"], px["b"])]
    np.testing.assert_array_equal(pixels.apply(mel, np.array([params], float))[0], r.adversarial)

    r = make_attack("rotation", maxiter=1).run(cnn, mel, image_id="r", seed=3)
    bound = 50 * 64 / 299
    assert 0 <= r.params["angle_deg"] <= 360
    assert abs(r.params["dx_px"]) <= bound and abs(r.params["dy_px"]) <= bound
    expected = rotate(mel, r.params["angle_deg"], r.params["dx_px"], r.params["dy_px"])[0]
    np.testing.assert_array_equal(r.adversarial, expected)
    np.testing.assert_allclose(cnn.predict_proba(r.adversarial)[0], r.final_probs, atol=1e-6)
    assert r.outcome == ("success" if r.final_probs[0] > r.final_probs[1] else "failure")


# ----- gradient attacks ------------------------------------------------------------------------
def test_fgsm_raises_benign_confidence_and_reports_smallest_eps(cnn, melanomas) -> None:
    images = _correct_melanomas(cnn, melanomas)[:6]
    results = make_attack("fgsm", eps=(1, 2, 4, 8, 16)).run_many(cnn, images, image_ids=list("abcdef"))
    assert sum(r.outcome == "success" for r in results) >= 3
    for r, im in zip(results, images, strict=True):
        assert r.queries == 1 + 1 + 5 and r.final_conf < r.initial_conf  # P(melanoma) went down
        assert np.abs(r.adversarial.astype(int) - im).max() <= r.params["eps"]
        recheck = cnn.predict_proba(r.adversarial)[0]
        np.testing.assert_allclose(recheck, r.final_probs, atol=1e-6)  # judged on the uint8 image
        flags = r.params["success_by_eps"]
        if r.outcome == "success":
            assert r.params["eps"] == r.params["eps_tried"][flags.index(True)]
        else:
            assert not any(flags) and r.params["eps"] == 16


def test_pgd_stays_in_the_ball_and_beats_fgsm(cnn: TorchModuleClassifier, melanomas) -> None:
    images = _correct_melanomas(cnn, melanomas)[:4]
    pgd = make_attack("pgd", eps=4, step_size=1, steps=8).run_many(
        cnn, images, image_ids=list("abcd"), seeds=range(4)
    )
    fgsm = make_attack("fgsm", eps=4).run_many(cnn, images, image_ids=list("abcd"))
    for p, im in zip(pgd, images, strict=True):
        assert p.queries == 1 + 8 + 1 and p.adversarial.dtype == np.uint8
        assert 0 < p.params["linf"] <= 4 and np.abs(p.adversarial.astype(int) - im).max() <= 4
        assert p.final_conf < p.initial_conf
        json.dumps(p.to_dict())
        np.testing.assert_allclose(cnn.predict_proba(p.adversarial)[0], p.final_probs, atol=1e-6)
    assert np.mean([p.final_conf for p in pgd]) < np.mean([f.final_conf for f in fgsm])
    again = make_attack("pgd", eps=4, step_size=1, steps=8).run(cnn, images[0], image_id="a", seed=0)
    np.testing.assert_array_equal(again.adversarial, pgd[0].adversarial)  # seeded random start


def test_gradient_attacks_need_a_white_box(melanomas: list[np.ndarray]) -> None:
    model = _ratio_model(melanomas[0], margin=0.05)
    for name in ("fgsm", "pgd"):
        with pytest.raises(NotWhiteBoxError, match="black-box"):
            make_attack(name).run(model, melanomas[0], image_id="x")


def test_every_attack_name_builds_and_describes_itself() -> None:
    for name in ATTACK_NAMES:
        attack = make_attack(name)
        assert attack.name == name and attack.describe()["attack"] == name
