"""Black-box attacks: a perturbation searched by batched differential evolution under a criterion.

Per image: the initial prediction (1 query), then the initial population and one population of
trials per generation, each scored in ONE ``predict_proba`` call -- with ``run_many`` the
candidates of all images still searching are concatenated into that one call. The search stops
when a member of the population reaches the criterion's threshold (P(target group) > 0.9 by
default; checked after the initial population and after every generation), at ``maxiter``
generations, or on convergence if enabled. The result is the fittest member of the final
population; success is judged on it by the criterion (the model's probabilities for exactly that
uint8 image, already computed during the search, so no extra query).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.base import Attack, AttackConfigError, AttackJob, AttackResult, model_device
from dermadv.attacks.de import DEOptions, DESearch
from dermadv.models.base import Classifier
from dermadv.perturb.base import Perturbation


class EvolutionaryAttack(Attack):
    """Differential evolution over a :class:`Perturbation`'s parameters.

    Options (scipy semantics, see :mod:`dermadv.attacks.de`): ``popsize`` (multiplier: max(5,
    popsize * D) candidates), ``maxiter`` (generations after the initial population), ``mutation``,
    ``recombination``, ``init``, ``tol``, ``atol``; ``threshold`` and ``fitness`` (criterion);
    ``batch_score`` (True: a generation is one forward pass; False: one candidate at a time, same
    search trajectory); ``batch_size`` (images per forward pass; None = the model's ``batch_size``,
    which its adapter sets for its runtime: set it >= the population to score a generation in
    exactly one pass).

    Defaults are the study's: popsize 20 (60 candidates for colour/rotation, 300 for 3 pixels),
    at most 20 generations after the initial population (scipy's counting; ``generations`` in the
    result is the number completed, so at most (20 + 1) x 60 + 1 queries for colour), mutation
    dithered in [0.5, 1), recombination 1, Latin hypercube start, stop at P(target group) > 0.9.
    """

    perturbation: Perturbation

    def __init__(
        self,
        perturbation: Perturbation,
        *,
        popsize: int = 20,
        maxiter: int = 20,
        mutation: float | tuple[float, float] = (0.5, 1.0),
        recombination: float = 1.0,
        init: str = "latinhypercube",
        tol: float = 0.0,
        atol: float = -1.0,
        threshold: float = 0.9,
        fitness: str = "auto",
        batch_score: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(threshold=threshold, fitness=fitness, batch_size=batch_size)
        if isinstance(mutation, list):
            mutation = tuple(mutation)
        try:
            self.options = DEOptions(popsize, maxiter, mutation, recombination, init, tol, atol)
        except ValueError as exc:
            raise AttackConfigError(f"{self.name}: {exc}") from None
        self.perturbation = perturbation
        self.batch_score = bool(batch_score)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            perturbation=self.perturbation.describe(),
            search=self.options.describe(),
            batch_score=self.batch_score,
        )
        return d

    def _attack(self, model: Classifier, jobs: list[AttackJob], t0: float) -> list[AttackResult]:
        searches = [
            DESearch(self.perturbation.bounds(job.image.shape), self.options, np.random.default_rng(job.seed))
            for job in jobs
        ]
        results: dict[int, AttackResult] = {}
        while len(results) < len(jobs):
            active = [i for i in range(len(jobs)) if i not in results]
            cands = {i: searches[i].ask() for i in active}
            probs = self._score_candidates(model, [jobs[i] for i in active], [cands[i] for i in active])
            for i, p in zip(active, probs, strict=True):
                job, search = jobs[i], searches[i]
                job.queries += len(p)
                search.tell(job.criterion.fitness(model, p), p)
                if search.extras is not None and job.criterion.should_stop(model, search.extras).any():
                    search.stop("threshold", force=True)  # also when it coincides with maxiter
                if search.done:
                    results[i] = self._result(model, job, search, t0)
        return [results[i] for i in range(len(jobs))]

    def _score_candidates(
        self, model: Classifier, jobs: list[AttackJob], cands: list[NDArray[np.float64]]
    ) -> list[NDArray[np.float64]]:
        """Probabilities for each job's candidates; all jobs' candidates in one forward pass."""
        device = model_device(model)  # torch-based perturbations run where the model runs
        images = [self.perturbation.apply(job.image, c, device) for job, c in zip(jobs, cands, strict=True)]
        metas = [job.metadata for job, im in zip(jobs, images, strict=True) for _ in range(len(im))]
        if self.batch_score:  # one image: its population as is (concatenating would copy it)
            probs = self.score(model, images[0] if len(images) == 1 else np.concatenate(images), metas)
        else:  # one candidate per model call: same trajectory, for checking and small devices
            flat = [im for batch in images for im in batch]
            probs = np.concatenate(
                [self.score(model, im[None], [m]) for im, m in zip(flat, metas, strict=True)]
            )
        return np.split(probs, np.cumsum([len(im) for im in images])[:-1])

    def _result(self, model: Classifier, job: AttackJob, search: DESearch, t0: float) -> AttackResult:
        best = search.best_x
        adversarial = self.perturbation.apply(job.image, best[None], model_device(model))[0]
        params = self.perturbation.describe_params(best, job.image.shape)
        params.update(fitness=search.best_energy, stop_reason=search.stop_reason, population=search.size)
        final = np.asarray(search.best_extra)
        return self.finish(model, job, final, adversarial, params, search.generation, t0)
