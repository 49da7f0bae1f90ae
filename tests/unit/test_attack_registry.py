"""Attacks, searches and perturbations as registered extensions (dermadv.registry), without data.

Checks that registry-built attacks describe themselves exactly as before (run.json settings hashes
unchanged), that every registered class lists its options explicitly, that shared and per-attack
options reach the attacks, and that bad names and options are one-line errors. The registered gamma
attack run through ``run_campaign`` and the CLI on real images: tests/integration/test_attack_registry.py.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

from attack_registry_support import GAMMA_ATTACK
from dermadv.attacks import (
    ATTACKS,
    SEARCHES,
    Attack,
    AttackConfigError,
    ColorAttack,
    DEOptions,
    DESearch,
    attack_class,
    attack_options,
    available_attacks,
    make_attack,
    parse_attack_options,
    register_attack,
    study_attacks,
)
from dermadv.campaign.runner import build_attacks
from dermadv.perturb import PERTURBATIONS, ColorBalance
from dermadv.registry import RegistryError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
SEARCH_OPTIONS = (
    "popsize",
    "maxiter",
    "mutation",
    "recombination",
    "init",
    "tol",
    "atol",
    "threshold",
    "fitness",
    "batch_score",
    "batch_size",
)
DE_SEARCH = {
    "popsize": 20,
    "maxiter": 20,
    "mutation": [0.5, 1.0],
    "recombination": 1.0,
    "init": "latinhypercube",
    "tol": 0.0,
    "atol": -1.0,
    "strategy": "best1bin",
    "updating": "deferred",
    "polish": False,
}


# ----- the registry itself ----------------------------------------------------------------------
def test_registry_built_attacks_describe_as_before() -> None:
    """The describe() of the classes that used to pass **options (values recorded before the change)."""
    assert make_attack("color").describe() == {
        "attack": "color",
        "white_box_only": False,
        "threshold": 0.9,
        "fitness": "auto",
        "batch_size": None,
        "perturbation": {
            "name": "color",
            "params": ["c_r", "c_g", "c_b"],
            "delta": 0.1,
            "arithmetic": "float64 multiply, clip to [0, 255], truncate (numpy astype(uint8))",
        },
        "search": DE_SEARCH,
        "batch_score": True,
    }
    assert make_attack("fgsm", eps="4,1", batch_size=8).describe() == {
        "attack": "fgsm",
        "white_box_only": True,
        "batch_size": 8,
        "eps": [1.0, 4.0],
    }
    assert make_attack("pgd", steps="3").describe() == {
        "attack": "pgd",
        "white_box_only": True,
        "batch_size": None,
        "eps": 8.0,
        "step_size": 2.0,
        "steps": 3,
        "random_start": True,
    }
    rot = make_attack("rotation", max_shift=10, fitness="margin", batch_score="no", maxiter="4").describe()
    assert rot["perturbation"] == {
        "name": "rotation",
        "params": ["angle_deg", "dx", "dy"],
        "max_shift": 10.0,
        "reference_size": 299.0,
        "interpolation": "bilinear, black fill, round half to even",
    }
    assert (rot["fitness"], rot["batch_score"], rot["search"]["maxiter"]) == ("margin", False, 4)
    pixel = make_attack("pixel", d=1, popsize=2).describe()
    assert pixel["perturbation"]["d"] == 1 and pixel["search"]["popsize"] == 2
    # the class built directly, by keyword, equals the registry's (same defaults, same order)
    assert ColorAttack(0.2, popsize=5).describe() == make_attack("color", delta="0.2", popsize="5").describe()


def test_every_registered_class_lists_its_options() -> None:
    for registry in (ATTACKS, SEARCHES, PERTURBATIONS):
        for entry in registry.entries():
            target = entry.obj.__init__ if isinstance(entry.obj, type) else entry.obj
            kinds = [p.kind for p in inspect.signature(target).parameters.values()]
            assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{registry.kind} {entry.name} takes **kwargs"
            assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"{registry.kind} {entry.name} takes *args"
    for name in ("pixel", "color", "rotation", "evolve"):
        assert set(SEARCH_OPTIONS) <= set(attack_options(name)), name
    assert list(attack_options("fgsm")) == ["eps", "batch_size"]
    assert list(attack_options("pgd")) == ["eps", "step_size", "steps", "random_start", "batch_size"]


def test_metadata_gives_the_study_default_set() -> None:
    study = ("fgsm", "pgd", "pixel", "color", "rotation")
    assert study_attacks() == study and available_attacks()[:5] == study and "evolve" in available_attacks()
    import dermadv.attacks

    assert dermadv.attacks.ATTACK_NAMES == study  # the old name, now read from the registry
    for name in available_attacks():
        cls = attack_class(name)
        assert ATTACKS.meta(name)["builtin"] is True and cls.name == name
        assert ATTACKS.meta(name).get("white_box_only", False) == cls.white_box_only
        assert make_attack(name).describe()["attack"] == name
    assert set(PERTURBATIONS.names()) >= {"color", "rotation", "pixel", "shift"}
    for name in PERTURBATIONS.names():
        assert PERTURBATIONS.get(name).name == name  # registered name = the name in describe()
    assert PERTURBATIONS.create("shift", max_shift="20").bounds((8, 8, 3)) == [(-20.0, 20.0)] * 3
    assert isinstance(PERTURBATIONS.create("color", delta="0.05"), ColorBalance)


def test_de_search_is_registered_and_creatable() -> None:
    bounds = [(0.0, 1.0), (-2.0, 2.0)]
    search = SEARCHES.create("de", bounds=bounds, popsize="3", mutation="0.7", seed=5)
    ref = DESearch(bounds, DEOptions(popsize=3, mutation=0.7), 5)
    assert search.size == ref.size == 6 and search.options == ref.options
    np.testing.assert_array_equal(search.ask(), ref.ask())
    assert "popsize" in SEARCHES.options("de") and SEARCHES.meta("de")["builtin"] is True


def test_errors_are_attack_config_errors_naming_what_is_valid() -> None:
    with pytest.raises(AttackConfigError, match="unknown attack 'deepfool'; choose one of: fgsm, pgd") as err:
        make_attack("deepfool")
    assert isinstance(err.value, RegistryError) and "\n" not in str(err.value)
    with pytest.raises(
        AttackConfigError, match=r"unknown option\(s\) popsiz; valid options: atol, batch_score"
    ):
        make_attack("color", popsiz=3)
    with pytest.raises(AttackConfigError, match="option maxiter='many' is not a valid int"):
        make_attack("color", maxiter="many")
    with pytest.raises(AttackConfigError, match=r"delta must be in \(0, 1\)"):
        make_attack("color", delta="2")
    with pytest.raises(AttackConfigError, match="batch_size must be a positive integer"):
        make_attack("pgd", batch_size="abc")
    with pytest.raises(AttackConfigError, match="unknown perturbation 'nope'; choose one of: .*shift"):
        make_attack("evolve", perturbation="nope")
    with pytest.raises(AttackConfigError, match=r"unknown option\(s\) delta; valid options: max_shift"):
        make_attack("evolve", perturbation="shift", perturbation_options="delta=0.1")
    with pytest.raises(AttackConfigError, match="evolve: perturbation 'shift': option max_shift='big'"):
        make_attack("evolve", perturbation_options="max_shift=big")
    with pytest.raises(AttackConfigError, match="cannot import 'no_such_module_xyz:Cls'"):
        register_attack("x", "no_such_module_xyz:Cls")
    with pytest.raises(AttackConfigError, match="not an Attack subclass"):
        register_attack("x", ColorBalance)  # type: ignore[arg-type]
    with pytest.raises(AttackConfigError, match="registered twice"):
        register_attack("color", GAMMA_ATTACK)

    class Loose(Attack):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)

        def _attack(self, model, jobs, t0):  # type: ignore[no-untyped-def]
            return []

    with pytest.raises(AttackConfigError, match="explicit keyword argument"):
        register_attack("loose", Loose)
    assert "loose" not in ATTACKS and "x" not in ATTACKS


def test_build_attacks_applies_shared_and_per_attack_options() -> None:
    built = build_attacks(
        ["color", "pgd", "evolve"],
        {
            "popsize": 3,
            "max_generations": 2,
            "eps": [2, 8],
            "threshold": None,
            "color.maxiter": "5",
            "color.delta": "0.05",
            "evolve.perturbation": "color",
            "fgsm.eps": "1",
        },
    )
    color = built["color"].describe()
    assert color["search"]["maxiter"] == 5 and color["search"]["popsize"] == 3  # own beats shared
    assert color["perturbation"]["delta"] == 0.05 and color["threshold"] == 0.9
    assert built["pgd"].eps == 8.0  # one-eps attack: the largest of the shared list
    assert built["evolve"].describe()["perturbation_name"] == "color"
    assert built["evolve"].options.maxiter == 2  # max_generations -> maxiter
    assert set(built) == {"color", "pgd", "evolve"}  # fgsm.eps is checked, but fgsm is not built
    with pytest.raises(
        AttackConfigError, match="attack 'fgsm' has no option 'steps'; valid options: batch_size"
    ):
        build_attacks(["color"], {"fgsm.steps": "3"})
    with pytest.raises(AttackConfigError, match="unknown attack 'nope'"):
        build_attacks(["color"], {"nope.x": "3"})


def test_parse_attack_options() -> None:
    assert parse_attack_options(
        ["color.delta=0.05", "pgd.random-start=no", "evolve.perturbation_options=a=1,b=2"]
    ) == {"color.delta": "0.05", "pgd.random_start": "no", "evolve.perturbation_options": "a=1,b=2"}
    assert parse_attack_options(None) == {}
