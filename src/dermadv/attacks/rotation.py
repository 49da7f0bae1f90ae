"""Rotation/translation attack: angle in [0, 360) degrees and a shift, found by DE."""

from __future__ import annotations

from typing import Any

from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.perturb.affine import RotationTranslation


class RotationAttack(EvolutionaryAttack):
    """The study's rotation attack: any angle, shift within 50 px of a 299 px image (scaled to the
    model's input size), black border, bilinear.

    ``params`` of a result: ``{"angle_deg": .., "dx_px": .., "dy_px": .., ...}``.
    """

    name = "rotation"

    def __init__(self, max_shift: float = 50.0, reference_size: float = 299.0, **options: Any) -> None:
        super().__init__(RotationTranslation(max_shift, reference_size), **options)
