"""Attacks = perturbation + search + criterion, behind one factory: ``make_attack(name, **options)``.

Every attack is registered in ``ATTACKS`` (:mod:`dermadv.attacks.registry`, the one mechanism of
:mod:`dermadv.registry`). Built-ins: the study's five, in its order (:func:`study_attacks`, the
default set of a campaign): ``fgsm``, ``pgd`` (white-box gradient attacks), ``pixel``, ``color``,
``rotation`` (black-box, batched differential evolution by default, or any registered search: ``search=NAME``,
see :mod:`dermadv.attacks.searches`); and ``evolve`` (differential evolution over
any registered perturbation, ``perturbation=NAME``). Plugins register through the ``dermadv.attacks``
entry-point group. Options are the attack class's explicit keyword arguments (:func:`attack_options`);
strings (from a command line) are converted to the type of the default, e.g.
``make_attack("fgsm", eps="1,2,4")`` or ``make_attack("color", delta="0.2", maxiter="10")``.

Example::

    model = load_model("run/model.pt")
    image = model.prepare(model.load_image("ISIC_0000013.jpg"))[0]   # what the model sees
    result = make_attack("color").run(model, image, image_id="ISIC_0000013", seed=0)
    result.outcome, result.params["c"], result.queries, result.adversarial  # uint8 at input size

Success (the study's): a melanoma the model called melanoma (P(mel group) > P(benign group)) is
now called benign (P(benign group) > P(mel group)); see :mod:`dermadv.attacks.criteria`.
"""

from __future__ import annotations

from typing import Any

from dermadv.attacks.base import Attack, AttackConfigError, AttackResult
from dermadv.attacks.color import ColorAttack
from dermadv.attacks.criteria import CRITERIA, Misclassification, TopOneMisclassification, make_criterion
from dermadv.attacks.de import DEOptions, DESearch, de_search, differential_evolution
from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.attacks.evolve import EvolveAttack
from dermadv.attacks.fgsm import FGSM
from dermadv.attacks.pgd import PGD
from dermadv.attacks.pixel import PixelAttack
from dermadv.attacks.registry import (
    ATTACKS,
    SEARCHES,
    attack_class,
    attack_options,
    available_attacks,
    check_attack_option,
    make_attack,
    parse_attack_options,
    register_attack,
    split_attack_options,
    study_attacks,
)
from dermadv.attacks.rotation import RotationAttack
from dermadv.attacks.searches import (
    CMAESSearch,
    GridSearch,
    RandomSearch,
    Search,
    SparseRSSearch,
    TwoStageSearch,
)
from dermadv.vocab import DIRECTIONS


def __getattr__(name: str) -> Any:
    if name == "ATTACK_NAMES":  # deprecated: was a frozen tuple; now read from the registry each time
        return study_attacks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ATTACKS",
    "CRITERIA",
    "ATTACK_NAMES",
    "DIRECTIONS",
    "FGSM",
    "PGD",
    "SEARCHES",
    "Attack",
    "AttackConfigError",
    "AttackResult",
    "CMAESSearch",
    "GridSearch",
    "RandomSearch",
    "Search",
    "SparseRSSearch",
    "TopOneMisclassification",
    "TwoStageSearch",
    "ColorAttack",
    "DEOptions",
    "DESearch",
    "EvolutionaryAttack",
    "EvolveAttack",
    "Misclassification",
    "PixelAttack",
    "RotationAttack",
    "attack_class",
    "attack_options",
    "available_attacks",
    "check_attack_option",
    "de_search",
    "differential_evolution",
    "make_attack",
    "make_criterion",
    "parse_attack_options",
    "register_attack",
    "split_attack_options",
    "study_attacks",
]
