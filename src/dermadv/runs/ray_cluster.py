"""A pool of Ray actors that run work units, retry units of lost workers and count what each did.

Generic part of the Ray executor (:mod:`dermadv.runs.executor`): connect to (or start)
a Ray cluster, start one actor per worker (a GPU each where the cluster has GPUs), send each idle
actor the next unit, and yield unit results to the driver as they finish. A unit whose worker
process or node dies goes back to the front of the queue and runs on the next free actor (the
dead actor is restarted by Ray, ``max_restarts``, and rejoins once it has loaded its model again).
Units are pure functions of their input (the job seeds travel with them), so a retried unit gives
exactly the result the lost one would have.

Ray is imported only inside functions: ``import dermadv.runs.ray_cluster`` never needs Ray.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dermadv.errors import DermadvError, require

#: How long the driver waits for a result before saying what it is waiting for (seconds).
WAIT_REPORT_S = 30.0
#: How often the driver asks a restarting worker whether it is back (seconds).
PROBE_DELAY_S = 0.5


def import_ray() -> Any:
    """The ``ray`` module, or MissingExtraError telling the user to install ``dermadv[ray]``."""
    return require("ray", "ray", "Running on a Ray cluster (--executor ray)")


def connect(address: str | None = None, **init_kwargs: Any) -> bool:
    """Connect to a Ray cluster (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``) or start one here.

    With ``address=None`` and no ``RAY_ADDRESS`` in the environment a single-node Ray instance is
    started on this machine (all its CPUs/GPUs). Does nothing when Ray is already initialised in
    this process (e.g. by a test or a notebook). Returns True when this call initialised Ray, i.e.
    when the caller should ``ray.shutdown()`` afterwards.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, **init_kwargs}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs.setdefault("include_dashboard", False)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        raise DermadvError(
            f"cannot connect to the Ray cluster at {where} ({exc}). Start one with `ray start --head` "
            "and pass --address auto (on a cluster node) or --address ray://HEAD:10001."
        ) from exc
    return True


def worker_lost_errors() -> tuple[type[BaseException], ...]:
    """Ray exceptions meaning "the process or node running the unit is gone", not "the unit failed"."""
    ex = import_ray().exceptions
    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError")
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


def node_info() -> dict[str, Any]:
    """Where this worker process runs: host, node IP, pid and the GPUs Ray gave it."""
    ray = import_ray()
    try:
        gpus = [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - outside a Ray worker
        gpus = []
    try:
        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001
        ip = None
    return {"host": socket.gethostname(), "node_ip": ip, "pid": os.getpid(), "gpus": gpus}


@dataclass
class WorkerStats:
    """What one worker (actor) did; ``pids`` lists every process it had (a restart adds one)."""

    index: int
    host: str | None = None
    node_ip: str | None = None
    pids: list[int] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)
    device: str | None = None
    units: int = 0
    jobs: int = 0
    busy_seconds: float = 0.0
    failures: int = 0
    alive: bool = True
    ready_after_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.index,
            "host": self.host,
            "node_ip": self.node_ip,
            "pids": list(self.pids),
            "gpus": list(self.gpus),
            "device": self.device,
            "units": self.units,
            "jobs": self.jobs,
            "busy_seconds": round(self.busy_seconds, 3),
            "failures": self.failures,
            "alive": self.alive,
            "ready_after_s": None if self.ready_after_s is None else round(self.ready_after_s, 2),
        }


class WorkerLost(DermadvError):
    """A unit whose worker died ``max_attempts`` times (each time on a live cluster)."""


def _log(message: str, verbose: bool) -> None:
    if not verbose:
        return
    try:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        print(message, file=sys.stderr)


