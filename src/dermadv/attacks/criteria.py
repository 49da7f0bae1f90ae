"""What counts as a successful attack, kept apart from the search (foolbox style).

The study's definition: the image is a melanoma, the model called it melanoma before the attack
(P(melanoma group) > P(benign group)), and after the attack P(benign group) > P(melanoma group).
Group probabilities come from :meth:`Classifier.group_probs`, so a binary and a multi-class model are
judged alike (for a 7-class model, P(benign group) is P(nv) unless the groups are changed).
Direction ``"nv->mel"`` attacks naevi toward melanoma with the roles swapped.

The study defines success for a multi-class model in two ways, both offered (:data:`CRITERIA`,
``criterion=NAME`` on the black-box attacks): ``"group"`` (its Methods; the default): P(benign group)
> P(melanoma group) after the attack, the image having had P(melanoma group) > P(benign group) before;
``"top1"`` (its Supplementary Table 2): top-1 class melanoma (a class of the true group) before the
attack and any other top-1 class after. For a binary model the two agree. Under "group" an image
with P(mel) > P(nv) may still be top-1 bcc or bkl on a 7-class model; summaries count those.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.models.base import Classifier
from dermadv.vocab import Direction, Group, check_direction

#: Fitness functions (lower is better): "study" = P(true group), the study's objective;
#: "margin" = P(true group) - P(target group); "auto" = study for a model whose classes all belong
#: to the two groups (binary), margin otherwise (multi-class, where probability can leak elsewhere).
FITNESSES: tuple[str, ...] = ("auto", "study", "margin")


class Misclassification:
    """Untargeted-to-a-group criterion: push the true group's probability below the target group's.

    Parameters
    ----------
    direction : "mel->nv" (default; melanoma made to look benign) or "nv->mel".
    threshold : the search may stop once P(target group) > threshold (the study: 0.9).
    fitness : "auto" (default), "study" or "margin" (see ``FITNESSES``).
    """

    name: str = "group"

    def __init__(self, direction: str = "mel->nv", threshold: float = 0.9, fitness: str = "auto") -> None:
        self.direction = check_direction(direction)
        if not (0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        if fitness not in FITNESSES:
            raise ValueError(f"fitness {fitness!r} is not one of {', '.join(FITNESSES)}")
        self.threshold = float(threshold)
        self.fitness_name = fitness

    @property
    def true_group(self) -> Group:
        return self.direction.true_group

    @property
    def target_group(self) -> Group:
        return self.direction.target_group

    def target_indices(self, model: Classifier) -> list[int]:
        """Indices of the model's classes in the target group (for gradient losses)."""
        return model.benign_indices if self.direction is Direction.MEL_TO_NV else model.melanoma_indices

    def confidences(
        self, model: Classifier, probs: NDArray[np.floating[Any]]
    ) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
        """(P(true group), P(target group)) per row of an N x K probability array."""
        p_mel, p_ben = model.group_probs(np.atleast_2d(probs))
        return (p_mel, p_ben) if self.direction is Direction.MEL_TO_NV else (p_ben, p_mel)

    def resolved_fitness(self, model: Classifier) -> str:
        """ "study" or "margin": what "auto" means for this model."""
        if self.fitness_name != "auto":
            return self.fitness_name
        binary = set(model.classes) <= set(model.melanoma) | set(model.benign)
        return "study" if binary else "margin"

    def fitness(self, model: Classifier, probs: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
        """Objective to minimise, one value per row."""
        p_true, p_target = self.confidences(model, probs)
        if self.resolved_fitness(model) == "study":
            return p_true
        margin: NDArray[np.floating[Any]] = p_true - p_target
        return margin

    def is_correct(self, model: Classifier, probs: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        """Whether the model gets the true group right: P(true) > P(target) (worth attacking)."""
        p_true, p_target = self.confidences(model, probs)
        return p_true > p_target

    def is_success(self, model: Classifier, probs: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        """Whether the (perturbed) image now fools the model: P(target) > P(true)."""
        p_true, p_target = self.confidences(model, probs)
        return p_target > p_true

    def should_stop(self, model: Classifier, probs: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        """Whether the search may stop: P(target group) > threshold."""
        return self.confidences(model, probs)[1] > self.threshold

    def describe(self, model: Classifier | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "criterion": self.name,
            "direction": self.direction.value,
            "threshold": self.threshold,
            "fitness": self.fitness_name,
        }
        if model is not None:
            d["fitness_resolved"] = self.resolved_fitness(model)
        return d

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(direction={self.direction.value!r}, threshold={self.threshold}, "
            f"fitness={self.fitness_name!r})"
        )


class TopOneMisclassification(Misclassification):
    """Success as in the study's Supplementary Table 2: the top-1 class was one of the true group's
    before the attack (worth attacking) and is any other class after it. Fitness and the stopping
    threshold are those of :class:`Misclassification`."""

    name = "top1"

    def _true_top1(self, model: Classifier, probs: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        true = model.melanoma_indices if self.direction is Direction.MEL_TO_NV else model.benign_indices
        top: NDArray[np.bool_] = np.isin(np.argmax(np.atleast_2d(probs), axis=1), true)
        return top

    def is_correct(self, model: Classifier, probs: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        """Whether the top-1 class is one of the true group's."""
        return self._true_top1(model, probs)

    def is_success(self, model: Classifier, probs: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        """Whether the top-1 class is now any class outside the true group."""
        return ~self._true_top1(model, probs)


#: Success criteria by name: "group" (the study's Methods) and "top1" (its Supplementary Table 2).
CRITERIA: dict[str, type[Misclassification]] = {"group": Misclassification, "top1": TopOneMisclassification}

#: What may stop a search: "threshold" (the study: P(target group) > threshold) or "success" (the
#: criterion is met, e.g. plain misclassification).
STOP_RULES: tuple[str, ...] = ("threshold", "success")


def make_criterion(
    name: str = "group", direction: str = "mel->nv", threshold: float = 0.9, fitness: str = "auto"
) -> Misclassification:
    """The criterion ``name`` (one of :data:`CRITERIA`) for ``direction``."""
    if name not in CRITERIA:
        raise ValueError(f"criterion {name!r} is not one of {', '.join(CRITERIA)}")
    return CRITERIA[name](direction, threshold, fitness)


def top1_in_true_group(model: Classifier, probs: Any, direction: str = "mel->nv") -> NDArray[np.bool_]:
    """Whether each row's top-1 class belongs to the true group of ``direction``."""
    return TopOneMisclassification(direction).is_correct(model, np.asarray(probs, dtype=np.float64))
