"""Attack results and the Attack interface: perturbation + search + criterion -> AttackResult.

Every attack takes the uint8 image *as the model is given it* (``model.prepare``: resized to
``model.input_size``; any other size is prepared first) and returns one :class:`AttackResult`.
Queries are counted honestly as images scored by the model: the initial prediction (1), every
candidate of every generation, and for gradient attacks one per image per forward+backward pass
plus the final checks. An image the model already gets wrong is not attacked ("misclassified",
1 query).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dermadv.attacks.criteria import CRITERIA, Misclassification, make_criterion
from dermadv.errors import NotWhiteBoxError
from dermadv.models.base import Classifier, Metadata
from dermadv.registry import RegistryError
from dermadv.vocab import Outcome, check_direction


class AttackConfigError(RegistryError):
    """An attack name or option is invalid (the message says which and what is allowed).

    A :class:`~dermadv.registry.RegistryError` (hence a DermadvError and a ValueError): code that
    catches registry errors for every kind of extension catches this one too."""


@dataclass
class AttackResult:
    """One attack on one image (a row of a campaign's results table)."""

    image_id: str
    attack: str
    direction: str  # a dermadv.vocab.Direction: "mel->nv" or "nv->mel"
    outcome: str  # a dermadv.vocab.Outcome: "success" | "failure" | "misclassified" (not attacked) | "error"
    true_group: str  # a dermadv.vocab.Group: "melanoma" | "benign"
    initial_probs: list[float]
    final_probs: list[float] | None
    initial_conf: float  # P(true group) before the attack
    final_conf: float | None  # P(true group) on the adversarial image
    params: dict[str, Any]
    queries: int  # images scored by the model, including the initial prediction
    generations: int  # DE generations completed after the initial population; PGD steps; 0 for FGSM
    seconds: float  # wall time from the start of run/run_many until this image's attack ended
    original: np.ndarray | None = field(default=None, repr=False)  # uint8 at model input size
    adversarial: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None
    criterion: str | None = None  # the success criterion that judged it ("group" or "top1")
    search: str | None = None  # the search strategy of a black-box attack ("de", "grid", ...)
    first_success_query: int | None = None  # query index of the first candidate meeting the criterion
    first_threshold_query: int | None = None  # ... of the first with P(target group) > threshold
    fittest: dict[str, Any] | None = None  # the fittest member, when the result is another (successful) one

    @property
    def success(self) -> bool:
        return self.outcome == Outcome.SUCCESS

    def to_dict(self, images: bool = False) -> dict[str, Any]:
        """Plain-Python fields (JSON-ready); the uint8 images only if ``images``."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("original", "adversarial")}
        if images:
            d["original"], d["adversarial"] = self.original, self.adversarial
        return d


@dataclass
class AttackJob:
    """One image being attacked: the prepared image, its criterion and bookkeeping."""

    index: int
    image_id: str
    image: np.ndarray
    metadata: Metadata
    criterion: Misclassification
    seed: int
    initial_probs: np.ndarray
    queries: int = 1  # the initial prediction
    device_image: Any = field(default=None, repr=False)  # the image on the model's device (device path)


def _per_image(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, (str, int, np.integer)) or value is None:
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise ValueError(f"{what}: got {len(items)} values for {n} images")
    return items


def model_device(model: Classifier) -> Any:
    """The torch device a model computes on (its ``device`` attribute; CPU if it has none)."""
    import torch

    return torch.device(getattr(model, "device", None) or "cpu")


def metadata_list(metadatas: Sequence[Metadata]) -> list[Metadata] | None:
    """None when no image has metadata (models without metadata get None), else the list."""
    return None if all(m is None for m in metadatas) else list(metadatas)


class Attack(ABC):
    """One attack. Subclasses set ``name``/``white_box_only`` and implement :meth:`_attack`."""

    name: str = "attack"
    white_box_only: bool = False

    def __init__(
        self,
        threshold: float = 0.9,
        fitness: str = "auto",
        batch_size: int | str | None = None,
        criterion: str = "group",
    ) -> None:
        Misclassification(threshold=threshold, fitness=fitness)  # validates
        if criterion not in CRITERIA:
            raise AttackConfigError(
                f"{self.name}: criterion {criterion!r} is not one of {', '.join(CRITERIA)}"
            )
        numeric = isinstance(batch_size, (int, float, np.integer)) and not isinstance(batch_size, bool)
        if batch_size == "auto":
            pass
        elif batch_size is not None and (not numeric or int(batch_size) != batch_size or batch_size < 1):
            raise AttackConfigError(
                f"{self.name}: batch_size must be a positive integer or 'auto', got {batch_size!r}"
            )
        self.threshold = float(threshold)
        self.fitness = fitness
        self.batch_size = batch_size
        self.criterion = criterion
        self._tuned_batch: int | None = None  # batch_size="auto": measured on the first images

    # ----- public API ---------------------------------------------------------------------------
    def run(
        self,
        model: Classifier,
        image: np.ndarray,
        metadata: Metadata = None,
        *,
        image_id: str,
        direction: str = "mel->nv",
        seed: int = 0,
    ) -> AttackResult:
        """Attack one image (uint8 H x W x 3, normally already at ``model.input_size``)."""
        return self.run_many(
            model, [image], [metadata], image_ids=[image_id], direction=direction, seeds=[seed]
        )[0]

    def run_many(
        self,
        model: Classifier,
        images: Sequence[np.ndarray] | np.ndarray,
        metadatas: Sequence[Metadata] | None = None,
        *,
        image_ids: Sequence[str],
        direction: str | Sequence[str] = "mel->nv",
        seeds: Sequence[int] | None = None,
    ) -> list[AttackResult]:
        """Attack several images together, batching what the model sees across them.

        Each image keeps its own random stream (``seeds[i]``), so the results equal running
        :meth:`run` on each image alone (up to the model's batch-size-dependent rounding).
        ``direction`` is one string for all images or one per image.
        """
        self.check_model(model)
        t0 = time.perf_counter()
        batch = model.prepare(images)
        n = len(batch)
        if isinstance(image_ids, str) or len(image_ids) != n:
            raise ValueError(f"image_ids: expected a sequence of {n} ids (one per image), got {image_ids!r}")
        ids = [str(i) for i in image_ids]
        metas = _per_image(metadatas, n, "metadatas") if metadatas is not None else [None] * n
        dirs = [check_direction(d) for d in _per_image(direction, n, "direction")]
        seed_list = [int(s) for s in _per_image(seeds if seeds is not None else 0, n, "seeds")]
        if self.batch_size == "auto" and self._tuned_batch is None:
            from dermadv.attacks.throughput import tuned_forward_batch

            self._tuned_batch = tuned_forward_batch(model, batch[0], metas[0])
        probs0 = model.predict_proba(batch, metadata_list(metas), batch_size=self.forward_batch(model))
        results: list[AttackResult | None] = [None] * n
        jobs: list[AttackJob] = []
        for i in range(n):
            crit = make_criterion(self.criterion, dirs[i], self.threshold, self.fitness)
            job = AttackJob(i, ids[i], batch[i], metas[i], crit, seed_list[i], probs0[i])
            if crit.is_correct(model, probs0[i])[0]:
                jobs.append(job)
            else:
                results[i] = self.finish(model, job, None, None, {}, 0, t0, outcome=Outcome.MISCLASSIFIED)
        if jobs:
            for job, res in zip(jobs, self._attack(model, jobs, t0), strict=True):
                results[job.index] = res
        return [r for r in results if r is not None]

    def check_model(self, model: Classifier) -> None:
        """Raise NotWhiteBoxError if this attack needs gradients the model cannot give."""
        if self.white_box_only and not getattr(model, "white_box", False):
            raise NotWhiteBoxError(
                f"attack {self.name!r} needs gradients, but model {model.name!r} "
                f"({type(model).__name__}) is a black-box model with no differentiable torch forward; "
                "use a black-box attack (pixel, color, rotation) or a white-box model"
            )

    def describe(self) -> dict[str, Any]:
        """The attack's settings (recorded in run.json beside results)."""
        d: dict[str, Any] = {
            "attack": self.name,
            "white_box_only": self.white_box_only,
            "threshold": self.threshold,
            "fitness": self.fitness,
            "batch_size": self.batch_size,
        }
        if self.criterion != "group":  # recorded when not the default: older runs stay resumable
            d["criterion"] = self.criterion
        return d

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "attack")
        return f"{type(self).__name__}({inner})"

    # ----- for subclasses -----------------------------------------------------------------------
    @abstractmethod
    def _attack(self, model: Classifier, jobs: list[AttackJob], t0: float) -> list[AttackResult]:
        """Attack the correctly classified images; one result per job, in order."""

    def forward_batch(self, model: Classifier) -> int:
        """Images per forward pass: the ``batch_size`` option, else the model's own ``batch_size``;
        ``"auto"``: the batch of best measured throughput (:mod:`dermadv.attacks.throughput`)."""
        if self.batch_size == "auto":
            return int(self._tuned_batch or model.batch_size)
        return int(self.batch_size or model.batch_size)

    def score(self, model: Classifier, images: np.ndarray, metadatas: Sequence[Metadata]) -> np.ndarray:
        """Probabilities for a batch of candidate images: one ``predict_proba`` call, which runs
        forward passes of :meth:`forward_batch` images (memory stays bounded for big populations)."""
        return model.predict_proba(images, metadata_list(metadatas), batch_size=self.forward_batch(model))

    def finish(
        self,
        model: Classifier,
        job: AttackJob,
        final_probs: np.ndarray | None,
        adversarial: np.ndarray | None,
        params: dict[str, Any],
        generations: int,
        t0: float,
        outcome: str | None = None,
        **extra: Any,
    ) -> AttackResult:
        """Build the result; the outcome is judged by the criterion on ``final_probs``. ``extra``:
        further AttackResult fields (search, first_success_query, first_threshold_query, fittest)."""
        crit = job.criterion
        init_conf = float(crit.confidences(model, job.initial_probs)[0][0])
        final_conf = None
        if final_probs is not None:
            final_conf = float(crit.confidences(model, final_probs)[0][0])
            if outcome is None:
                outcome = Outcome.SUCCESS if crit.is_success(model, final_probs)[0] else Outcome.FAILURE
        if outcome is None:
            raise ValueError(f"{self.name}: a result needs the final probabilities or an outcome")
        return AttackResult(
            image_id=job.image_id,
            attack=self.name,
            direction=crit.direction,
            outcome=Outcome(outcome),
            true_group=crit.true_group,
            initial_probs=[float(p) for p in job.initial_probs],
            final_probs=None if final_probs is None else [float(p) for p in final_probs],
            initial_conf=init_conf,
            final_conf=final_conf,
            params=params,
            queries=job.queries,
            generations=int(generations),
            seconds=time.perf_counter() - t0,
            original=job.image,
            adversarial=adversarial,
            criterion=getattr(crit, "name", "group"),
            **extra,
        )
