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
from collections.abc import Callable, Iterable, Sequence
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


# ----- option parsing shared by the adapters and the CLI ----------------------------------------
def parse_model_options(pairs: Sequence[str] | None) -> dict[str, str]:
    """``["classes=mel,nv", "input_size=224"]`` (repeatable ``--model-option KEY=VALUE``) -> dict."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ModelError(
                f"model option {pair!r}: expected KEY=VALUE, e.g. classes=mel,nv or input_size=224"
            )
        out[key] = value.strip()
    return out


def as_classes(value: str | Sequence[str] | None, what: str = "classes") -> tuple[str, ...] | None:
    """Class names from ``"mel,nv"`` or a sequence; None stays None. Names must be unique."""
    if value is None:
        return None
    raw = value.split(",") if isinstance(value, str) else [str(c) for c in value]
    items = [c.strip() for c in raw if c.strip()]
    if not items:
        raise ModelError(f"{what}: empty class list")
    dupes = sorted({c for c in items if items.count(c) > 1})
    if dupes:
        raise ModelError(f"{what}: duplicate class names {dupes}")
    return tuple(items)


def classes_or_meta(classes: str | Sequence[str] | None, meta: dict[str, Any], where: str) -> tuple[str, ...]:
    """Class names given by the user, else from the file's dermadv metadata, else a clear ModelError."""
    names = as_classes(classes if classes is not None else meta.get("classes"))
    if names is None:
        raise ModelError(
            f"{where} has no dermadv metadata, so its class names are unknown; pass them in output order, "
            "e.g. --model-option classes=mel,nv (--classes mel,nv in `dermadv models`)"
        )
    return names


def as_size(value: int | str | Sequence[int] | None, what: str = "input_size") -> tuple[int, int] | None:
    """Input size (height, width) from ``224``, ``"224"``, ``"256,192"`` or ``(256, 192)``."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parts = [int(v) for v in value.replace("x", ",").split(",") if v.strip()]
        elif isinstance(value, int):
            parts = [value]
        else:
            parts = [int(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{what}: expected an integer or HEIGHT,WIDTH, got {value!r}") from exc
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8:
        raise ModelError(f"{what}: expected one or two integers >= 8, got {value!r}")
    return parts[0], parts[1]


def as_floats(value: str | Sequence[float] | None, n: int, what: str) -> tuple[float, ...] | None:
    """``n`` floats from ``"0.5,0.5,0.5"`` or a sequence (a single value is repeated)."""
    if value is None:
        return None
    try:
        items = [float(v) for v in value.split(",")] if isinstance(value, str) else [float(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{what}: expected {n} comma-separated numbers, got {value!r}") from exc
    if len(items) == 1:
        items = items * n
    if len(items) != n:
        raise ModelError(f"{what}: expected {n} numbers, got {len(items)} ({value!r})")
    return tuple(items)


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
        if suffix == ".ts" or is_torchscript(path):
            from dermadv.models.torchscript_adapter import TorchScriptClassifier

            return TorchScriptClassifier.from_file(path, device=device, **options)
        from dermadv.models.checkpoint import load_checkpoint_classifier

        return load_checkpoint_classifier(path, device=device, **options)
    if suffix == ".keras":
        from dermadv.models.keras_adapter import KerasClassifier

        return KerasClassifier.from_file(path, **options)
    if suffix == ".onnx":
        from dermadv.models.onnx_adapter import OnnxClassifier

        return OnnxClassifier.from_file(path, **options)
    raise ModelError(f"{path}: unknown model file type {suffix!r}; expected {SUFFIX_HINT}")


#: File types ``load_model`` understands (for ``dermadv models list``).
FILE_TYPES: dict[str, str] = {
    ".pt / .pth": "dermadv checkpoint (torch.save dict written by `dermadv train`), white-box",
    ".pt / .pth / .ts": "TorchScript module (torch.jit.save); options classes, input_size, mean, std, "
    "output (defaults from a dermadv.json extra file when present), white-box",
    ".keras": "Keras 3 model, run by Keras on the PyTorch backend (dermadv[keras]); options classes, "
    "mean, std, output; input size from the model, white-box",
    ".onnx": "ONNX model run by onnxruntime (dermadv[onnx]); options classes, input_size, mean, std, "
    "output, threads; layout and size from the graph, black-box",
    "module:function": "any Python callable taking uint8 N x H x W x 3 and returning N x K probabilities; "
    "options classes, input_size, black-box",
}

register_model("sklesion", "dermadv.models.sklesion:load_sklesion")
register_model("sklesion-onnx", "dermadv.models.sklesion:load_sklesion_onnx")
