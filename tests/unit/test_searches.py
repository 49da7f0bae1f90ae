"""Search strategies, stopping inside a population, budgets, honest query counts and the criteria,
on callable models whose flip regions are known (no data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dermadv.attacks import SEARCHES, AttackConfigError, make_attack
from dermadv.attacks.criteria import TopOneMisclassification, make_criterion
from dermadv.attacks.de import DEOptions, DESearch
from dermadv.attacks.searches import GridSearch, RandomSearch, SparseRSSearch, TwoStageSearch
from dermadv.models.callable_adapter import CallableClassifier

BASE = 200  # uniform grey test image
SIZE = 16


def grey(size: int = SIZE) -> np.ndarray:
    return np.full((size, size, 3), BASE, np.uint8)


def green_fn(images: np.ndarray) -> np.ndarray:
    """Naevus (0.95) once the mean green exceeds 210 (colour gain c_g >= 1.055 on grey 200), else mel 0.9."""
    g = images[..., 1].reshape(len(images), -1).mean(axis=1)
    p_nv = np.where(g > 210, 0.95, 0.1)
    return np.stack([1 - p_nv, p_nv], axis=1)


class Counting:
    """A model function that counts the images it scores."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.images = fn, 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.images += len(images)
        return self.fn(images)


def clf(fn: Any, classes: tuple[str, ...] = ("mel", "nv"), size: int = SIZE, batch_size: int = 32):
    return CallableClassifier(fn, classes, (size, size), name="toy", batch_size=batch_size)


