"""One writer per run folder: an exclusive OS file lock on ``RUN/.lock``.

Every run kind (train, evaluate, sweep, attack, robustness) holds its folder's lock for the whole run:
:meth:`dermadv.runs.record.RunDir.open` takes it before it checks and records the settings, and the
functions that write a run folder (``run_campaign``, ``run_sweep``, ``evaluate_model`` with a resume
folder, ``write_evaluation``, ``Trainer.run``) hold it from their first read of the folder to their
last write. A second process that asks for a held folder gets one :class:`RunInUseError` line::

    RUN is in use by PID 1234 (dermadv attack --out RUN ..., started 2026-12-01T07:40:00Z);
    wait for it to finish or choose another --out

How it works
------------
- :class:`RunLock` is one ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``RUN/.lock`` (created, with the
  folder, if missing). After the lock is taken the file records the holder: PID, host, command line
  and start time (JSON). The kernel drops the lock when the holder dies, however it dies, so a lock
  file left by a killed process is no obstacle: the next process takes the lock and overwrites it.
- Releasing removes ``RUN/.lock`` (and the folder, when taking the lock created it and nothing else
  was written into it). Taking the lock checks that the locked file is still the one at ``RUN/.lock``
  and starts again if it was removed meanwhile, so two processes can never both hold a folder.
- :func:`hold_run` is the counted, per-process view: holds of one folder within one process share one
  :class:`RunLock` (a function that holds the folder may call another that holds it too); the lock
  is released when the last hold is. Use it as ``with hold_run(out): ...`` or decorate a function
  with :func:`holding_run`.
- A process forked from a holder (data-loader or executor workers) does not hold the folder: its copy
  of the lock's file descriptor is closed, so the lock dies with the holder. Workers never write.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import json
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from dermadv.errors import DataError

LOCK_FILE = ".lock"
#: How long a refused process waits for the holder to finish writing its details (seconds).
_HOLDER_WAIT = 1.0
_COMMAND_CHARS = 160

P = ParamSpec("P")
R = TypeVar("R")


class RunInUseError(DataError):
    """Another process holds the run folder's lock."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def command_line(argv: list[str] | None = None) -> str:
    """This process's command line as a user typed it (``dermadv attack ...``), shortened if long."""
    argv = list(sys.argv if argv is None else argv)
    prog = Path(argv[0]).name if argv and argv[0] else "python"
    if prog.startswith("dermadv") or (
        argv and prog in ("cli.py", "__main__.py") and Path(argv[0]).parent.name == "dermadv"
    ):
        prog = "dermadv"
    head = ["python", prog] if prog in ("-c", "-", "-m") else [prog]
    text = shlex.join([*head, *argv[1:]])
    return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 3] + "..."


def read_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """The holder details in ``RUN/.lock`` (pid, host, command, argv, started), or None if unreadable.

    The file may be left by a process that has ended: only a refused :meth:`RunLock.acquire` says
    the folder is in use.
    """
    try:
        info = json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) and "pid" in info else None


