"""Few-pixel attack (Su et al.'s one-pixel attack with d pixels): positions and colours found by DE."""

from __future__ import annotations

from typing import Any

from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.perturb.pixels import FewPixels


class PixelAttack(EvolutionaryAttack):
    """The study's 3-pixel attack (``d=3``): each pixel (x, y, r, g, b), D = 5 d parameters.

    ``params`` of a result: ``{"pixels": [{"x", "y", "r", "g", "b"}, ...], ...}`` (integers written).
    """

    name = "pixel"

    def __init__(self, d: int = 3, **options: Any) -> None:
        super().__init__(FewPixels(d), **options)
