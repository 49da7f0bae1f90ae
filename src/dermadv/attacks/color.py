"""Colour-balance attack: each RGB channel scaled by c_k in [1 - delta, 1 + delta], found by DE."""

from __future__ import annotations

from typing import Any

from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.perturb.color import ColorBalance


class ColorAttack(EvolutionaryAttack):
    """The study's colour attack: c in [0.9, 1.1]^3 (``delta=0.1``), clipped at 255, truncated.

    ``params`` of a result: ``{"c": [c_r, c_g, c_b], ...}``.
    """

    name = "color"

    def __init__(self, delta: float = 0.1, **options: Any) -> None:
        super().__init__(ColorBalance(delta), **options)