def in_use_message(run_dir: Path, holder: dict[str, Any] | None) -> str:
    """The one line a refused process prints."""
    advice = "wait for it to finish or choose another --out"
    if holder is None:
        return f"{run_dir} is in use by another process (no details in {run_dir / LOCK_FILE}); {advice}"
    host = holder.get("host")
    where = f" on host {host}" if host and host != socket.gethostname() else ""
    return (
        f"{run_dir} is in use by PID {holder.get('pid')}{where} ({holder.get('command', '?')}, "
        f"started {holder.get('started', '?')}); {advice}"
    )


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock`` (one open file; not shared with other holds).

    Most code wants :func:`hold_run`, which shares one RunLock per folder within a process. A RunLock
    of its own conflicts with every other open of the file, in this process too.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir).expanduser()
        self._fd: int | None = None
        self._created_dir = False
        self.holder: dict[str, Any] = {}

    @property
    def file(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunInUseError` naming the holder (never waits)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this RunLock is already held")
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"{self.path}: exists and is not a directory; a run folder must be a directory")
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunInUseError(in_use_message(self.path, self._wait_for_holder())) from None
            if self._is_current(fd):
                break
            os.close(fd)  # the holder we raced removed the file on release: lock the new one
        self._fd = fd
        self.holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command_line(),
            "argv": list(sys.argv),
            "started": _now(),
        }
        data = (json.dumps(self.holder, indent=2) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return self

    def _open(self) -> int:
        while True:
            try:
                self.path.mkdir(parents=True)
                self._created_dir = True
            except FileExistsError:
                if not self.path.is_dir():
                    raise DataError(
                        f"{self.path}: exists and is not a directory; a run folder must be a directory"
                    ) from None
            try:
                return os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:  # a releasing holder removed the (empty) folder just now
                continue

    def _is_current(self, fd: int) -> bool:
        try:
            st = os.stat(self.file)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def _wait_for_holder(self) -> dict[str, Any] | None:
        """The holder's details; it writes them just after taking the lock, so wait a moment."""
        deadline = time.monotonic() + _HOLDER_WAIT
        while True:
            holder = read_holder(self.path)
            if holder is not None or time.monotonic() > deadline:
                return holder
            time.sleep(0.02)

    def release(self) -> None:
        """Remove ``RUN/.lock`` (and the folder, if taking the lock made it and it is empty); unlock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._is_current(fd):
                self.file.unlink(missing_ok=True)
            if self._created_dir:
                try:
                    self.path.rmdir()  # only succeeds when nothing was written into it
                except OSError:
                    pass
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ----- per-process holds ------------------------------------------------------------------------
_GUARD = threading.RLock()
#: realpath of a run folder -> [its RunLock, number of holds]
_HELD: dict[str, list[Any]] = {}


def _key(run_dir: str | Path) -> str:
    return os.path.realpath(Path(run_dir).expanduser())


def is_held(run_dir: str | Path) -> bool:
    """Whether this process holds ``run_dir`` through :func:`hold_run`."""
    with _GUARD:
        return _key(run_dir) in _HELD


class RunHold:
    """One hold of a run folder; :meth:`release` (or leaving the ``with`` block) gives it up."""

    def __init__(self, key: str, lock: RunLock) -> None:
        self._key: str | None = key
        self.lock = lock

    @property
    def path(self) -> Path:
        return self.lock.path

    def release(self) -> None:
        """Give up this hold (again: nothing); the last hold of a folder releases its lock."""
        with _GUARD:
            key, self._key = self._key, None
            if key is None:
                return
            entry = _HELD.get(key)
            if entry is None or entry[0] is not self.lock:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del _HELD[key]
                self.lock.release()

    def __enter__(self) -> RunHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold_run(run_dir: str | Path) -> RunHold:
    """Hold ``run_dir`` for this process: take its lock, or share the one this process holds.

    Raises :class:`RunInUseError` (one line naming the holder's PID and command) when another
    process holds it. Release the hold with ``with`` or :meth:`RunHold.release`.
    """
    key = _key(run_dir)
    with _GUARD:
        entry = _HELD.get(key)
        if entry is None:
            entry = _HELD[key] = [RunLock(run_dir).acquire(), 0]
        entry[1] += 1
        return RunHold(key, entry[0])


def _resolve(bound: Mapping[str, Any], arg: str) -> Any:
    name, *attrs = arg.split(".")
    value = bound[name]
    for attr in attrs:
        value = getattr(value, attr)
    return value


def holding_run(arg: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function that writes a run folder: it holds the folder for the whole call.

    ``arg`` names the parameter that is the folder (``"out"``), or an attribute of one
    (``"self.out"``); when its value is None the function runs without a lock.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        if arg.split(".")[0] not in signature.parameters:
            raise TypeError(f"{fn.__qualname__} has no parameter {arg.split('.')[0]!r}")

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            run_dir = _resolve(bound.arguments, arg)
            if run_dir is None:
                return fn(*args, **kwargs)
            with hold_run(run_dir):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def _forget_in_child() -> None:
    """After fork: the child holds nothing (closing its copy of a descriptor keeps the parent's lock)."""
    global _GUARD
    _GUARD = threading.RLock()
    for lock, _count in _HELD.values():
        fd, lock._fd = lock._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)
