"""Atomic file writes: a reader, or a rerun after a kill, sees the old file or the new one, never half.

Files end up with the permissions of any other file the user creates (``0o666 & ~umask``: 0644 under
umask 022, 0640 under 027), not the 0600 of the temporary file they are written to.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without leaving it changed (``os.umask`` can only set it)."""
    try:  # Linux: read it from /proc without touching it
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore at once, one thread at a time
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """Permission bits of a newly created file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_target(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    For writers that need a file name (torch.save, matplotlib, onnx export).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):  # mkstemp made it 0600; give it the mode the umask asks for
            os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_default(obj: Any) -> Any:
    """JSON encoder fallback: numpy scalars and arrays as numbers and lists, anything else as str."""
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalar or array
        return obj.tolist()
    return str(obj)


def atomic_write_json(
    path: str | Path, obj: Any, default: Callable[[Any], Any] | None = json_default
) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def read_json(path: str | Path, what: str = "JSON") -> Any:
    """The JSON value in ``path``; a DataError "PATH: unreadable WHAT (why)" when it cannot be read
    or parsed (``what`` says what the file should hold, e.g. "transfer results")."""
    from dermadv.errors import DataError

    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: unreadable {what} ({exc})") from exc


def read_result(path: str | Path, what: str, kind: str, key: str) -> dict[str, Any]:
    """A result file written by a dermadv command: a JSON object holding ``key``. DataError naming the
    file when it is unreadable ("unreadable WHAT") or something else ("not a dermadv KIND result")."""
    from dermadv.errors import DataError

    data = read_json(path, what)
    if not isinstance(data, dict) or key not in data:
        raise DataError(f"{Path(path)}: not a dermadv {kind} result (no {key!r})")
    return data
