"""Campaign runner: plan (image, attack) jobs, run them with an executor, commit each to the store.

The pieces are separate so other executors (e.g. Ray) can reuse them:

- :func:`plan_jobs` lists the jobs still to do (skipping those in the store), each with its seed;
- :func:`group_jobs` cuts them into work units (one job, or up to ``batch_images`` images of one
  attack evolved together with ``Attack.run_many``);
- :func:`run_unit` runs one unit's jobs in any process and returns ``(job, AttackResult)`` pairs,
  turning a corrupt image into an error result instead of stopping the campaign;
- :class:`AttackUnit` is that unit as a :class:`~dermadv.runs.executor.WorkUnit` (an attack spec and
  its jobs), which any executor of :mod:`dermadv.runs.executor` runs (in this process or on Ray);
- :func:`run_campaign` drives an executor and commits every result (``ResultsStore.add``) as it
  arrives, in this process only, so a kill at any moment loses nothing.

``RUN/run.json`` is a :class:`dermadv.runs.record.RunDir` record of kind ``attack``. The driver
(the process calling :func:`run_campaign`) holds the run folder's lock for the whole campaign; workers
never write.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from dermadv.campaign.seeds import job_seed
from dermadv.campaign.store import ResultsStore
from dermadv.errors import DataError, MetadataError, ModelError, ModelOutputError
from dermadv.runs.content import sample_hashes
from dermadv.runs.executor import (  # noqa: F401 - Executor, LocalExecutor: importable from here too
    Executor,
    LocalExecutor,
    WorkerState,
    WorkUnit,
    absolute_sample,
    cached_image,
    load_prepared,
)
from dermadv.runs.lock import holding_run
from dermadv.runs.provenance import file_sha256, run_provenance, versions  # noqa: F401 - re-exported
from dermadv.runs.record import NON_RESULT_KEYS, RunDir, read_run, settings_hash  # noqa: F401 - re-exported
from dermadv.runs.specs import AttackSpec
from dermadv.vocab import Group, Outcome, check_direction

if TYPE_CHECKING:
    from dermadv.attacks.base import Attack, AttackResult
    from dermadv.data.dataset import Sample
    from dermadv.models.base import Classifier, Metadata


@dataclass(frozen=True)
class CampaignJob:
    """One (image, attack) pair of a campaign, with the seed that makes it reproducible."""

    image_id: str
    attack: str
    seed: int
    direction: str
    sample: Sample

    @property
    def key(self) -> tuple[str, str]:
        return (self.image_id, self.attack)


def plan_jobs(
    samples: Sequence[Sample],
    attacks: Sequence[str],
    seed: int,
    direction: str = "mel->nv",
    done: Iterable[tuple[str, str]] = (),
) -> list[CampaignJob]:
    """Jobs for every sample x attack not in ``done``, image-major (each image decoded once)."""
    done = set(done)
    seen: set[str] = set()
    jobs = []
    for sample in samples:
        if sample.image_id in seen:
            raise DataError(f"image id {sample.image_id!r} is selected twice; image ids must be unique")
        seen.add(sample.image_id)
        for attack in attacks:
            if (sample.image_id, attack) not in done:
                jobs.append(
                    CampaignJob(
                        sample.image_id, attack, job_seed(seed, sample.image_id, attack), direction, sample
                    )
                )
    return jobs


def group_jobs(jobs: Sequence[CampaignJob], batch_images: int = 1) -> list[list[CampaignJob]]:
    """Work units: consecutive chunks of ``batch_images`` images; within a chunk, one unit per attack."""
    if batch_images < 1:
        raise ValueError(f"batch_images must be >= 1, got {batch_images}")
    image_order: list[str] = []
    by_image: dict[str, list[CampaignJob]] = {}
    for job in jobs:
        if job.image_id not in by_image:
            image_order.append(job.image_id)
            by_image[job.image_id] = []
        by_image[job.image_id].append(job)
    units: list[list[CampaignJob]] = []
    for start in range(0, len(image_order), batch_images):
        chunk = [j for i in image_order[start : start + batch_images] for j in by_image[i]]
        attacks = list(dict.fromkeys(j.attack for j in chunk))
        units.extend([j for j in chunk if j.attack == a] for a in attacks)
    return units


def true_group(direction: str) -> Group:
    """The model-class group the attacked images truly belong to."""
    return check_direction(direction).true_group


def error_result(job: CampaignJob, message: str, seconds: float = 0.0) -> AttackResult:
    """An AttackResult recording that ``job`` could not be run (corrupt image, bad model output)."""
    from dermadv.attacks.base import AttackResult

    return AttackResult(
        image_id=job.image_id,
        attack=job.attack,
        direction=job.direction,
        outcome=Outcome.ERROR,
        true_group=true_group(job.direction),
        initial_probs=[],
        final_probs=None,
        initial_conf=float("nan"),
        final_conf=None,
        params={},
        queries=0,
        generations=0,
        seconds=seconds,
        original=None,
        adversarial=None,
        error=message,
    )


def _metadata(model: Classifier, sample: Sample) -> Metadata:
    return sample.metadata() if getattr(model, "needs_metadata", False) else None


def _metadata_error(model: Classifier, job: CampaignJob) -> str | None:
    """Why the model's metadata encoder refuses this job's metadata (its ``validate``), or None."""
    validate = getattr(getattr(model, "metadata_encoder", None), "validate", None)
    if validate is None or not getattr(model, "needs_metadata", False):
        return None
    try:
        validate(job.sample.metadata())
    except DataError as exc:
        return f"{job.image_id}: {exc}"
    return None


def run_unit(
    model: Classifier,
    attacks: Mapping[str, Attack],
    unit: Sequence[CampaignJob],
    cache: MutableMapping[str, NDArray[np.uint8] | str] | None = None,
) -> list[tuple[CampaignJob, AttackResult]]:
    """Run one work unit (jobs of one attack) and return ``(job, result)`` for each of its jobs.

    A single job uses ``Attack.run``; several use ``Attack.run_many`` (their populations evolve
    together, one forward pass per generation). Images that cannot be read become error results.
    ``cache`` (image_id -> prepared image or error message) avoids decoding an image per attack.
    """
    if not unit:
        return []
    attack = attacks[unit[0].attack]
    cache = {} if cache is None else cache
    out: list[tuple[CampaignJob, AttackResult]] = []
    ready: list[tuple[CampaignJob, NDArray[np.uint8]]] = []
    for job in unit:
        image = cached_image(model, cache, job.sample)  # an unreadable image (or bomb): its DataError text
        problem = image if isinstance(image, str) else _metadata_error(model, job)
        if problem is not None:
            out.append((job, error_result(job, problem)))
        elif not isinstance(image, str):
            ready.append((job, image))
    if len(ready) == 1:
        job, image = ready[0]
        t0 = time.perf_counter()
        try:
            result = attack.run(
                model,
                image,
                _metadata(model, job.sample),
                image_id=job.image_id,
                direction=job.direction,
                seed=job.seed,
            )
        except (ModelOutputError, MetadataError) as exc:
            result = error_result(job, str(exc), time.perf_counter() - t0)
        out.append((job, result))
    elif ready:
        jobs = [j for j, _ in ready]
        t0 = time.perf_counter()
        try:
            results = attack.run_many(
                model,
                [im for _, im in ready],
                [_metadata(model, j.sample) for j in jobs],
                image_ids=[j.image_id for j in jobs],
                direction=jobs[0].direction,
                seeds=[j.seed for j in jobs],
            )
        except (ModelOutputError, MetadataError) as exc:
            results = [error_result(j, str(exc), time.perf_counter() - t0) for j in jobs]
        out.extend(zip(jobs, results, strict=True))
    return out


@dataclass(frozen=True)
class AttackUnit(WorkUnit):
    """A campaign work unit: jobs of one attack (one image, or up to ``batch_images`` evolved together).

    Its result is one AttackResult per job, in the order of ``jobs``.
    """

    kind: ClassVar[str] = "attack"
    attack: AttackSpec
    jobs: tuple[CampaignJob, ...]

    def run(self, state: WorkerState) -> list[AttackResult]:
        pairs = run_unit(state.model, {self.attack.name: state.attack(self.attack)}, self.jobs, state.images)
        state.trim_images(keep={j.image_id for j in self.jobs})
        by_key = {job.key: result for job, result in pairs}
        return [by_key[job.key] for job in self.jobs]

    def lost(self, message: str) -> list[AttackResult]:
        return [error_result(job, message) for job in self.jobs]

    def label(self) -> str:
        ids = [j.image_id for j in self.jobs]
        return f"attack {self.attack.name} on {', '.join(ids[:3])}" + (
            f" and {len(ids) - 3} more" if len(ids) > 3 else ""
        )

    def paths(self) -> list[str]:
        return [str(j.sample.path) for j in self.jobs if j.sample.path is not None]

    def for_workers(self) -> AttackUnit:
        jobs = tuple(replace(j, sample=absolute_sample(j.sample)) for j in self.jobs)
        return replace(self, jobs=jobs)

    def image_keys(self) -> list[str]:
        return [j.image_id for j in self.jobs]

    def n_jobs(self) -> int:
        return len(self.jobs)


def attack_units(
    jobs: Sequence[CampaignJob], attacks: Mapping[str, AttackSpec], batch_images: int = 1
) -> list[AttackUnit]:
    """The work units of ``jobs`` (see :func:`group_jobs`), each with its attack's spec."""
    return [AttackUnit(attacks[unit[0].attack], tuple(unit)) for unit in group_jobs(jobs, batch_images)]


