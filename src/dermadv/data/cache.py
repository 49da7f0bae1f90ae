"""Decode each image once: a disk cache of decoded, resized uint8 images (``.npy``).

Decoding a 6000 x 4000 JPEG every epoch is wasted work; training reads small arrays instead. An
entry is keyed by the file's resolved path, modification time and size, the JPEG decoder, the
resize method and the target size, so a changed file or a different decoder never hits a stale
entry. Entries are written atomically (:func:`dermadv.fileio.atomic_target`: a temporary file with a
name unique to its writer, then a rename), so concurrent DataLoader workers and interrupted runs
never leave a torn file.

Location: ``$DERMADV_CACHE`` if set, else ``<RUN_DIR>/../.dermadv-cache`` for training runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dermadv.data.images import DECODERS, load_image, resize_uint8
from dermadv.errors import DataError
from dermadv.fileio import atomic_target

#: Bump when the stored representation changes.
CACHE_FORMAT = 1

#: A target size: an int is the length of the shorter side (aspect kept); (h, w) is an exact size.
Size = int | tuple[int, int]


def default_cache_dir(run_dir: str | Path | None = None) -> Path:
    """``$DERMADV_CACHE``, else ``<run_dir>/../.dermadv-cache``, else ``~/.cache/dermadv``."""
    env = os.environ.get("DERMADV_CACHE")
    if env:
        return Path(env).expanduser()
    if run_dir is not None:
        return Path(run_dir).expanduser().resolve().parent / ".dermadv-cache"
    return Path.home() / ".cache" / "dermadv"


def shorter_side_size(shape: tuple[int, ...], shorter: int) -> tuple[int, int]:
    """(h, w) with the shorter side equal to ``shorter`` and the aspect ratio kept."""
    h, w = shape[0], shape[1]
    if h <= w:
        return shorter, max(1, round(w * shorter / h))
    return max(1, round(h * shorter / w)), shorter


class ImageCache:
    """Decoded + resized images on disk, keyed by file identity, decoder, resize method and size."""

    def __init__(self, root: str | Path, decoder: str = "pil", resize_method: str = "bilinear") -> None:
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        self.root = Path(root)
        self.decoder = decoder
        self.resize_method = resize_method

    def key(self, path: str | Path, size: Size) -> str:
        """Cache key of ``path`` at ``size``; raises DataError if the file is missing."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError as exc:
            raise DataError(f"{path}: image file not found") from exc
        ident = f"{CACHE_FORMAT}|{p}|{st.st_mtime_ns}|{st.st_size}|{self.decoder}|{self.resize_method}|{size}"
        return hashlib.sha1(ident.encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.root / f"v{CACHE_FORMAT}" / key[:2] / f"{key}.npy"

    def compute(self, path: str | Path, size: Size) -> np.ndarray:
        """Decode and resize without touching the cache."""
        img = load_image(path, decoder=self.decoder)
        target = shorter_side_size(img.shape, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return resize_uint8(img, target, self.resize_method)

    def get(self, path: str | Path, size: Size) -> np.ndarray:
        """The decoded image resized to ``size``, from the cache or computed and stored."""
        f = self._file(self.key(path, size))
        if f.is_file():
            try:
                arr = np.load(f, allow_pickle=False)
                if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
                    return arr
            except (OSError, ValueError, EOFError):
                pass  # damaged entry: recompute below
        arr = self.compute(path, size)
        self._store(f, arr)
        return arr

    def _store(self, f: Path, arr: np.ndarray) -> None:
        with atomic_target(f, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)

    def contains(self, path: str | Path, size: Size) -> bool:
        return self._file(self.key(path, size)).is_file()

    def fill(
        self,
        paths: Iterable[str | Path],
        size: Size,
        workers: int = 2,
        progress: bool = True,
        desc: str = "caching images",
    ) -> int:
        """Make sure every image is cached (decoding in ``workers`` threads); returns how many were new."""
        from tqdm import tqdm

        todo = [p for p in paths if not self.contains(p, size)]
        if not todo:
            return 0
        bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress, leave=False)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for _ in pool.map(lambda p: self.get(p, size), todo):
                bar.update()
        bar.close()
        return len(todo)
