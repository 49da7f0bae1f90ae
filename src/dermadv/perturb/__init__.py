"""Batched, exact, parametric image perturbations (uint8 in, uint8 out).

Each is registered in ``PERTURBATIONS`` (``color``, ``rotation``, ``pixel``, ``shift``; the
photometric, noise, blur, digital, geometric and dermoscopy transforms of the modules imported below,
which include SAM-C's 14 corruptions and SAM-P's sequences, see :mod:`dermadv.perturb.benchmarks`;
plugins through the ``dermadv.perturbations`` entry-point group) and can be searched by the
``evolve`` attack.
"""

from dermadv.perturb.affine import RotationTranslation, rotate
from dermadv.perturb.base import PERTURBATIONS, Perturbation
from dermadv.perturb.color import ColorBalance, color_balance
from dermadv.perturb.intensity import ChannelShift, shift_channels
from dermadv.perturb.pixels import FewPixels

__all__ = [
    "PERTURBATIONS",
    "Perturbation",
    "ColorBalance",
    "color_balance",
    "RotationTranslation",
    "rotate",
    "FewPixels",
    "ChannelShift",
    "shift_channels",
]

# Imported for their registrations, after the study's four so that those come first in names().
from dermadv.perturb import photometric, noise, blur, digital, geometric, dermoscopy  # noqa: E402, F401, I001