class ActorPool:
    """Runs units on Ray actors of ``actor_class`` (a ``ray.remote`` class), one unit per actor at a time.

    The actor class must have ``info() -> dict`` (see :func:`node_info`; called when the actor is
    ready, i.e. after its constructor loaded the model, and again after each restart).
    ``check_info(worker_index, info)`` may raise to refuse a worker (e.g. a different model file).
    """

    def __init__(
        self,
        actor_class: Any,
        init_args: Sequence[Any],
        n_workers: int,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_restarts: int = 3,
        max_attempts: int = 3,
        check_info: Callable[[int, dict[str, Any]], None] | None = None,
        verbose: bool = True,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"need at least one Ray worker, got {n_workers}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.ray = import_ray()
        self.max_restarts = max_restarts
        self.max_attempts = max_attempts
        self.check_info = check_info
        self.num_gpus = num_gpus
        self.verbose = verbose
        self.t_start = time.perf_counter()
        opts = {
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "max_restarts": max_restarts,
            "max_task_retries": 0,
        }
        self.actors = [actor_class.options(**opts).remote(*init_args) for _ in range(n_workers)]
        self.stats = [WorkerStats(i) for i in range(n_workers)]
        self._probing: dict[Any, int] = {a.info.remote(): i for i, a in enumerate(self.actors)}
        self._delayed: list[tuple[float, int]] = []  # (when, worker): probes of restarting workers
        self._idle: deque[int] = deque()
        self._busy: dict[int, int] = {}  # worker -> unit index
        self.worker_failures = 0
        self.retried_units = 0
        self.t_first_ready: float | None = None
        self.t_last_result: float | None = None

    # ----- state --------------------------------------------------------------------------------
    def busy_pids(self) -> list[int]:
        """Process ids of the workers running a unit right now."""
        return [self.stats[w].pids[-1] for w in self._busy if self.stats[w].pids]

    def alive_workers(self) -> int:
        return sum(s.alive for s in self.stats)

    def _ready(self, ref: Any) -> None:
        w = self._probing.pop(ref)
        try:
            info = self.ray.get(ref)
        except worker_lost_errors() as exc:
            if type(exc).__name__ == "ActorUnavailableError":  # restarting: ask again in a moment
                self._probe_later(w)
            else:
                self._worker_failed(w, exc)
            return
        if self.check_info is not None:
            self.check_info(w, info)
        st = self.stats[w]
        st.host, st.node_ip, st.gpus = info.get("host"), info.get("node_ip"), list(info.get("gpus", []))
        st.device = info.get("device")
        if info.get("pid") not in st.pids:
            st.pids.append(info.get("pid"))
        now = time.perf_counter()
        if st.ready_after_s is None:
            st.ready_after_s = now - self.t_start
        if self.t_first_ready is None:
            self.t_first_ready = now
        self._idle.append(w)
        where = f"{st.host} pid {st.pids[-1]}" + (f" GPU {','.join(st.gpus)}" if st.gpus else "")
        _log(
            f"ray: worker {w} ready on {where} ({st.device or 'cpu'}) after {now - self.t_start:.1f} s",
            self.verbose,
        )

    def _worker_failed(self, w: int, exc: BaseException) -> None:
        """A worker process (or its node) died: count it; Ray restarts it up to ``max_restarts`` times."""
        st = self.stats[w]
        st.failures += 1
        self.worker_failures += 1
        if st.failures > self.max_restarts:
            st.alive = False
            _log(f"ray: worker {w} gone for good after {st.failures} failure(s): {_short(exc)}", self.verbose)
            return
        _log(f"ray: worker {w} lost ({_short(exc)}); it rejoins when Ray has restarted it", self.verbose)
        self._probe_later(w)

    def _probe_later(self, w: int, delay: float = PROBE_DELAY_S) -> None:
        self._delayed.append((time.perf_counter() + delay, w))

    def _submit_due_probes(self) -> float:
        """Ask restarted workers whether they are ready; returns seconds until the next probe is due."""
        now = time.perf_counter()
        due = [(t, w) for t, w in self._delayed if t <= now]
        self._delayed = [(t, w) for t, w in self._delayed if t > now]
        for _, w in due:
            self._probing[self.actors[w].info.remote()] = w
        return min((t - now for t, _ in self._delayed), default=WAIT_REPORT_S)

    # ----- the loop -----------------------------------------------------------------------------
    def run(self, method: str, payloads: Sequence[Any]) -> Iterator[tuple[int, Any, int]]:
        """Yield ``(unit index, result, worker index)`` as units finish; results of units that lost
        their worker ``max_attempts`` times are :class:`WorkerLost` instances instead.
        Exceptions raised by a unit itself (bugs, bad input) propagate to the caller."""
        lost = worker_lost_errors()
        queue: deque[int] = deque(range(len(payloads)))
        attempts = [0] * len(payloads)
        inflight: dict[Any, tuple[int, int, float]] = {}
        last_report = time.perf_counter()

        def dispatch() -> None:
            while queue and self._idle:
                w, u = self._idle.popleft(), queue.popleft()
                attempts[u] += 1
                ref = getattr(self.actors[w], method).remote(payloads[u])
                inflight[ref] = (u, w, time.perf_counter())
                self._busy[w] = u

        while queue or inflight:
            dispatch()
            next_probe = self._submit_due_probes()
            if not inflight and not self._probing and not self._delayed:
                raise DermadvError(
                    f"all {len(self.actors)} Ray workers died; {len(queue)} unit(s) not run. Results so far "
                    "are stored: rerun the same command to resume."
                )
            refs = [*inflight, *self._probing]
            if not refs:
                time.sleep(max(0.0, next_probe))
                continue
            done, _ = self.ray.wait(refs, num_returns=1, timeout=min(WAIT_REPORT_S, max(0.01, next_probe)))
            if not done:
                if time.perf_counter() - last_report >= WAIT_REPORT_S and not inflight:
                    last_report = time.perf_counter()
                    _log(
                        f"ray: waiting for workers to start ({len(self._probing)} pending; cluster resources "
                        f"{self.ray.available_resources()}). Are --workers more than the cluster can place?",
                        self.verbose,
                    )
                continue
            ref = done[0]
            if ref in self._probing:
                self._ready(ref)
                continue
            u, w, t0 = inflight.pop(ref)
            self._busy.pop(w, None)
            try:
                value = self.ray.get(ref)
            except lost as exc:
                self._worker_failed(w, exc)
                if attempts[u] < self.max_attempts:
                    self.retried_units += 1
                    queue.appendleft(u)
                    continue
                dispatch()
                yield (
                    u,
                    WorkerLost(
                        f"the Ray worker running this unit died {attempts[u]} time(s) (last: {_short(exc)})"
                    ),
                    w,
                )
                continue
            st = self.stats[w]
            st.units += 1
            st.busy_seconds += time.perf_counter() - t0
            self.t_last_result = time.perf_counter()
            self._idle.append(w)
            dispatch()  # keep every worker busy while the driver stores this result
            yield u, value, w

    def close(self) -> None:
        """Kill the actors (their processes exit; the cluster keeps running)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self.actors = []
        self._probing.clear()
        self._delayed.clear()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def default_workers(cpus_per_worker: float = 1, gpus_per_worker: float | None = None) -> tuple[int, float]:
    """How many workers the connected cluster can hold, and the GPUs each gets.

    ``gpus_per_worker=None``: one GPU per worker when the cluster has GPUs, otherwise CPU workers.
    """
    ray = import_ray()
    res = ray.cluster_resources()
    gpus = float(res.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if gpus_per_worker > 0:
        return max(1, int(gpus // gpus_per_worker)), gpus_per_worker
    return max(1, int(float(res.get("CPU", 1)) // max(cpus_per_worker, 1e-9))), 0.0
