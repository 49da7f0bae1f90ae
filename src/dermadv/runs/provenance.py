"""Provenance of a run: what produced its numbers (software versions, model file, data selection).

One place for what used to be copied per command: :func:`versions`, :func:`file_sha256`,
:func:`selection_hash` and :func:`run_provenance`.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions can change a number dermadv reports: (import name, distribution name).
RELEVANT_PACKAGES: tuple[tuple[str, str], ...] = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("keras", "keras"),
    ("tensorflow", "tensorflow"),
    ("onnx", "onnx"),
    ("onnxruntime", "onnxruntime"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("PIL", "pillow"),
    ("simplejpeg", "simplejpeg"),
    ("cv2", "opencv-python-headless"),
    ("sklesion", "sklesion"),
)


def _package_version(module_name: str, distribution: str) -> str | None:
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)  # the version actually imported
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        if module_name == "cv2":
            try:
                return metadata.version("opencv-python")
            except metadata.PackageNotFoundError:
                return None
        return None


def versions() -> dict[str, str]:
    """Versions of dermadv, Python, NumPy, the platform and every relevant package installed.

    Values are plain ``str`` (torch's ``TorchVersion`` is not safe in a ``weights_only`` checkpoint).
    """
    import numpy

    import dermadv

    out = {
        "dermadv": str(dermadv.__version__),
        "python": platform.python_version(),
        "numpy": str(numpy.__version__),
        "platform": platform.platform(),
    }
    for module_name, distribution in RELEVANT_PACKAGES:
        found = _package_version(module_name, distribution)
        if found is not None:
            out[module_name] = found
    return out


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_file_sha256(model_spec: str | Path | None) -> str | None:
    """SHA-256 of the file a model was loaded from when ``model_spec`` names a file, else None."""
    if model_spec is None:
        return None
    path = Path(model_spec).expanduser()
    return file_sha256(path) if path.is_file() else None


def selection_hash(samples: Sequence[Any]) -> str:
    """Hash of a data selection: ``dermadv.data.dataset_hash`` of its (image id, diagnosis) pairs.

    Independent of order, paths and metadata: the same images and labels give the same hash
    wherever the data lives.
    """
    from dermadv.data import dataset_hash

    return str(dataset_hash(samples))


def run_provenance(
    model: Any = None,
    *,
    model_spec: str | Path | None = None,
    model_file_hash: str | None = None,
    data: Mapping[str, Any] | None = None,
    samples: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """What produced a run's numbers: model description, model file SHA-256, data selection, versions.

    ``model_file_hash`` is computed from ``model_spec`` when not given (None when the spec is no file);
    ``data`` describes the selection (path, split, subset...) and gets ``hash`` and ``n_selected``
    from ``samples``.
    """
    out: dict[str, Any] = {}
    if model is not None:
        out["model"] = model.describe()
    if model_spec is not None:
        out["model_spec"] = str(model_spec)
    if model_file_hash is None:
        model_file_hash = model_file_sha256(model_spec)
    out["model_file_sha256"] = model_file_hash
    if data is not None or samples is not None:
        selection = dict(data or {})
        if samples is not None:
            if "hash" not in selection:  # not setdefault: the hash would be computed either way
                selection["hash"] = selection_hash(samples)
            selection.setdefault("n_selected", len(samples))
        out["data"] = selection
    out["versions"] = versions()
    return out
