"""Run attack campaigns and perturbation sweeps on a Ray cluster (``--executor ray``).

The driver (the ``dermadv`` command) plans the jobs, exactly as with the local executor, and is the
only process that writes results: workers send every finished unit back and the driver commits it
to the one results store (whose primary key rules out doubled rows). Each worker is a Ray actor
that loads the model once, from the model *spec* (the same string and options the command got), and
keeps it with the attacks for all the units it runs; it asks for one GPU where the cluster has GPUs.

- :class:`ModelSpec` -- what workers load: ``load_model(spec, ...)`` arguments, paths made absolute.
- :class:`RayExecutor` -- an :class:`~dermadv.campaign.runner.Executor` for ``run_campaign``.
- :class:`RaySweepExecutor` -- scores the perturbations of ``dermadv perturb`` (one unit each).
- :func:`make_executor` -- what ``--executor local|ray --address ... --workers N`` means.

Files are read where the work runs: the data (``--data``) and model file must be readable at the
same absolute path on every node (a shared filesystem, or the same copy on each node); a worker
that cannot see a file the driver can see stops the run with an error saying so.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.campaign.ray_cluster import (
    ActorPool,
    WorkerLost,
    connect,
    default_workers,
    import_ray,
    node_info,
)
from dermadv.campaign.runner import _NON_RESULT_MODEL_KEYS, Job, build_attacks, error_result, run_unit
from dermadv.errors import DataError, DermadvError, ModelError

EXECUTORS: tuple[str, ...] = ("local", "ray")
#: Prepared images a worker keeps (an image's attacks may land on the same worker).
IMAGE_CACHE_SIZE = 256
#: A sweep worker keeps the whole prepared image set in memory up to this size (as ``run_sweep``).
SWEEP_MEMORY_LIMIT_MB = 2048


# ----- what workers load ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Arguments of :func:`dermadv.models.registry.load_model`, sent to workers instead of the model."""

    spec: str
    melanoma_classes: tuple[str, ...] | None = None
    benign_classes: tuple[str, ...] | None = None
    device: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def absolute(self) -> ModelSpec:
        """The same spec with a local model file (or ``file.py:function``) as an absolute path."""
        spec = self.spec
        path = Path(spec).expanduser()
        if path.exists():
            spec = str(path.resolve())
        elif ":" in spec:
            module, _, func = spec.rpartition(":")
            if module.endswith(".py") and Path(module).expanduser().is_file():
                spec = f"{Path(module).expanduser().resolve()}:{func}"
        return dataclasses.replace(self, spec=spec)

    def load(self) -> Any:
        """Load the Classifier (in a worker)."""
        from dermadv.models.registry import load_model

        return load_model(
            self.spec,
            melanoma_classes=self.melanoma_classes,
            benign_classes=self.benign_classes,
            device=self.device,
            **dict(self.options),
        )

    def file(self) -> Path | None:
        path = Path(self.spec)
        return path if path.is_file() else None


def result_description(model: Any) -> dict[str, Any]:
    """The parts of ``model.describe()`` that change results (what every worker must agree on)."""
    return {k: v for k, v in model.describe().items() if k not in _NON_RESULT_MODEL_KEYS}


def _set_threads(n: float) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, int(n)))
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def _file_sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    from dermadv.runs.provenance import file_sha256

    return file_sha256(path)