# ----- attacks --------------------------------------------------------------------------------
def resolve_attacks(names: Sequence[str] | None, model: Classifier) -> tuple[list[str], list[str]]:
    """Validate attack names against the model: returns (attacks to run, notes for the user).

    With ``names=None`` the study's five attacks run, those the model supports (gradient attacks only
    on white-box models); any registered attack (``dermadv.attacks.ATTACKS``) runs when named.
    Naming a gradient attack for a black-box model is refused up front with a clear error.
    """
    from dermadv.attacks import attack_class, available_attacks, study_attacks

    notes: list[str] = []
    if names is None:
        chosen = list(study_attacks())
        explicit = False
    else:
        known = available_attacks()  # read now: attacks registered after import count too
        given = [n.strip() for n in names if n.strip()]
        chosen = list(dict.fromkeys(n if n in known else n.lower() for n in given))
        explicit = True
        if not chosen:
            raise DataError(f"no attack named; choose from {', '.join(known)}")
        unknown = [n for n in chosen if n not in known]
        if unknown:
            raise DataError(f"unknown attack(s) {unknown}; choose from {', '.join(known)}")
    if not getattr(model, "white_box", False):
        grad = [n for n in chosen if attack_class(n).white_box_only]
        if grad and explicit:
            raise ModelError(
                f"{', '.join(grad)} need(s) gradients, but model {model.name!r} is a black-box model "
                f"(no differentiable torch forward); drop {', '.join(grad)} from --attacks or use a "
                "white-box model (dermadv checkpoint or TorchScript)"
            )
        if grad:
            notes.append(f"skipping gradient attack(s) {', '.join(grad)}: model {model.name!r} is black-box")
            chosen = [n for n in chosen if n not in grad]
    return chosen, notes


