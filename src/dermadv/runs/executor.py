"""One executor for every kind of work: attack jobs, sweep perturbations, robustness draws...

A piece of work is a :class:`WorkUnit`: a frozen, picklable object (a dataclass) holding only specs
and plain data (image ids, sample records, seeds, :mod:`dermadv.runs.specs`), with a ``kind`` and a
``run(state)`` that computes its result from a :class:`WorkerState` -- the model (loaded once per
worker), the attacks built from their specs, and a cache of prepared images. A new kind of work is a
new ``WorkUnit`` subclass; both executors run it unchanged:

- :class:`LocalExecutor` runs units one after another in this process (with a live model, or one
  loaded from a :class:`~dermadv.runs.specs.ModelSpec`);
- :class:`RayExecutor` runs them on Ray actors, one per worker (one GPU each where the cluster has
  GPUs), each loading the model once from the spec. A unit whose worker process dies runs again on
  another worker (up to ``max_attempts`` times, then ``unit.lost(message)`` gives its result, e.g. an
  error row); workers must run the driver's dermadv version and read the same model file (SHA-256)
  and the same data files (at the same absolute paths) as the driver.

Both yield ``(unit, result)`` as units finish (the Ray one in finishing order). The driver -- the
command that planned the units -- is the only process that writes results.
:func:`make_executor` is what ``--executor local|ray --address ... --workers N`` means.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import DataError, DermadvError, ModelError
from dermadv.runs.ray_cluster import ActorPool, WorkerLost, connect, default_workers, import_ray, node_info
from dermadv.runs.specs import AttackSpec, ModelSpec

if TYPE_CHECKING:
    from dermadv.attacks.base import Attack
    from dermadv.data.dataset import Sample
    from dermadv.models.base import Classifier

S = TypeVar("S")

EXECUTORS: tuple[str, ...] = ("local", "ray")
#: Prepared images a worker keeps beyond those of the unit it runs (an image's attacks may come later).
IMAGE_CACHE_SIZE = 256


# ----- what work is -------------------------------------------------------------------------------
class WorkUnit(ABC):
    """One piece of work; subclasses are frozen dataclasses of specs and plain data (picklable).

    ``run`` is called in whichever process runs the unit; everything else on the driver, except
    ``paths`` (also checked on Ray workers: files the unit reads).
    """

    kind: ClassVar[str] = "unit"

    @abstractmethod
    def run(self, state: WorkerState) -> Any:
        """Compute the unit's result with the worker's model, attacks and image cache."""

    def lost(self, message: str) -> Any:
        """The result of a unit whose worker died every time it ran it; by default an error."""
        raise DermadvError(f"{self.label()}: {message}; rerun to resume")

    def label(self) -> str:
        """How messages name this unit."""
        return f"{self.kind} unit"

    def paths(self) -> Collection[str]:
        """Files the unit reads (a Ray worker that cannot see one the driver can stops the run)."""
        return ()

    def for_workers(self) -> WorkUnit:
        """The unit as sent to other processes (e.g. with relative file paths made absolute)."""
        return self

    def image_keys(self) -> Iterable[Hashable]:
        """What the unit counts as images in the statistics (distinct keys over a run are counted)."""
        return ()

    def n_jobs(self) -> int:
        """How many jobs (result rows) the unit counts as in the statistics."""
        return 1


def absolute_sample(sample: S) -> S:
    """A sample record (a dataclass with ``path``) whose relative image path is made absolute."""
    import dataclasses

    path = getattr(sample, "path", None)
    if path is None or Path(path).is_absolute() or not dataclasses.is_dataclass(sample):
        return sample
    if isinstance(sample, type):  # a dataclass itself, not a record
        return sample
    return dataclasses.replace(sample, path=Path(path).resolve())


def load_prepared(model: Classifier, sample: Sample) -> NDArray[np.uint8]:
    """Decode a sample's image with the model's decoder and resize it to the model's input size."""
    if sample.path is None:
        raise DataError(f"{sample.image_id}: no image file for this sample")
    image: NDArray[np.uint8] = model.prepare(model.load_image(str(sample.path)))[0]
    return image


