"""Batched, exact, parametric image perturbations (uint8 in, uint8 out)."""

from dermadv.perturb.affine import RotationTranslation, rotate
from dermadv.perturb.base import Perturbation
from dermadv.perturb.color import ColorBalance, color_balance
from dermadv.perturb.intensity import ChannelShift, shift_channels
from dermadv.perturb.pixels import FewPixels

__all__ = [
    "Perturbation",
    "ColorBalance",
    "color_balance",
    "RotationTranslation",
    "rotate",
    "FewPixels",
    "ChannelShift",
    "shift_channels",
]