# ----- the worker -------------------------------------------------------------------------------
class DermadvWorker:
    """A Ray actor body: one model, its attacks (built on first use) and a cache of prepared images."""

    def __init__(self, model_spec: ModelSpec, attack_options: Mapping[str, Any], threads: float = 1) -> None:
        _set_threads(threads)
        self.model_spec = model_spec
        self.model = model_spec.load()
        self.attack_options = dict(attack_options)
        self.attacks: dict[str, Any] = {}
        self.cache: OrderedDict[str, Any] = OrderedDict()
        self.sweep_images: tuple[tuple[str, ...], np.ndarray] | None = None

    def info(self) -> dict[str, Any]:
        """Where this worker runs, its device, and what it loaded (checked against the driver's model)."""
        import dermadv

        return {
            **node_info(),
            "device": str(getattr(self.model, "device", "cpu")),
            "dermadv": dermadv.__version__,
            "model": result_description(self.model),
            "model_sha256": _file_sha256(self.model_spec.file()),
        }

    def _attacks_for(self, unit: Sequence[Job]) -> dict[str, Any]:
        for name in {j.attack for j in unit} - set(self.attacks):
            self.attacks.update(build_attacks([name], self.attack_options))
        return self.attacks

    def run_unit(self, unit: Sequence[Job]) -> dict[str, Any]:
        """Run one campaign unit; results come back keyed by (image_id, attack)."""
        t0 = time.perf_counter()
        pairs = run_unit(self.model, self._attacks_for(unit), unit, self.cache)
        while len(self.cache) > IMAGE_CACHE_SIZE:
            self.cache.popitem(last=False)
        missing = sorted(
            {
                str(j.sample.path)
                for j in unit
                if j.sample.path is not None and not os.path.exists(j.sample.path)
            }
        )
        return {
            "results": [(job.key, result) for job, result in pairs],
            "missing": missing,
            "host": node_info()["host"],
            "seconds": time.perf_counter() - t0,
        }

    def score_perturbation(self, task: tuple[str, Sequence[Any], int]) -> dict[str, Any]:
        """Melanoma scores of every sample after one perturbation (a sweep unit)."""
        from dermadv.perturb.corruptions import parse_one
        from dermadv.perturb.sweep import load_prepared_images, score_corruption

        spec, samples, batch_size = task
        missing = sorted({str(s.path) for s in samples if s.path is not None and not os.path.exists(s.path)})
        if missing:
            return {"scores": None, "missing": missing, "host": node_info()["host"]}
        corruption = parse_one(spec)
        ids = tuple(s.image_id for s in samples)
        prepared = None
        need_mb = len(samples) * int(np.prod(self.model.input_size)) * 3 / 2**20
        if not corruption.file_level and need_mb <= SWEEP_MEMORY_LIMIT_MB:  # else loaded per batch
            if self.sweep_images is None or self.sweep_images[0] != ids:
                self.sweep_images = (ids, load_prepared_images(self.model, samples, batch_size))
            prepared = self.sweep_images[1]
        metadata = [s.metadata() for s in samples] if getattr(self.model, "needs_metadata", False) else None
        scores = score_corruption(self.model, corruption, samples, prepared, metadata, batch_size)
        return {"scores": np.asarray(scores, dtype=np.float64), "missing": [], "host": node_info()["host"]}


def _absolute_sample(sample: Any) -> Any:
    path = getattr(sample, "path", None)
    if path is None or Path(path).is_absolute() or not dataclasses.is_dataclass(sample):
        return sample
    return dataclasses.replace(sample, path=Path(path).resolve())


def _check_missing(missing: Sequence[str], host: str) -> None:
    """Files a worker could not find: an error when this (driver) machine can read them."""
    here = [p for p in missing if os.path.exists(p)]
    if here:
        raise DataError(
            f"{here[0]}: readable on this machine but not on Ray worker host {host!r}"
            + (f" ({len(here) - 1} more)" if len(here) > 1 else "")
            + ". Workers read images themselves: put --data on a filesystem every node shares, or copy it to "
            "the same absolute path on every node."
        )