def cached_image(
    model: Classifier, cache: MutableMapping[str, NDArray[np.uint8] | str], sample: Sample
) -> NDArray[np.uint8] | str:
    """A sample's prepared image from ``cache`` (image_id -> image, or the message why it cannot be
    read), decoding it on first use; an unreadable image is cached as its error message."""
    key = sample.image_id
    if key not in cache:
        try:
            cache[key] = load_prepared(model, sample)
        except DataError as exc:
            cache[key] = str(exc)
    elif isinstance(cache, OrderedDict):
        cache.move_to_end(key)
    return cache[key]


class WorkerState:
    """What a worker keeps between units: the model, attacks built from specs, prepared images."""

    def __init__(self, model: Classifier, image_cache_size: int = IMAGE_CACHE_SIZE) -> None:
        self.model = model
        self.image_cache_size = image_cache_size
        self.images: OrderedDict[str, NDArray[np.uint8] | str] = OrderedDict()
        self._attacks: dict[str, tuple[AttackSpec, Attack]] = {}
        self._kept: dict[str, tuple[Any, Any]] = {}

    def attack(self, spec: AttackSpec) -> Attack:
        """The attack of ``spec``, built on first use (again if the spec's options change)."""
        cached = self._attacks.get(spec.name)
        if cached is None or cached[0] != spec:
            cached = (spec, spec.build())
            self._attacks[spec.name] = cached
        return cached[1]

    def image(self, sample: Sample) -> NDArray[np.uint8] | str:
        """The prepared image of ``sample`` (cached), or the message saying why it cannot be read."""
        return cached_image(self.model, self.images, sample)

    def prepared(self, sample: Sample) -> NDArray[np.uint8]:
        """The prepared image of ``sample`` (cached); DataError when it cannot be read."""
        image = self.image(sample)
        if isinstance(image, str):
            raise DataError(image)
        return image

    def trim_images(self, keep: Collection[str] = ()) -> None:
        """Forget the least recently used images beyond the cache size, never those in ``keep``."""
        for key in list(self.images):
            if len(self.images) <= self.image_cache_size:
                break
            if key not in keep:
                del self.images[key]

    def kept(self, name: str, key: Any, make: Callable[[], Any]) -> Any:
        """One value per ``name`` kept between units: ``make()`` again whenever ``key`` changes
        (e.g. a whole prepared image set, kept while units score the same images)."""
        held = self._kept.get(name)
        if held is None or held[0] != key:
            self._kept.pop(name, None)  # free the old value before making the new one
            held = (key, make())
            self._kept[name] = held
        return held[1]


class Executor(Protocol):
    """Runs work units of any kind and yields ``(unit, result)`` as they finish (any order)."""

    kind: str

    def run(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, Any]]: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class _Tally:
    """Images, jobs and units of one ``run`` and when it ran."""

    def __init__(self) -> None:
        self.images: set[Hashable] = set()
        self.jobs = 0
        self.units = 0
        self.t_start = time.perf_counter()
        self.t_last: float | None = None

    def add(self, unit: WorkUnit) -> None:
        self.images.update(unit.image_keys())
        self.jobs += unit.n_jobs()
        self.units += 1
        self.t_last = time.perf_counter()


def _rate(n: int, seconds: float) -> float | None:
    return round(n / seconds, 4) if seconds > 0 else None


