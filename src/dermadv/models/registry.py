"""One factory for every kind of model: ``load_model(spec)``.

``spec`` is one of
- a registered name (``dermadv models list``), e.g. ``sklesion``;
- a file: a dermadv checkpoint (``*.pt``/``*.pth`` saved by ``dermadv train``), TorchScript
  (``*.pt``/``*.pth``/``*.ts`` holding a scripted/traced module), Keras 3 (``*.keras``), ONNX (``*.onnx``);
- ``package.module:function`` for any Python callable returning probabilities (pure black box).
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dermadv.errors import ModelError
from dermadv.models.base import Classifier

#: Named models: name -> "module:factory" (imported lazily so optional frameworks stay optional).
NAMED_MODELS: dict[str, str] = {}


def register_model(name: str, target: str) -> None:
    """Register a named model; ``target`` is ``"module:factory"`` returning a Classifier."""
    NAMED_MODELS[name] = target


def _resolve(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (``*/code/``); torch.save checkpoints do not."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.startswith("code/") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


SUFFIX_HINT = "a dermadv checkpoint (.pt/.pth), TorchScript (.pt/.pth/.ts), Keras (.keras), ONNX (.onnx)"


def load_model(
    spec: str,
    melanoma_classes: Iterable[str] | None = None,
    benign_classes: Iterable[str] | None = None,
    device: str | None = None,
    **options: Any,
) -> Classifier:
    """Load any supported model behind the :class:`Classifier` interface."""
    spec = str(spec).strip()
    model: Classifier
    if spec in NAMED_MODELS:
        model = _resolve(NAMED_MODELS[spec])(device=device, **options)
    else:
        path = Path(spec).expanduser()
        if path.exists():
            model = _load_file(path, device=device, **options)
        elif ":" in spec and not spec.endswith((".pt", ".pth", ".ts", ".keras", ".onnx")):
            from dermadv.models.callable_adapter import CallableClassifier

            model = CallableClassifier.from_spec(spec, **options)
        elif path.suffix.lower() in (".pt", ".pth", ".ts", ".keras", ".onnx"):
            raise ModelError(f"{spec}: model file not found")
        else:
            names = ", ".join(sorted(NAMED_MODELS)) or "none registered"
            raise ModelError(
                f"{spec!r} is not a model file, a registered model ({names}) or 'module:function'. "
                f"Model files are {SUFFIX_HINT}."
            )
    if melanoma_classes is not None or benign_classes is not None:
        model.set_groups(
            melanoma_classes if melanoma_classes is not None else model.melanoma,
            benign_classes if benign_classes is not None else model.benign,
        )
    return model


def _load_file(path: Path, device: str | None = None, **options: Any) -> Classifier:
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a model file ({SUFFIX_HINT})")
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".ts"):
        if is_torchscript(path):
            from dermadv.models.torchscript_adapter import TorchScriptClassifier

            return TorchScriptClassifier.from_file(path, device=device, **options)
        from dermadv.models.checkpoint import load_checkpoint_classifier

        return load_checkpoint_classifier(path, device=device)
    if suffix == ".keras":
        from dermadv.models.keras_adapter import KerasClassifier

        return KerasClassifier.from_file(path, **options)
    if suffix == ".onnx":
        from dermadv.models.onnx_adapter import OnnxClassifier

        return OnnxClassifier.from_file(path, **options)
    raise ModelError(f"{path}: unknown model file type {suffix!r}; expected {SUFFIX_HINT}")
