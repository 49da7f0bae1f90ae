"""The few words every module shares: attack outcomes, attack directions, class groups.

They are string enums, so a value *is* its string: ``Outcome.SUCCESS == "success"``, it is stored
in SQLite, JSON and CSV as ``"success"``, and rows read back compare equal to the members.
"""

from __future__ import annotations

from enum import StrEnum

from dermadv.errors import DermadvError


class Outcome(StrEnum):
    """What one attack on one image came to."""

    SUCCESS = "success"  # the model's call changed to the target group
    FAILURE = "failure"  # attacked, the call did not change
    MISCLASSIFIED = "misclassified"  # the model had the image wrong before: not attacked
    ERROR = "error"  # the image or the model's output could not be used


class Group(StrEnum):
    """The two groups of model classes every comparison is made between."""

    MELANOMA = "melanoma"
    BENIGN = "benign"


class Direction(StrEnum):
    """Attack direction: true group -> target group."""

    MEL_TO_NV = "mel->nv"
    NV_TO_MEL = "nv->mel"

    @property
    def true_group(self) -> Group:
        return Group.MELANOMA if self is Direction.MEL_TO_NV else Group.BENIGN

    @property
    def target_group(self) -> Group:
        return Group.BENIGN if self is Direction.MEL_TO_NV else Group.MELANOMA

    @property
    def source_diagnosis(self) -> str:
        """The dataset diagnosis code the attacked images carry (``mel`` or ``nv``)."""
        return "mel" if self is Direction.MEL_TO_NV else "nv"


#: In the order tables and reports list them.
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
DIRECTIONS: tuple[str, ...] = tuple(d.value for d in Direction)


class DirectionError(DermadvError, ValueError):
    """An attack direction that is neither ``mel->nv`` nor ``nv->mel``."""


def check_direction(direction: str) -> Direction:
    """The :class:`Direction` for ``direction``, or DirectionError naming the valid ones."""
    try:
        return Direction(direction)
    except ValueError:
        raise DirectionError(
            f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}"
        ) from None


def check_outcome(outcome: str) -> Outcome:
    """The :class:`Outcome` for ``outcome``, or ValueError naming the valid ones."""
    try:
        return Outcome(outcome)
    except ValueError:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}") from None