#: Campaign option names (command line) -> attack option names where they differ.
OPTION_ALIASES: dict[str, str] = {"max_generations": "maxiter"}


def attack_specs(names: Sequence[str], options: Mapping[str, Any]) -> dict[str, AttackSpec]:
    """Each attack's spec; each gets the options it accepts (e.g. ``eps`` only goes to fgsm/pgd).

    ``options`` use campaign names (``max_generations``) or attack names (``maxiter``); None values
    mean "the attack's default". A key ``NAME.KEY`` (``--attack-option``, e.g. ``color.delta``) is the
    option KEY of attack NAME alone and overrides a shared one; it must name a registered attack and
    one of its options (AttackConfigError otherwise), and is unused when NAME is not built here.
    """
    from dermadv.attacks import attack_options, check_attack_option, split_attack_options

    shared, own = split_attack_options(options)
    given = {OPTION_ALIASES.get(k, k): v for k, v in shared.items()}
    for attack, opts in own.items():
        for key in opts:
            check_attack_option(attack, key)
    built = {}
    for name in names:
        accepted = attack_options(name)
        opts = {k: v for k, v in given.items() if k in accepted}
        if (
            "eps" in opts
            and not isinstance(accepted["eps"], (tuple, list))
            and isinstance(opts["eps"], (tuple, list))
        ):
            opts["eps"] = max(opts["eps"])  # one-eps attacks (pgd) take the largest of the list
        opts.update(own.get(name, {}))
        built[name] = AttackSpec(name, opts)
    return built


