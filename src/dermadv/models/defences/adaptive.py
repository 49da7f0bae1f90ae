"""Attacks against a defended model: every attack end to end through the wrapper, plus adaptive ones.

Every attack here is black box through the defence: it submits uint8 images to the defended model and
reads its probabilities, and its queries are counted by the attack (images submitted) and by the
defence (forwards of the undefended model: one query costs ``query_cost(model)`` of them). Each
planned attack states its threat model.

Adaptive attacks aim at what a defence leaves open (searched by differential evolution over the
registered perturbation, ``evolve``, or a dedicated search space):

- colour constancy cancels a global per-channel gain, so: additive channel shifts (``shift``, not a
  gain, not cancelled), spatially varying colour and illumination (``illumination_gradient``,
  ``color_field`` when registered), vignetting (``black_corner`` when registered), and gains strong
  enough to clip (``color`` with delta 0.5: gains 0.5..1.5, outside the study's 0.9..1.1);
- a rotation TTA averages over a finite orbit, so: angles between the orbit's points (rotation searched
  over one gap of the orbit, where every orbit element is off by the same angle);
- a low-pass filter removes high frequencies, so: low-frequency colour attacks (``shift``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dermadv.attacks import Attack, EvolutionaryAttack, make_attack
from dermadv.models.base import Classifier
from dermadv.models.defences.base import Defence, chain_label, query_cost
from dermadv.perturb.affine import RotationTranslation
from dermadv.perturb.base import PERTURBATIONS

#: Perturbations aimed at colour constancy, tried when registered (the transforms helper adds some).
COLOUR_CONSTANCY_OPEN: tuple[tuple[str, str], ...] = (
    ("shift", "additive channel shifts (not a gain: not cancelled)"),
    ("illumination_gradient", "illumination gradient (spatially varying: one estimate cannot cancel it)"),
    ("color_field", "spatially varying colour field"),
    ("black_corner", "vignetting (dark corners change the illuminant estimate)"),
)

#: Search options the compare command passes to every attack it builds.
SEARCH_KEYS = ("popsize", "maxiter", "threshold", "fitness", "batch_size")


@dataclass
class PlannedAttack:
    """An attack to run against one defended model, with what it targets and its threat model."""

    name: str
    attack: Attack
    adaptive: bool
    aimed_at: str
    threat_model: str

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "adaptive": self.adaptive,
            "aimed_at": self.aimed_at,
            "threat_model": self.threat_model,
            "attack": self.attack.describe(),
        }


class OrbitGapRotation(RotationTranslation):
    """Rotation by an angle in [0, step] (one gap of a rotation orbit of spacing ``step`` degrees) plus the
    rotation attack's translation. Against an orbit-averaging TTA every angle is equivalent to one in
    this gap, so the search concentrates where the orbit is least covered."""

    name = "rotation-orbit-gap"

    def __init__(self, step: float, max_shift: float = 50.0, reference_size: float = 299.0) -> None:
        super().__init__(max_shift, reference_size)
        if not 0 < float(step) <= 360:
            raise ValueError(f"orbit step must be in (0, 360] degrees, got {step!r}")
        self.step = float(step)

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        b = super().bounds(image_shape)
        return [(0.0, self.step), *b[1:]]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": self.name, "angle_range": [0.0, self.step]}


def _threat(model: Classifier, adaptive: bool, aimed: str = "") -> str:
    cost = query_cost(model)
    if not isinstance(model, Defence):
        return (
            "black box: the attacker submits images and reads the model's probabilities (1 forward per query)"
        )
    knows = (
        f"and knows the defence ({chain_label(model)}): search space chosen for what it leaves open ({aimed})"
        if adaptive
        else f"and does not use knowledge of the defence ({chain_label(model)})"
    )
    return (
        "black box through the defence: the attacker submits images and reads the defended model's "
        f"probabilities (one query = {cost} forward(s) of the undefended model), {knows}"
    )


def _search(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in SEARCH_KEYS and v is not None}


def standard_attacks(
    model: Classifier, names: Sequence[str], options: Mapping[str, Any]
) -> list[PlannedAttack]:
    """The named registered attacks (``options``: shared search options), end to end through the defence."""
    out = []
    for name in names:
        attack = make_attack(name, **_search(options))
        out.append(PlannedAttack(name, attack, False, "the model (defence-agnostic)", _threat(model, False)))
    return out


def _orbit_step(model: Defence) -> float | None:
    """Smallest angular spacing of the rotation orbits of the TTAs in the chain (None: no rotation TTA)."""
    from dermadv.models.defences.tta import TestTimeAugmentation

    steps: list[int] = []
    for d in model.chain():
        if isinstance(d, TestTimeAugmentation):
            if d.d4:
                steps.append(4)
            if d.rotations > 1:
                steps.append(d.rotations)
    if not steps:
        return None
    k = math.lcm(*steps)
    return 360.0 / k


def adaptive_attacks(model: Classifier, options: Mapping[str, Any]) -> tuple[list[PlannedAttack], list[str]]:
    """Attacks aimed at what each defence of ``model``'s chain leaves open, and notes on those skipped
    (a perturbation that is not registered). An undefended model gets none."""
    from dermadv.models.defences.colour import ColorConstancy
    from dermadv.models.defences.lowpass import LowPass

    if not isinstance(model, Defence):
        return [], []
    search = _search(options)
    planned: list[PlannedAttack] = []
    skipped: list[str] = []
    kinds = {type(d) for d in model.chain()}
    registered = set(PERTURBATIONS.names())
    if ColorConstancy in kinds or LowPass in kinds:
        aims = COLOUR_CONSTANCY_OPEN if ColorConstancy in kinds else COLOUR_CONSTANCY_OPEN[:1]
        for pert, aim in aims:
            if pert not in registered:
                skipped.append(f"{pert}: not a registered perturbation here ({aim})")
                continue
            attack = make_attack("evolve", perturbation=pert, **search)
            name = f"adaptive:{pert}"
            attack.name = name
            planned.append(PlannedAttack(name, attack, True, aim, _threat(model, True, aim)))
    if ColorConstancy in kinds:
        aim = "gains strong enough to clip (0.5..1.5, beyond the study's 0.9..1.1)"
        attack = make_attack("color", delta=0.5, **search)
        attack.name = "adaptive:clipping-gain"
        planned.append(PlannedAttack(attack.name, attack, True, aim, _threat(model, True, aim)))
    step = _orbit_step(model)
    if step is not None:
        aim = f"angles between the rotation orbit's points (one gap: 0..{step:g} degrees, plus translation)"
        attack = EvolutionaryAttack(OrbitGapRotation(step), **search)
        attack.name = "adaptive:orbit-gap-rotation"
        planned.append(PlannedAttack(attack.name, attack, True, aim, _threat(model, True, aim)))
    return planned, skipped
