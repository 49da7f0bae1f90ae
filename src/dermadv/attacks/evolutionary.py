"""Black-box attacks: a perturbation searched under a criterion, scored in batches across images.

Per image: the initial prediction (1 query), then the candidates its search asks for. The search is
differential evolution by default (``search="de"``, the study's settings); any registered search
(``SEARCHES``: grid, random, sparse_rs, two_stage, cmaes) can be named instead. Candidates are scored
in chunks of ``chunk`` per image, the chunks of all images still searching concatenated into one
``predict_proba`` call (throughput is kept by batching across images).

Stopping (``stop``): "threshold" (the study's rule, P(target group) > ``threshold``) or "success" (the
criterion is met). With the default ``chunk=0`` and DE, a whole population is one chunk and the rule is
checked on the population after each generation, exactly as before (the study's checks); any other
chunk (or search) checks every candidate in the order asked and stops the image's search at the
first that meets the rule, so that chunked scoring finds the same first success as scoring the whole
population in the same order, for fewer queries. Budgets: the search's own (``maxiter`` generations for
DE) and ``max_queries`` (images scored for this image, the initial prediction included; 0 = none).

The result is decided by the criterion: the fittest candidate if it meets the criterion, else the
fittest candidate that does, if any (``fittest`` then records the fittest one), else the fittest.
Every result records the query index of its first success and of its first threshold crossing, the
criterion and the search. Success is judged on the model's probabilities for exactly the returned
uint8 image, computed during the search (no extra query).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.base import Attack, AttackConfigError, AttackJob, AttackResult, model_device
from dermadv.attacks.criteria import STOP_RULES
from dermadv.attacks.de import DEOptions, DESearch
from dermadv.attacks.registry import SEARCHES, parse_pairs
from dermadv.models.base import Classifier
from dermadv.perturb.base import Perturbation, gpu_path, image_tensor, takes_tensors
from dermadv.registry import RegistryError, coerce

#: where candidates are perturbed and scored (see EvolutionaryAttack's ``device_path``)
DEVICE_PATHS = ("auto", "on", "off")


@dataclass
class Member:
    """One scored candidate: parameters, energy (fitness) and the model's probabilities."""

    x: NDArray[np.float64]
    energy: float
    probs: NDArray[np.float64]


@dataclass
class _Track:
    """One image's search and what its scored candidates showed."""

    search: Any
    pending: NDArray[np.float64] | None = None  # candidates of the current ask
    offset: int = 0  # how many of them are scored
    energies: list[NDArray[np.float64]] = dataclasses.field(default_factory=list)
    probs: list[NDArray[np.float64]] = dataclasses.field(default_factory=list)
    best: Member | None = None
    best_success: Member | None = None
    first_success: int | None = None
    first_threshold: int | None = None


