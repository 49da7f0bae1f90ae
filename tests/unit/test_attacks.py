"""Attacks on real ISIC images (../shared/data/isic-dev) against a small trained white-box CNN and
deterministic black-box models defined here. Checks the study's success definition, query
counting, stopping rules, scipy equivalence of the DE search and batching invariance."""

from __future__ import annotations

import numpy as np
import pytest

from attacks_support import ColourRatioModel
from dermadv.attacks import ATTACK_NAMES, AttackConfigError, DESearch, make_attack
from dermadv.attacks.criteria import Misclassification
from dermadv.attacks.de import DEOptions, differential_evolution


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


def test_every_attack_name_builds_and_describes_itself() -> None:
    for name in ATTACK_NAMES:
        attack = make_attack(name)
        assert attack.name == name and attack.describe()["attack"] == name
