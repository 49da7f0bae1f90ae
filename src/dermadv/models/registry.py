"""One factory for every kind of model: ``load_model(spec)``.

``spec`` is one of
- a registered name (:data:`NAMED_MODELS`, ``dermadv models list``), e.g. ``sklesion``;
- a file of a registered model format (:data:`dermadv.models.formats.MODEL_FORMATS`): a dermadv
  checkpoint (``*.pt``/``*.pth`` saved by ``dermadv train``), TorchScript (``*.pt``/``*.pth``/``*.ts``
  holding a scripted/traced module), Keras 3 (``*.keras``), ONNX (``*.onnx``), or a plugin's format;
- ``package.module:function`` for any Python callable returning probabilities (pure black box).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from dermadv.errors import ModelError
from dermadv.models.base import Classifier
from dermadv.models.formats import FormatInfo, format_info, formats
from dermadv.registry import Registry, coerce, explicit_options

#: Named models: ``NAMED_MODELS.register("name")`` on a factory ``(device=None, *, option=default, ...)
#: -> Classifier`` whose keyword arguments are its options (entry-point group ``dermadv.models``).
#: The built-ins live in :mod:`dermadv.models.sklesion`, imported on the first lookup only.
NAMED_MODELS: Registry[Callable[..., Classifier]] = Registry("model", builtins=("dermadv.models.sklesion",))


def register_model(name: str, target: str | Callable[..., Classifier], **meta: Any) -> None:
    """Register a named model; ``target`` is a factory or ``"module:factory"`` returning a Classifier."""
    NAMED_MODELS.add(name, _resolve(target) if isinstance(target, str) else target, **meta)


def _resolve(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def model_target(name: str) -> str:
    """``module:factory`` of a named model (what ``dermadv models list`` shows)."""
    obj = NAMED_MODELS.get(name)
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


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


def suffix_hint() -> str:
    """The model files ``load_model`` reads, e.g. "a dermadv checkpoint (.pt/.pth), ONNX (.onnx)"."""
    parts = [f"{f.label} ({'/'.join(f.suffixes)})" for f in formats() if f.suffixes]
    return "a " + ", ".join(parts) if parts else "none registered"


def file_types() -> dict[str, str]:
    """What ``dermadv models list`` shows: how a format is named (``.onnx``) -> one line about it."""
    out: dict[str, str] = {}
    for f in formats():
        key = f.kind if f.kind not in out else f"{f.kind} ({f.name})"
        out[key] = f.summary()
    return out


def __getattr__(name: str) -> Any:
    """``SUFFIX_HINT`` and ``FILE_TYPES``, derived from the registry when asked (plugins included)."""
    if name == "SUFFIX_HINT":
        return suffix_hint()
    if name == "FILE_TYPES":
        return file_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        model = _load_named(spec, device, options)
    else:
        path = Path(spec).expanduser()
        if path.exists():
            model = _load_file(path, device=device, **options)
        elif path.suffix.lower() in {s for f in formats() for s in f.suffixes}:
            raise ModelError(f"{spec}: model file not found")
        else:
            claimed = next((f for f in formats() if f.claims is not None and f.claims(spec)), None)
            if claimed is None:
                names = ", ".join(sorted(NAMED_MODELS.names())) or "none registered"
                raise ModelError(
                    f"{spec!r} is not a model file, a registered model ({names}) or 'module:function'. "
                    f"Model files are {suffix_hint()}."
                )
            model = load_with_format(claimed, spec, device, options)
    if melanoma_classes is not None or benign_classes is not None:
        model.set_groups(
            melanoma_classes if melanoma_classes is not None else model.melanoma,
            benign_classes if benign_classes is not None else model.benign,
        )
    return model


def _load_named(name: str, device: str | None, options: dict[str, Any]) -> Classifier:
    factory = NAMED_MODELS.get(name)
    valid = explicit_options(factory)
    known = [k for k in valid if k != "device"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ModelError(f"{name}: unknown option(s) {unknown}; known: {', '.join(known) or 'none'}")
    kwargs = _typed(options, valid, name)
    if "device" in valid:
        kwargs["device"] = device
    return factory(**kwargs)


def _typed(options: dict[str, Any], valid: dict[str, Any], where: str) -> dict[str, Any]:
    """Strings from the command line become the type of a typed default (bool, int, float, tuple);
    options whose default is None or text reach the loader unchanged (it parses them itself, so
    ``classes=0,1`` stays text)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        default = valid.get(key)
        typed = isinstance(default, (bool, int, float, tuple))
        out[key] = coerce(value, default, f"{where}: option {key}") if typed else value
    return out


def load_with_format(
    fmt: FormatInfo | str,
    source: str | Path,
    device: str | None = None,
    options: dict[str, Any] | None = None,
) -> Classifier:
    """Load ``source`` with one registered format: its extra is checked, unknown options refused."""
    info = format_info(fmt) if isinstance(fmt, str) else fmt
    options = dict(options or {})
    valid = info.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        article = "an" if info.label[:1].lower() in "aeio" else "a"
        note = f" {info.options_note}" if info.options_note else ""
        raise ModelError(
            f"{source}: unknown option(s) {unknown} for {article} {info.label} model; "
            f"known: {', '.join(valid) or 'none'}{note}"
        )
    missing = [k for k, v in valid.items() if v is _REQUIRED and k not in options]
    if missing:
        raise ModelError(
            f"{source}: the {info.name} model format needs "
            + ", ".join(f"--model-option {k}=..." for k in missing)
        )
    info.check_requirements()
    loader = info.cls(**_typed(options, valid, str(source)))
    return loader.load(source, device=device)


_REQUIRED = inspect.Parameter.empty


def _load_file(path: Path, device: str | None = None, **options: Any) -> Classifier:
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a model file ({suffix_hint()})")
    suffix = path.suffix.lower()
    candidates = [f for f in formats() if suffix in f.suffixes]
    if not candidates:
        raise ModelError(f"{path}: unknown model file type {suffix!r}; expected {suffix_hint()}")
    chosen = next((f for f in candidates if f.sniff is not None and _sniff(f, path)), None)
    if chosen is None:  # a format without a sniff check takes the rest; else the first says what is wrong
        chosen = next((f for f in candidates if f.sniff is None), candidates[0])
    return load_with_format(chosen, path, device, options)


def _sniff(info: FormatInfo, path: Path) -> bool:
    assert info.sniff is not None
    try:
        return bool(info.sniff(path))
    except OSError:
        return False
    except Exception as exc:  # a plugin's check is broken: say whose
        raise ModelError(
            f"{path}: the sniff check of the {info.name!r} model format ({info.source}) raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