# ----- executors --------------------------------------------------------------------------------
class _RayBase:
    """Connection, actor pool, model checks and throughput statistics shared by the executors."""

    kind = "ray"

    def __init__(
        self,
        model: ModelSpec | str,
        attack_options: Mapping[str, Any] | None = None,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float | None = None,
        reference_model: Any = None,
        max_restarts: int = 3,
        max_attempts: int = 3,
        verbose: bool = True,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        import_ray()  # MissingExtraError naming dermadv[ray], before any work
        if workers is not None and workers < 1:
            raise DermadvError(f"--workers must be >= 1, got {workers}")
        self.model_spec = (ModelSpec(model) if isinstance(model, str) else model).absolute()
        self.attack_options = dict(attack_options or {})
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.reference = None if reference_model is None else result_description(reference_model)
        self.reference_sha = _file_sha256(self.model_spec.file())
        self.max_restarts = max_restarts
        self.max_attempts = max_attempts
        self.verbose = verbose
        self.init_kwargs = dict(init_kwargs or {})
        self._owns_ray = False
        self.pool: ActorPool | None = None
        self._stats: dict[str, Any] = {"executor": "ray", "address": address, "ran": False}

    # ----- lifecycle ----------------------------------------------------------------------------
    def _start(self) -> ActorPool:
        if self.pool is not None:
            return self.pool
        self._owns_ray = connect(self.address, **self.init_kwargs) or self._owns_ray
        ray = import_ray()
        n_default, gpus = default_workers(self.cpus_per_worker, self.gpus_per_worker)
        n = self.workers or n_default
        actor = ray.remote(DermadvWorker)
        self.pool = ActorPool(
            actor,
            (self.model_spec, self.attack_options, self.cpus_per_worker),
            n,
            num_cpus=self.cpus_per_worker,
            num_gpus=gpus,
            max_restarts=self.max_restarts,
            max_attempts=self.max_attempts,
            check_info=self._check_worker,
            verbose=self.verbose,
        )
        return self.pool

    def _check_worker(self, index: int, info: dict[str, Any]) -> None:
        import dermadv

        where = f"Ray worker {index} on {info.get('host')}"
        if info.get("dermadv") != dermadv.__version__:
            raise DermadvError(
                f"{where} runs dermadv {info.get('dermadv')}, this driver "
                f"{dermadv.__version__}; install the same dermadv version on every node"
            )
        if self.reference_sha is not None and info.get("model_sha256") != self.reference_sha:
            raise ModelError(
                f"{where}: model file {self.model_spec.spec} differs from this machine's "
                "(SHA-256 mismatch); every node must read the same model file"
            )
        if self.reference is not None and info.get("model") != self.reference:
            diff = sorted(
                k
                for k in set(self.reference) | set(info.get("model") or {})
                if self.reference.get(k) != (info.get("model") or {}).get(k)
            )
            raise ModelError(
                f"{where} loaded a different model from {self.model_spec.spec!r} "
                f"(description differs in {diff[:5]})"
            )

    def close(self) -> None:
        """Stop the workers; shut Ray down if this executor started or connected it.

        Runs by itself when a run ends (also on errors); :meth:`stats` still answers afterwards."""
        if self.pool is not None:
            self._stats = self.stats()
            self.pool.close()
            self.pool = None
        if self._owns_ray:
            import_ray().shutdown()
            self._owns_ray = False

    def __enter__(self) -> _RayBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def busy_worker_pids(self) -> list[int]:
        """Process ids of the workers running a unit now (tests kill one to show recovery)."""
        return [] if self.pool is None else self.pool.busy_pids()

    # ----- statistics ---------------------------------------------------------------------------
    def _count(self) -> tuple[int, int]:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Cluster-wide throughput and per-worker counts of the last ``run`` (JSON-ready)."""
        pool = self.pool
        if pool is None:
            return dict(self._stats)
        images, jobs = self._count()
        end = pool.t_last_result or time.perf_counter()
        wall = end - pool.t_start
        working = end - pool.t_first_ready if pool.t_first_ready else 0.0
        return {
            "executor": "ray",
            "address": self.address,
            "ran": True,
            "workers": len(pool.stats),
            "gpus_per_worker": pool.num_gpus,
            "images": images,
            "jobs": jobs,
            "seconds": round(wall, 3),
            "startup_seconds": round(wall - working, 3),
            "images_per_s": round(images / working, 4) if working > 0 else None,
            "jobs_per_s": round(jobs / working, 4) if working > 0 else None,
            "images_per_s_with_startup": round(images / wall, 4) if wall > 0 else None,
            "worker_failures": pool.worker_failures,
            "retried_units": pool.retried_units,
            "per_worker": [s.as_dict() for s in pool.stats],
        }


class RayExecutor(_RayBase):
    """Runs campaign units on Ray actors (one per worker, each holding the model and the attacks).

    Use as ``run_campaign(..., executor=RayExecutor(ModelSpec(spec), attack_options))`` with the same
    attack options ``run_campaign`` gets; the workers build the attacks from them, so each job
    gives the same row as with the local executor. Unit results are yielded in finishing order.
    """

    def __init__(
        self, model: ModelSpec | str, attack_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(model, attack_options, **kwargs)
        self._images: set[str] = set()
        self._jobs = 0

    def _count(self) -> tuple[int, int]:
        return len(self._images), self._jobs

    def run(self, units: Sequence[Sequence[Job]]) -> Iterator[tuple[Job, Any]]:
        """Yield ``(job, AttackResult)`` for every job of ``units`` as workers finish them."""
        units = [list(u) for u in units if u]
        if not units:
            return
        self._images, self._jobs = set(), 0
        payloads = [[dataclasses.replace(j, sample=_absolute_sample(j.sample)) for j in u] for u in units]
        try:
            pool = self._start()
            for u, value, w in pool.run("run_unit", payloads):
                jobs = {j.key: j for j in units[u]}
                if isinstance(value, WorkerLost):
                    pairs = [(job, error_result(job, str(value))) for job in units[u]]
                else:
                    _check_missing(value["missing"], value["host"])
                    pairs = [(jobs[key], result) for key, result in value["results"]]
                pool.stats[w].jobs += len(pairs)
                for job, result in pairs:
                    self._jobs += 1
                    self._images.add(job.image_id)
                    yield job, result
        finally:  # stop the workers (and Ray, if this executor started it); keep the statistics
            self.close()


class RaySweepExecutor(_RayBase):
    """Scores perturbation-sweep units (one perturbation over all images each) on Ray actors."""

    def __init__(self, model: ModelSpec | str, **kwargs: Any) -> None:
        super().__init__(model, None, **kwargs)
        self._done = 0
        self._n_images = 0

    def _count(self) -> tuple[int, int]:
        return self._done * self._n_images, self._done

    def score(
        self, corruptions: Sequence[Any], samples: Sequence[Any], batch_size: int
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield ``(corruption, melanoma scores per sample)`` as workers finish each perturbation."""
        corruptions = list(corruptions)
        if not corruptions:
            return
        samples = [_absolute_sample(s) for s in samples]
        self._done, self._n_images = 0, len(samples)
        try:
            pool = self._start()
            tasks = [(c.spec, samples, batch_size) for c in corruptions]
            for u, value, w in pool.run("score_perturbation", tasks):
                if isinstance(value, WorkerLost):
                    raise DermadvError(f"perturbation {corruptions[u].spec}: {value}; rerun to resume")
                if value["scores"] is None:
                    _check_missing(value["missing"], value["host"])
                    raise DataError(f"{value['missing'][0]}: image file not found (on {value['host']})")
                pool.stats[w].jobs += 1
                self._done += 1
                yield corruptions[u], value["scores"]
        finally:  # stop the workers (and Ray, if this executor started it); keep the statistics
            self.close()


# ----- what the command-line options mean -------------------------------------------------------
def make_executor(
    kind: str,
    model: ModelSpec,
    attack_options: Mapping[str, Any] | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    reference_model: Any = None,
    sweep: bool = False,
    verbose: bool = True,
) -> _RayBase | None:
    """``--executor local`` -> None (the runner's in-process default); ``ray`` -> a Ray executor.

    ``--address``/``--workers`` only mean something with ``--executor ray``.
    """
    kind = (kind or "local").strip().lower()
    if kind not in EXECUTORS:
        raise DermadvError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind == "local":
        if address is not None or workers is not None:
            raise DermadvError("--address and --workers need --executor ray")
        return None
    common = {"address": address, "workers": workers, "reference_model": reference_model, "verbose": verbose}
    if sweep:
        return RaySweepExecutor(model, **common)
    return RayExecutor(model, attack_options, **common)


def executor_json(executor: Any) -> dict[str, Any]:
    """``{"executor": statistics}`` for a command's ``--json`` output; ``{}`` for the local executor."""
    return {} if executor is None else {"executor": executor.stats()}


def format_executor_summary(stats: Mapping[str, Any] | None) -> str:
    """One line for the cluster, one per worker."""
    if not stats or not stats.get("ran"):
        return ""
    ips = stats.get("images_per_s")
    lines = [
        f"ray: {stats['workers']} worker(s), {stats['images']} image(s), {stats['jobs']} job(s) in "
        f"{stats['seconds']:.1f} s ({stats['startup_seconds']:.1f} s starting workers): "
        f"{ips if ips is not None else '-'} images/s; {stats['worker_failures']} worker failure(s), "
        f"{stats['retried_units']} unit(s) retried"
    ]
    for w in stats.get("per_worker", []):
        gpu = f" GPU {','.join(w['gpus'])}" if w["gpus"] else ""
        lines.append(
            f"  worker {w['worker']}: {w['host']}{gpu} ({w['device']}) {w['jobs']} job(s), "
            f"busy {w['busy_seconds']:.1f} s, pids {w['pids']}"
            + (f", {w['failures']} failure(s)" if w["failures"] else "")
        )
    return "\n".join(lines)