def build_attacks(names: Sequence[str], options: Mapping[str, Any]) -> dict[str, Attack]:
    """Instantiate attacks from their specs (:func:`attack_specs`)."""
    return {name: spec.build() for name, spec in attack_specs(names, options).items()}


def describe_attack(attack: Any) -> dict[str, Any]:
    """An attack's configuration (its ``describe()`` if it has one, else its public attributes)."""
    if hasattr(attack, "describe"):
        return dict(attack.describe())
    out: dict[str, Any] = {
        "name": getattr(attack, "name", type(attack).__name__),
        "class": type(attack).__name__,
    }
    for key, value in sorted(vars(attack).items()):
        if not key.startswith("_") and isinstance(value, (int, float, str, bool, list, tuple, type(None))):
            out[key] = value
    return out


# ----- run record -----------------------------------------------------------------------------
# versions, file_sha256 and settings_hash live in dermadv.runs; the names stay importable from here.
RUN_KIND = "attack"
#: Settings sections a rerun may extend: attacks not yet in the run may be added.
EXTENDABLE = ("attacks",)


def result_settings(
    model: Classifier,
    attacks: Mapping[str, Any],
    direction: str,
    seed: int,
    data: Mapping[str, Any],
    model_file_hash: str | None = None,
    batch_images: int = 1,
) -> dict[str, Any]:
    """A campaign's settings: a rerun into the same RUN must match them, except for the keys
    :data:`dermadv.runs.record.NON_RESULT_KEYS` names (device, batch size, file locations...)."""
    return {
        "model": model.describe(),
        "model_file_sha256": model_file_hash,
        "data": dict(data),
        "direction": direction,
        "seed": int(seed),
        # images evolved together share forward passes, whose float rounding can differ slightly
        "batch_images": int(batch_images),
        "attacks": {name: describe_attack(a) for name, a in sorted(attacks.items())},
    }