# ----- in this process ----------------------------------------------------------------------------
class LocalExecutor:
    """Runs work units one after another in this process.

    ``model`` is a loaded Classifier or a :class:`ModelSpec` (loaded on the first unit); the worker
    state (model, attacks, image cache) is kept across runs of this executor.
    """

    kind = "local"

    def __init__(self, model: Classifier | ModelSpec, *, image_cache_size: int = IMAGE_CACHE_SIZE) -> None:
        self._model = model
        self._image_cache_size = image_cache_size
        self._state: WorkerState | None = None
        self._tally: _Tally | None = None

    @property
    def state(self) -> WorkerState:
        if self._state is None:
            model = self._model.load() if isinstance(self._model, ModelSpec) else self._model
            self._state = WorkerState(model, self._image_cache_size)
        return self._state

    def run(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, Any]]:
        """Yield ``(unit, unit.run(state))`` for each unit, in order."""
        self._tally = _Tally()
        for unit in units:
            result = unit.run(self.state)
            self._tally.add(unit)
            yield unit, result

    def stats(self) -> dict[str, Any]:
        """Throughput of the last ``run`` (JSON-ready)."""
        t = self._tally
        if t is None:
            return {"executor": "local", "ran": False}
        seconds = (t.t_last or t.t_start) - t.t_start
        return {
            "executor": "local",
            "ran": True,
            "units": t.units,
            "images": len(t.images),
            "jobs": t.jobs,
            "seconds": round(seconds, 3),
            "images_per_s": _rate(len(t.images), seconds),
            "jobs_per_s": _rate(t.jobs, seconds),
        }

    def close(self) -> None:
        """Nothing to stop (the executor protocol's ``close``)."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----- on a Ray cluster ---------------------------------------------------------------------------
def result_description(model: Classifier) -> dict[str, Any]:
    """The parts of ``model.describe()`` that change results (what every worker must agree on): the
    flat settings of :func:`dermadv.runs.record.result_settings`, so the one list
    ``NON_RESULT_KEYS`` decides here too."""
    from dermadv.runs.record import result_settings

    return result_settings({"model": model.describe()})


def _file_sha256(path: Path | None) -> str | None:
    from dermadv.runs.provenance import model_file_sha256

    return model_file_sha256(path)


def _set_threads(n: float) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, int(n)))
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


class UnitWorker:
    """A Ray actor body: loads the model once from its spec and runs any work unit on its state."""

    def __init__(self, model_spec: ModelSpec, threads: float = 1) -> None:
        _set_threads(threads)
        self.model_spec = model_spec
        self.state = WorkerState(model_spec.load())

    def info(self) -> dict[str, Any]:
        """Where this worker runs, its device, and what it loaded (checked against the driver's model)."""
        import dermadv

        model = self.state.model
        return {
            **node_info(),
            "device": str(getattr(model, "device", "cpu")),
            "dermadv": dermadv.__version__,
            "model": result_description(model),
            "model_sha256": _file_sha256(self.model_spec.file()),
        }

    def run(self, unit: WorkUnit) -> dict[str, Any]:
        """Run one unit; files it reads that are missing here come back for the driver to check."""
        t0 = time.perf_counter()
        missing = sorted({str(p) for p in unit.paths() if not os.path.exists(p)})
        try:
            result = unit.run(self.state)
        except Exception:
            if not missing:
                raise
            result, failed = None, True  # most likely because of the missing files: the driver says
        else:
            failed = False
        return {
            "result": result,
            "failed": failed,
            "missing": missing,
            "host": node_info()["host"],
            "seconds": time.perf_counter() - t0,
        }


def _check_missing(missing: Collection[str], host: str, failed: bool) -> None:
    """Files a worker could not find: an error when this (driver) machine can read them, or when
    the unit failed without them."""
    here = [p for p in missing if os.path.exists(p)]
    if here:
        raise DataError(
            f"{here[0]}: readable on this machine but not on Ray worker host {host!r}"
            + (f" ({len(here) - 1} more)" if len(here) > 1 else "")
            + ". Workers read images themselves: put --data on a filesystem every node shares, or copy it to "
            "the same absolute path on every node."
        )
    if failed:
        first = sorted(missing)[0]
        raise DataError(f"{first}: image file not found (on this machine and on Ray worker host {host!r})")


class RayExecutor:
    """Runs work units of any kind on Ray actors, each holding the model loaded once from its spec.

    ``reference_model`` (the driver's loaded model) makes every worker prove it loaded the same
    model; the model file's SHA-256 is checked too. Workers get one GPU each where the cluster has
    GPUs (``gpus_per_worker=None``), else ``cpus_per_worker`` CPUs (and as many torch threads).
    Each :meth:`run` starts the workers and stops them when it ends (also on errors).
    """

    kind = "ray"

    def __init__(
        self,
        model: ModelSpec | str,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float | None = None,
        reference_model: Classifier | None = None,
        max_restarts: int = 3,
        max_attempts: int = 3,
        verbose: bool = True,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        import_ray()  # MissingExtraError naming dermadv[ray], before any work
        if workers is not None and workers < 1:
            raise DermadvError(f"--workers must be >= 1, got {workers}")
        if not isinstance(model, (ModelSpec, str)):
            raise DermadvError(
                "a Ray executor needs a ModelSpec (what workers load), not a loaded model; pass the "
                "loaded model as reference_model"
            )
        self.model_spec = (ModelSpec(model) if isinstance(model, str) else model).absolute()
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
        self._tally = _Tally()
        self._stats: dict[str, Any] = {"executor": "ray", "address": address, "ran": False}

    # ----- lifecycle ----------------------------------------------------------------------------
    def _start(self) -> ActorPool:
        if self.pool is not None:
            return self.pool
        self._owns_ray = connect(self.address, **self.init_kwargs) or self._owns_ray
        ray = import_ray()
        n_default, gpus = default_workers(self.cpus_per_worker, self.gpus_per_worker)
        self.pool = ActorPool(
            ray.remote(UnitWorker),
            (self.model_spec, self.cpus_per_worker),
            self.workers or n_default,
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

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def busy_worker_pids(self) -> list[int]:
        """Process ids of the workers running a unit now (tests kill one to show recovery)."""
        return [] if self.pool is None else self.pool.busy_pids()

    # ----- running ------------------------------------------------------------------------------
    def run(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, Any]]:
        """Yield ``(unit, result)`` for every unit as workers finish them."""
        units = list(units)
        if not units:
            return
        self._tally = _Tally()
        payloads = [u.for_workers() for u in units]
        try:
            pool = self._start()
            for i, value, w in pool.run("run", payloads):
                unit = units[i]
                if isinstance(value, WorkerLost):
                    result = unit.lost(str(value))
                else:
                    _check_missing(value["missing"], value["host"], value["failed"])
                    result = value["result"]
                pool.stats[w].jobs += unit.n_jobs()
                self._tally.add(unit)
                yield unit, result
        finally:  # stop the workers (and Ray, if this executor started it); keep the statistics
            self.close()

    def stats(self) -> dict[str, Any]:
        """Cluster-wide throughput and per-worker counts of the last ``run`` (JSON-ready)."""
        pool = self.pool
        if pool is None:
            return dict(self._stats)
        images, jobs = len(self._tally.images), self._tally.jobs
        end = pool.t_last_result or time.perf_counter()
        wall = end - pool.t_start
        working = end - pool.t_first_ready if pool.t_first_ready else 0.0
        return {
            "executor": "ray",
            "address": self.address,
            "ran": True,
            "workers": len(pool.stats),
            "gpus_per_worker": pool.num_gpus,
            "units": self._tally.units,
            "images": images,
            "jobs": jobs,
            "seconds": round(wall, 3),
            "startup_seconds": round(wall - working, 3),
            "images_per_s": _rate(images, working),
            "jobs_per_s": _rate(jobs, working),
            "images_per_s_with_startup": _rate(images, wall),
            "worker_failures": pool.worker_failures,
            "retried_units": pool.retried_units,
            "per_worker": [s.as_dict() for s in pool.stats],
        }


# ----- what the command-line options mean -------------------------------------------------------
def make_executor(
    kind: str = "local",
    model_spec: ModelSpec | str | None = None,
    *,
    model: Classifier | None = None,
    address: str | None = None,
    workers: int | None = None,
    verbose: bool = True,
    **ray_options: Any,
) -> LocalExecutor | RayExecutor:
    """``--executor local`` -> a :class:`LocalExecutor` (on ``model`` if given, else the spec's);
    ``ray`` -> a :class:`RayExecutor` whose workers load ``model_spec`` (checked against ``model``).

    ``--address``/``--workers`` (and ``ray_options``) only mean something with ``--executor ray``.
    """
    name = (kind or "local").strip().lower()
    if name not in EXECUTORS:
        raise DermadvError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if name == "local":
        if address is not None or workers is not None or ray_options:
            raise DermadvError("--address and --workers need --executor ray")
        if model is not None:
            return LocalExecutor(model)
        if model_spec is None:
            raise DermadvError("the local executor needs a model or a model spec")
        return LocalExecutor(ModelSpec(model_spec) if isinstance(model_spec, str) else model_spec)
    if model_spec is None:
        raise DermadvError("--executor ray needs a model spec (a file or name every worker can load)")
    return RayExecutor(
        model_spec, address=address, workers=workers, reference_model=model, verbose=verbose, **ray_options
    )


def executor_json(executor: Executor | None) -> dict[str, Any]:
    """``{"executor": statistics}`` for a command's ``--json`` output (``{}`` without an executor)."""
    return {} if executor is None else {"executor": executor.stats()}


def format_executor_summary(stats: Mapping[str, Any] | None) -> str:
    """For a Ray run: one line for the cluster, one per worker; empty for the local executor."""
    if not stats or not stats.get("ran") or stats.get("executor") != "ray":
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