# ----- chunked stopping ---------------------------------------------------------------------------
@pytest.mark.parametrize("search,options", [("random", "k=60,sampler=uniform"), ("de", "")])
def test_chunked_stopping_finds_the_same_first_success_as_whole_populations(
    search: str, options: str
) -> None:
    model = clf(green_fn)
    results = {}
    for chunk in (1, 7, 0):
        attack = make_attack(
            "color", popsize=20, maxiter=5, search=search, search_options=options, chunk=chunk, batch_size=64
        )
        results[chunk] = attack.run(model, grey(), image_id="g", seed=3)
    firsts = {c: r.first_success_query for c, r in results.items()}
    assert len(set(firsts.values())) == 1 and firsts[1] is not None, firsts
    first = firsts[1]
    assert all(r.success for r in results.values())
    assert results[1].queries == first  # one candidate per forward: stops exactly there
    assert results[7].queries == 1 + 7 * -(-(first - 1) // 7)  # the rest of the chunk was scored too
    assert results[0].queries >= results[7].queries >= results[1].queries
    # the candidate returned is the first success itself (every success has the same energy here)
    assert results[1].params["c"] == results[7].params["c"]
    assert results[1].first_threshold_query == first  # P(nv) = 0.95 > 0.9 at the same candidate
    assert results[1].params["stop_reason"] == "threshold"


def test_default_de_checks_whole_populations_as_the_study_did() -> None:
    attack = make_attack("color", popsize=20, maxiter=5)
    r = attack.run(clf(green_fn), grey(), image_id="g", seed=3)
    assert r.search == "de" and r.criterion == "group"
    assert (r.queries - 1) % 60 == 0  # whole populations of 60
    assert r.first_success_query is not None and r.first_success_query <= r.queries


# ----- grid ---------------------------------------------------------------------------------------
def test_grid_finds_the_flip_region_at_the_analytic_query_count() -> None:
    """Gains on linspace(0.9, 1.1, 5) per channel; only c_g = 1.1 flips (trunc(200 * 1.05) = 210 does not).
    Lexicographic (r slowest, b fastest): the first flip is point (0, 4, 0) = index 4 * 5 = 20, query
    1 + 21 = 22. Coarse to fine: ends first, so the first points are the 8 corners in C order and
    (0.9, 1.1, 0.9) is the third: query 1 + 3 = 4."""
    model = clf(green_fn)
    for order, want in (("lexicographic", 22), ("coarse", 4)):
        attack = make_attack("color", search="grid", search_options=f"points=5,order={order}", chunk=1)
        r = attack.run(model, grey(), image_id="g", seed=0)
        assert r.first_success_query == want == r.queries, order
        assert r.params["c"][1] == pytest.approx(1.1) and r.success


def test_grid_visits_every_point_once_and_periodic_axes_drop_their_upper_end() -> None:
    g = GridSearch([(0.0, 360.0), (-1.0, 1.0)], points="4,3", periodic="0")
    x = g.ask()
    assert len(x) == 12 and len({tuple(v) for v in x}) == 12
    assert sorted(set(x[:, 0])) == [0.0, 90.0, 180.0, 270.0]
    assert sorted(set(x[:, 1])) == [-1.0, 0.0, 1.0]
    g.tell(np.arange(12.0))
    assert g.done and g.stop_reason == "exhausted" and g.best_energy == 0.0
    with pytest.raises(ValueError, match="points"):
        GridSearch([(0.0, 1.0)] * 3, points="4,3")


# ----- Sparse-RS ----------------------------------------------------------------------------------
TRIGGER = {(1, 1), (4, 6), (6, 2)}  # (x, y) positions of the planted 3-pixel trigger on an 8 x 8 image


def trigger_fn(images: np.ndarray) -> np.ndarray:
    """P(mel) drops by 0.3 for each trigger position whose pixel is red (R >= 128, G < 128): all three
    give P(nv) = 0.95; the grey image has none."""
    hits = np.zeros(len(images))
    for x, y in TRIGGER:
        px = images[:, y, x]
        hits += (px[:, 0] >= 128) & (px[:, 1] < 128)
    p_mel = 0.95 - 0.3 * hits
    return np.stack([p_mel, 1 - p_mel], axis=1)


def test_sparse_rs_finds_a_planted_three_pixel_trigger() -> None:
    model = clf(trigger_fn, size=8)
    attack = make_attack(
        "pixel", search="sparse_rs", search_options="iterations=4000", max_queries=4001, batch_size=1
    )
    r = attack.run(model, grey(8), image_id="t", seed=1)
    assert r.success and r.params["stop_reason"] == "threshold", r.params
    written = {(p["x"], p["y"]) for p in r.params["pixels"] if p["r"] >= 128 and p["g"] < 128}
    assert written == TRIGGER
    assert r.queries == r.first_threshold_query < 4001


def test_sparse_rs_redraws_fewer_blocks_as_it_goes() -> None:
    s = SparseRSSearch([(0.0, 8.0), (0.0, 8.0), (0.0, 256.0), (0.0, 256.0), (0.0, 256.0)] * 4, iterations=100)
    assert s.fraction(0) == 0.8 and s.fraction(99) == pytest.approx(0.8 / 2**9)
    first = s.ask()[0]
    assert set(np.unique(first.reshape(4, 5)[:, 2:])) <= {0.0, 256.0}  # colours at the cube's vertices
    s.tell([1.0])
    second = s.ask()[0]
    changed = (first.reshape(4, 5) != second.reshape(4, 5)).any(axis=1)
    assert changed.sum() == 3  # round(0.8 * 4) blocks redrawn
    with pytest.raises(ValueError, match="blocks"):
        SparseRSSearch([(0.0, 1.0)] * 3)


# ----- honest query counts and budgets ------------------------------------------------------------
@pytest.mark.parametrize("search", ["de", "random", "grid", "two_stage", "sparse_rs"])
def test_queries_are_every_scored_image_including_the_initial_prediction(search: str) -> None:
    counter = Counting(lambda x: np.tile([0.8, 0.2], (len(x), 1)))  # nothing ever flips
    model = clf(counter)
    pert = "pixel" if search == "sparse_rs" else "color"
    attack = make_attack(pert, search=search, max_queries=37, chunk=5, popsize=2, maxiter=3)
    results = attack.run_many(model, [grey(), grey()], image_ids=["a", "b"], seeds=[0, 1])
    assert sum(r.queries for r in results) == counter.images
    assert all(r.queries <= 37 and not r.success and r.first_success_query is None for r in results)
    assert all(r.params["stop_reason"] in ("max_queries", "maxiter", "exhausted") for r in results)


def test_max_queries_cuts_a_population_and_says_so() -> None:
    counter = Counting(lambda x: np.tile([0.8, 0.2], (len(x), 1)))
    r = make_attack("color", max_queries=25).run(clf(counter), grey(), image_id="a", seed=0)
    assert r.queries == 25 == counter.images and r.params["stop_reason"] == "max_queries"


# ----- the criterion decides the result -----------------------------------------------------------
def three_class_fn(images: np.ndarray) -> np.ndarray:
    """(mel, nv, bkl): red gain up -> a bkl look-alike with the LOWEST P(mel) but P(nv) < P(mel) (no
    success); green gain up -> P(nv) 0.6 > P(mel) 0.4 (success); else melanoma."""
    m = images.reshape(len(images), -1, 3).mean(axis=1)
    out = np.tile([0.7, 0.2, 0.1], (len(images), 1))
    out[m[:, 1] > 210] = [0.4, 0.6, 0.0]
    out[m[:, 0] > 210] = [0.3, 0.1, 0.6]
    return out


def test_the_result_is_a_successful_member_when_the_fittest_is_not() -> None:
    model = clf(three_class_fn, classes=("mel", "nv", "bkl"))
    attack = make_attack("color", fitness="study", search="grid", search_options="points=3", chunk=27)
    r = attack.run(model, grey(), image_id="g", seed=0)
    assert r.params["stop_reason"] == "exhausted"  # P(nv) never exceeds 0.9: every point scored
    assert r.success and r.final_probs == pytest.approx([0.4, 0.6, 0.0])
    assert r.fittest is not None and not r.fittest["success"]
    assert r.fittest["final_probs"] == pytest.approx([0.3, 0.1, 0.6]) and r.fittest["fitness"] == 0.3
    assert r.first_success_query is not None


def test_top1_criterion_judges_by_the_top_class() -> None:
    model = clf(three_class_fn, classes=("mel", "nv", "bkl"))
    group, top1 = make_criterion("group"), make_criterion("top1")
    assert isinstance(top1, TopOneMisclassification) and top1.name == "top1" and group.name == "group"
    bkl_like = np.array([[0.3, 0.1, 0.6]])
    assert group.is_correct(model, bkl_like)[0] and not top1.is_correct(model, bkl_like)[0]
    assert top1.is_success(model, bkl_like)[0] and not group.is_success(model, bkl_like)[0]
    # under top1 the red (bkl) region is a success and the fittest: no other member is needed
    attack = make_attack("color", fitness="study", criterion="top1", search="grid", search_options="points=3")
    r = attack.run(model, grey(), image_id="g", seed=0)
    assert r.success and r.criterion == "top1" and r.fittest is None
    assert r.final_probs == pytest.approx([0.3, 0.1, 0.6])
    # an image that is top-1 bkl to begin with is not attacked under top1, but is under group
    start_bkl = clf(lambda x: np.tile([0.35, 0.2, 0.45], (len(x), 1)), classes=("mel", "nv", "bkl"))
    assert (
        make_attack("color", criterion="top1").run(start_bkl, grey(), image_id="b").outcome == "misclassified"
    )
    assert (
        make_attack("color", maxiter=0, popsize=2).run(start_bkl, grey(), image_id="b").outcome == "failure"
    )


# ----- the other searches -------------------------------------------------------------------------
def test_random_search_draws_low_discrepancy_points_within_bounds() -> None:
    r = RandomSearch([(0.9, 1.1), (-5.0, 5.0)], k=64, sampler="sobol", seed=0)
    x = r.ask()
    assert x.shape == (64, 2) and (x[:, 0] >= 0.9).all() and (x[:, 0] <= 1.1).all()
    # a scrambled Sobol set fills each half of each axis exactly
    assert (x[:, 1] < 0).sum() == 32
    assert not np.array_equal(x, RandomSearch([(0.9, 1.1), (-5.0, 5.0)], k=64, seed=1).ask())


def test_two_stage_refines_from_the_coarse_stage_best_points() -> None:
    def sphere(x: np.ndarray) -> np.ndarray:
        return ((x - 0.3) ** 2).sum(axis=1)

    for refine in ("de", "local"):
        s = TwoStageSearch([(-1.0, 1.0)] * 3, refine=refine, coarse_k=40, popsize=4, maxiter=30, seed=0)
        first = s.ask()
        assert len(first) == 40
        s.tell(sphere(first))
        coarse_best = s.best_energy
        while not s.done:
            s.tell(sphere(s.ask()))
        assert s.best_energy < coarse_best / 4, refine
    with pytest.raises(ValueError, match="population"):
        TwoStageSearch([(0.0, 1.0)] * 3, coarse_k=5, popsize=4)


def test_de_seeded_population_makes_trials_without_rescoring() -> None:
    de = DESearch([(0.0, 1.0)] * 2, DEOptions(popsize=3, maxiter=2), 0)
    u = np.random.default_rng(1).uniform(size=(6, 2))
    de.seed_population(u, u.sum(axis=1))
    assert de.nfev == 6 and de.best_energy == pytest.approx(u.sum(axis=1).min())
    assert de.ask().shape == (6, 2) and de.generation == 0


def test_cmaes_search_through_cma_finds_the_flip() -> None:
    pytest.importorskip("cma")
    attack = make_attack("color", search="cmaes", search_options="sigma=0.4", chunk=1, max_queries=400)
    r = attack.run(clf(green_fn), grey(), image_id="g", seed=0)
    assert r.success and r.search == "cmaes" and r.queries == r.first_success_query


def test_search_names_and_options_are_checked_up_front() -> None:
    assert {"de", "grid", "random", "sparse_rs", "two_stage", "cmaes"} <= set(SEARCHES.names())
    with pytest.raises(AttackConfigError, match="unknown search"):
        make_attack("color", search="nope")
    with pytest.raises(AttackConfigError, match="no option"):
        make_attack("color", search="grid", search_options="k=3")
    with pytest.raises(AttackConfigError, match="blocks"):
        make_attack("color", search="sparse_rs")  # 3 colour gains are not blocks of 5
    with pytest.raises(AttackConfigError, match="stop"):
        make_attack("color", stop="never")
    with pytest.raises(AttackConfigError, match="criterion"):
        make_attack("rotation", criterion="top5")
    d = make_attack("rotation", search="grid", search_options="points=31,5,5,periodic=0", chunk=1).describe()
    assert d["search_name"] == "grid" and d["search_options"] == {"points": "31,5,5", "periodic": "0"}
    assert "search_name" not in make_attack("rotation").describe()  # defaults: older runs stay resumable


# ----- throughput ---------------------------------------------------------------------------------
def test_forward_batch_is_measured_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dermadv.attacks import throughput

    monkeypatch.setenv("DERMADV_CACHE", str(tmp_path))
    monkeypatch.setattr(throughput, "_MEMORY", {})
    assert (
        throughput.pick_batch(
            [{"batch_size": 1, "images_per_s": 17.8}, {"batch_size": 60, "images_per_s": 14.6}]
        )
        == 1
    )
    assert (
        throughput.pick_batch([{"batch_size": 1, "images_per_s": 10}, {"batch_size": 8, "images_per_s": 80}])
        == 8
    )
    counter = Counting(green_fn)
    model = clf(counter)
    attack = make_attack("color", batch_size="auto", search="random", search_options="k=20")
    attack.run(model, grey(), image_id="g", seed=0)
    measured = throughput.measured(model)
    assert measured is not None and attack.forward_batch(model) == measured["batch_size"]
    assert (tmp_path / "throughput.json").exists()
    before = counter.images
    make_attack("color", batch_size="auto", search="random", search_options="k=20").run(
        model, grey(), image_id="g", seed=0
    )
    assert counter.images - before <= 21  # no second measurement: only the attack's own queries