def check_run_info(run_dir: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's record if ``settings`` agree with it (None if there is none); DataError naming
    what differs. Attacks not yet in the run may be added."""
    return RunDir(Path(run_dir), RUN_KIND).check(settings, EXTENDABLE)


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The run.json of a campaign run directory (:func:`dermadv.runs.record.read_run`)."""
    return read_run(run_dir)


# ----- the campaign ---------------------------------------------------------------------------
@dataclass
class CampaignOutcome:
    """What one invocation did."""

    run_dir: Path
    attacks: list[str]
    planned: int
    already_done: int
    ran: int
    notes: list[str]
    seconds: float
    #: images whose file changed since their stored rows: those rows were computed again
    changed_images: list[str] = field(default_factory=list)


@holding_run("run_dir")  # one writer per run folder, from the settings check to the last row
def run_campaign(
    model: Classifier,
    samples: Sequence[Sample],
    run_dir: str | Path,
    attacks: Sequence[str] | None = None,
    *,
    direction: str = "mel->nv",
    seed: int = 0,
    batch_images: int = 1,
    attack_options: Mapping[str, Any] | None = None,
    data_info: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    model_file_hash: str | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    retry_errors: bool = False,
    extra_settings: Mapping[str, Any] | None = None,
) -> CampaignOutcome:
    """Run every attack on every sample into ``run_dir``, resuming whatever is already stored.

    Each row records the SHA-256 of its image file; the rows of an image whose file changed since are
    deleted and computed again (said in ``notes``; ``changed_images``).
    ``retry_errors`` deletes stored error rows first so those jobs run again. ``extra_settings`` are
    added to run.json's settings (e.g. ``allow_edited_split``).
    ``data_info`` identifies the data (path, split, subset...) and is part of the settings a rerun
    must match; ``provenance`` is extra JSON recorded in run.json (e.g. the data hash).
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    check_direction(direction)
    if batch_images < 1:
        raise DataError(f"--batch-images must be >= 1, got {batch_images}")
    names, notes = resolve_attacks(attacks, model)
    specs = attack_specs(names, attack_options or {})
    built = {name: spec.build() for name, spec in specs.items()}
    run_dir = Path(run_dir)
    settings = {
        **result_settings(model, built, direction, seed, data_info or {}, model_file_hash, batch_images),
        **dict(extra_settings or {}),
    }
    record = {
        **run_provenance(model, model_file_hash=model_file_hash, data=data_info or {}, samples=samples),
        **dict(provenance or {}),
    }
    RunDir(run_dir, RUN_KIND).check(settings, EXTENDABLE)  # under the lock, before the store creates anything
    with ResultsStore(run_dir) as store:
        RunDir.open(
            run_dir,
            RUN_KIND,
            settings,
            record,
            extendable=EXTENDABLE,
            extra={
                "model_description": model.describe(),
                "scope": {"attacks": names, "n_images": len(samples)},
            },
        )
        if retry_errors:
            notes.append(f"retrying {store.delete('error')} job(s) stored as errors")
        hashes = sample_hashes(samples, run_dir)
        changed = _forget_changed_images(store, hashes, notes)
        done = store.done_keys()
        jobs = plan_jobs(samples, names, seed, direction, done)
        total = len(samples) * len(names)
        executor = executor or LocalExecutor(model)
        ran = 0
        bar = tqdm(
            total=total,
            initial=total - len(jobs),
            desc="attack",
            unit="job",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        try:
            for unit, results in executor.run(attack_units(jobs, specs, batch_images)):
                for job, result in zip(unit.jobs, results, strict=True):  # type: ignore[attr-defined]
                    store.add(
                        result,
                        seed=job.seed,
                        diagnosis=getattr(job.sample, "diagnosis", None),
                        image_sha256=hashes.get(job.image_id),
                    )
                    ran += 1
                    bar.set_postfix_str(f"{job.image_id} {job.attack}: {result.outcome}", refresh=False)
                    bar.update(1)
        finally:
            bar.close()
    return CampaignOutcome(
        run_dir, names, total, total - len(jobs), ran, notes, time.perf_counter() - t0, changed
    )


def _forget_changed_images(store: ResultsStore, hashes: Mapping[str, str], notes: list[str]) -> list[str]:
    """Delete the rows of images whose file changed since they were computed (they run again);
    returns those images, with a note saying how many (`dermadv attack` prints notes on stderr)."""
    from dermadv.runs.content import changed_message

    changed, unknown = store.changed_images(hashes)
    if changed:
        rows = store.delete_images(changed)
        notes.append(f"{changed_message(changed)}: {rows} row(s) deleted and run again")
    if unknown:
        notes.append(
            f"{unknown} stored row(s) of selected images record no image hash (written by an older "
            "dermadv): kept as they are; a changed image file is not detected for them"
        )
    return changed