class EvolutionaryAttack(Attack):
    """A search over a :class:`Perturbation`'s parameters (differential evolution by default).

    DE options (scipy semantics, see :mod:`dermadv.attacks.de`): ``popsize`` (multiplier: max(5,
    popsize * D) candidates), ``maxiter`` (generations after the initial population), ``mutation``,
    ``recombination``, ``init``, ``tol``, ``atol``. ``search``: a registered search name;
    ``search_options``: its options (a mapping or ``"KEY=VALUE,..."``; for "de" they override the DE
    options above). ``chunk``: candidates per image per forward pass (0: a whole population for DE,
    the study's checks; for other searches the forward batch shared by the images still searching).
    ``max_queries``: query budget per image (0: none). ``stop``: "threshold" or "success".
    ``criterion``: "group" (P(benign group) > P(melanoma group)) or "top1" (top-1 class leaves the
    true group). ``threshold`` and ``fitness``: see :class:`~dermadv.attacks.criteria.Misclassification`.
    ``batch_score`` (True: chunks of all images in one call; False: one candidate per call, same
    trajectory); ``batch_size`` (images per forward pass; None = the model's own; "auto" = measured).
    ``device_path``: "auto" (on when the model computes on a GPU and can score tensors), "on" or
    "off": candidates are perturbed where the model runs (:meth:`Perturbation.transform_tensor`) and
    scored there (``predict_tensor``); per chunk only the N x K probabilities come back to the host.
    It changes no result (the equality is tested); it is how the arithmetic runs, so not recorded.

    Defaults are the study's: popsize 20 (60 candidates for colour/rotation, 300 for 3 pixels),
    at most 20 generations after the initial population, mutation dithered in [0.5, 1),
    recombination 1, Latin hypercube start, stop at P(target group) > 0.9.
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
        batch_size: int | str | None = None,
        search: str = "de",
        search_options: str | Mapping[str, Any] = "",
        chunk: int = 0,
        max_queries: int = 0,
        stop: str = "threshold",
        criterion: str = "group",
        device_path: str = "auto",
    ) -> None:
        super().__init__(threshold=threshold, fitness=fitness, batch_size=batch_size, criterion=criterion)
        if device_path not in DEVICE_PATHS:
            raise AttackConfigError(
                f"{self.name}: device_path must be one of {', '.join(DEVICE_PATHS)}, got {device_path!r}"
            )
        self.device_path = device_path
        if isinstance(mutation, list):
            mutation = tuple(mutation)
        try:
            self.options = DEOptions(popsize, maxiter, mutation, recombination, init, tol, atol)
        except ValueError as exc:
            raise AttackConfigError(f"{self.name}: {exc}") from None
        self.perturbation = perturbation
        self.batch_score = bool(batch_score)
        for what, value in (("chunk", chunk), ("max_queries", max_queries)):
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise AttackConfigError(f"{self.name}: {what} must be an integer >= 0, got {value!r}")
        if stop not in STOP_RULES:
            raise AttackConfigError(f"{self.name}: stop {stop!r} is not one of {', '.join(STOP_RULES)}")
        self.chunk, self.max_queries, self.stop = int(chunk), int(max_queries), stop
        self.search_name = str(search).strip()
        self.search_options = self._search_options(search_options)
        self.make_search([(0.0, 1.0)] * perturbation.dim, 0)  # bad options fail now, not mid-campaign

    # ----- the search -----------------------------------------------------------------------------
    def _search_options(self, given: str | Mapping[str, Any]) -> dict[str, Any]:
        if self.search_name not in SEARCHES:
            names = ", ".join(SEARCHES.names())
            raise AttackConfigError(
                f"{self.name}: unknown search {self.search_name!r}; choose one of {names}"
            )
        pairs = parse_pairs(given, f"{self.name}: search_options")
        valid = SEARCHES.options(self.search_name)
        bad = sorted(set(pairs) - set(valid) | ({"bounds", "seed"} & set(pairs)))
        if bad:
            allowed = sorted(set(valid) - {"bounds", "seed"})
            raise AttackConfigError(
                f"{self.name}: search {self.search_name!r} has no option(s) {', '.join(bad)}; "
                f"valid options: {', '.join(allowed) or 'none'}"
            )
        try:
            return {
                k: coerce(v, None if valid[k] is inspect.Parameter.empty else valid[k], f"search option {k}")
                for k, v in pairs.items()
            }
        except RegistryError as exc:
            raise AttackConfigError(f"{self.name}: {exc}") from None

    @property
    def legacy(self) -> bool:
        """The study's scheme: DE, a whole population per chunk, the stop rule checked per generation."""
        return self.search_name == "de" and self.chunk == 0

    def make_search(self, bounds: list[tuple[float, float]], rng: np.random.Generator | int) -> Any:
        """A fresh search over ``bounds`` (DE with this attack's DE options unless another is named)."""
        try:
            if self.search_name == "de":
                opts = self.search_options
                if "mutation" in opts and isinstance(opts["mutation"], list):
                    opts = {**opts, "mutation": tuple(opts["mutation"])}
                options = dataclasses.replace(self.options, **opts) if opts else self.options
                return DESearch(bounds, options, rng)
            return SEARCHES.create(self.search_name, bounds=bounds, seed=rng, **self.search_options)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, AttackConfigError):
                raise
            raise AttackConfigError(f"{self.name}: search {self.search_name!r}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            perturbation=self.perturbation.describe(),
            search=self.options.describe(),
            batch_score=self.batch_score,
        )
        # recorded when not the defaults, so that runs written before stay resumable
        if self.search_name != "de" or self.search_options:
            d["search_name"] = self.search_name
            d["search_options"] = {k: _plain(v) for k, v in sorted(self.search_options.items())}
        for key, default in (("chunk", 0), ("max_queries", 0), ("stop", "threshold")):
            if getattr(self, key) != default:
                d[key] = getattr(self, key)
        return d

    # ----- the attack -----------------------------------------------------------------------------
    def _attack(self, model: Classifier, jobs: list[AttackJob], t0: float) -> list[AttackResult]:
        tracks = [
            _Track(
                self.make_search(self.perturbation.bounds(job.image.shape), np.random.default_rng(job.seed))
            )
            for job in jobs
        ]
        results: dict[int, AttackResult] = {}
        while len(results) < len(jobs):
            active = [i for i in range(len(jobs)) if i not in results]
            cands = {i: self._next_chunk(model, jobs[i], tracks[i], len(active)) for i in active}
            probs = self._score_candidates(model, [jobs[i] for i in active], [cands[i] for i in active])
            for i, p in zip(active, probs, strict=True):
                self._take(model, jobs[i], tracks[i], cands[i], p)
                if tracks[i].search.done:
                    results[i] = self._result(model, jobs[i], tracks[i], t0)
        return [results[i] for i in range(len(jobs))]

    def _next_chunk(
        self, model: Classifier, job: AttackJob, track: _Track, n_active: int
    ) -> NDArray[np.float64]:
        """The next candidates of this image to score (within its query budget)."""
        if track.pending is None:
            track.pending, track.offset, track.energies, track.probs = track.search.ask(), 0, [], []
        left = len(track.pending) - track.offset
        if self.chunk:
            size = self.chunk
        elif self.search_name == "de":
            size = left
        else:
            size = max(1, self.forward_batch(model) // max(1, n_active))
        size = min(size, left)
        if self.max_queries:
            size = min(size, max(1, self.max_queries - job.queries))
        return track.pending[track.offset : track.offset + size]

    def _take(
        self, model: Classifier, job: AttackJob, track: _Track, x: NDArray[np.float64], p: NDArray[np.float64]
    ) -> None:
        """Book one scored chunk: query indices, best members, the stop rule, telling the search."""
        crit, search = job.criterion, track.search
        energies = np.asarray(crit.fitness(model, p), dtype=np.float64)
        success = crit.is_success(model, p)
        over = crit.should_stop(model, p)
        rule = over if self.stop == "threshold" else success
        before = job.queries
        job.queries += len(p)
        if track.first_success is None and success.any():
            track.first_success = before + 1 + int(np.argmax(success))
        if track.first_threshold is None and over.any():
            track.first_threshold = before + 1 + int(np.argmax(over))
        j = int(np.argmin(energies))  # the earliest of equal energies
        if track.best is None or energies[j] < track.best.energy:
            track.best = Member(x[j].copy(), float(energies[j]), p[j].copy())
        if success.any():
            j = int(np.flatnonzero(success)[np.argmin(energies[success])])
            if track.best_success is None or energies[j] < track.best_success.energy:
                track.best_success = Member(x[j].copy(), float(energies[j]), p[j].copy())
        track.energies.append(energies)
        track.probs.append(p)
        track.offset += len(p)
        assert track.pending is not None
        if track.offset >= len(track.pending):  # the whole ask is scored: tell the search
            search.tell(np.concatenate(track.energies), np.concatenate(track.probs))
            track.pending = None
            if self.legacy and search.extras is not None:  # the study's check: any member of the population
                members = search.extras
                met = (
                    crit.should_stop(model, members)
                    if self.stop == "threshold"
                    else crit.is_success(model, members)
                )
                if met.any():
                    search.stop(self.stop, force=True)  # also when it coincides with maxiter
        if not self.legacy and rule.any():
            search.stop(self.stop, force=True)
        if not search.done and self.max_queries and job.queries >= self.max_queries:
            search.stop("max_queries")

    def on_device(self, model: Classifier) -> bool:
        """Whether candidates are perturbed and scored on the model's device (see ``device_path``)."""
        if self.device_path == "off" or not self.batch_score:
            return False
        if self.device_path == "on":
            if not takes_tensors(model):
                raise AttackConfigError(
                    f"{self.name}: device_path=on needs a model that scores tensors (a torch model); "
                    f"{model.name} ({type(model).__name__}) does not"
                )
            return True
        return gpu_path(model, self.perturbation)

    def _device_image(self, model: Classifier, job: AttackJob) -> Any:
        """The job's image as a uint8 1 x H x W x 3 tensor on the model's device (uploaded once)."""
        if job.device_image is None:
            job.device_image = image_tensor(job.image, model_device(model))
        return job.device_image

    def _score_on_device(
        self, model: Classifier, jobs: list[AttackJob], cands: list[NDArray[np.float64]]
    ) -> list[NDArray[np.float64]]:
        import torch

        pert = self.perturbation
        parts = [
            pert.transform_tensor(self._device_image(model, j), c) for j, c in zip(jobs, cands, strict=True)
        ]
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        probs = model.predict_tensor(x, None, batch_size=self.forward_batch(model))  # type: ignore[attr-defined]
        return np.split(probs, np.cumsum([len(c) for c in cands])[:-1])

    def _score_candidates(
        self, model: Classifier, jobs: list[AttackJob], cands: list[NDArray[np.float64]]
    ) -> list[NDArray[np.float64]]:
        """Probabilities for each job's candidates; all jobs' candidates in one forward pass."""
        if self.on_device(model) and not any(job.metadata for job in jobs):
            return self._score_on_device(model, jobs, cands)
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

    def _result(self, model: Classifier, job: AttackJob, track: _Track, t0: float) -> AttackResult:
        search, crit = track.search, job.criterion
        fittest = track.best
        if search.nfev > 0 and search.best_extra is not None:
            told = Member(search.best_x, float(search.best_energy), np.asarray(search.best_extra))
            if fittest is None or told.energy <= fittest.energy:
                fittest = told  # DE's own best member: the study's result, bit for bit
        assert fittest is not None
        chosen = fittest
        if not crit.is_success(model, fittest.probs)[0] and track.best_success is not None:
            chosen = track.best_success
        shape = job.image.shape
        if self.on_device(model) and not job.metadata:  # exactly the image that was scored
            scored = self.perturbation.transform_tensor(self._device_image(model, job), chosen.x[None])
            adversarial = scored[0].cpu().numpy()
            job.device_image = None
        else:
            adversarial = self.perturbation.apply(job.image, chosen.x[None], model_device(model))[0]
        params = self.perturbation.describe_params(chosen.x, shape)
        params.update(fitness=chosen.energy, stop_reason=search.stop_reason, population=search.size)
        other = None
        if chosen is not fittest:
            other = {
                "params": self.perturbation.describe_params(fittest.x, shape),
                "fitness": fittest.energy,
                "final_probs": [float(v) for v in fittest.probs],
                "success": False,
            }
        return self.finish(
            model,
            job,
            chosen.probs,
            adversarial,
            params,
            search.generation,
            t0,
            search=self.search_name,
            first_success_query=track.first_success,
            first_threshold_query=track.first_threshold,
            fittest=other,
        )


def _plain(value: Any) -> Any:
    """JSON-ready: tuples become lists (run.json compares settings after a JSON round trip)."""
    return list(value) if isinstance(value, tuple) else value
