"""Model formats: one registry, one file per format.

A model format is a class registered in :data:`MODEL_FORMATS` where it is defined (each adapter
module registers its own; another package registers one through the ``dermadv.model_formats`` entry
point). Its ``__init__`` keyword arguments are its options (``--model-option KEY=VALUE``), every one
explicit with a default, so ``MODEL_FORMATS.options(name)`` is their true list; its
``load(self, source, device=None) -> Classifier`` loads one model::

    @register_format(
        "onnx",
        suffixes=(".onnx",),
        description="ONNX model run by onnxruntime; layout and size from the graph",
        label="ONNX",
        white_box=False,
        extra="onnx",
        requires=("onnxruntime",),
    )
    @dataclass(frozen=True)
    class OnnxFormat:
        classes: str | None = None
        ...
        def load(self, source: Path, device: str | None = None) -> OnnxClassifier: ...

What the registration declares (registry metadata):

- ``suffixes``: file name endings it reads (lower case, with the dot);
- ``sniff``: ``sniff(path) -> bool``, whether a file with one of those suffixes is of this format
  (TorchScript and dermadv checkpoints are both ``.pt``). A format with a sniff check claims the
  files it recognises; a format without one claims the others with its suffixes;
- ``claims``: for formats that are not files, ``claims(spec) -> bool`` (``module:function``), with
  ``spec_form`` the form shown to users;
- ``description`` (one line), ``label`` (short name, e.g. "Keras"), ``white_box``;
- ``extra`` and ``requires``: the dermadv extra to install and the modules it provides, checked
  (without importing them) before loading, so a missing one is one line naming the extra;
- ``options_note``: optional text appended when an unknown option is given.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from dermadv.errors import MissingExtraError
from dermadv.registry import Registry, RegistryError, explicit_options

T = TypeVar("T")


#: Modules defining the built-in formats (listed in this order).
BUILTIN_FORMAT_MODULES: tuple[str, ...] = (
    "dermadv.models.checkpoint",
    "dermadv.models.torchscript_adapter",
    "dermadv.models.keras_adapter",
    "dermadv.models.onnx_adapter",
    "dermadv.models.callable_adapter",
)

#: Model formats by name (entry-point group ``dermadv.model_formats``); the built-in modules are
#: imported on the first lookup, so ``import dermadv.models.formats`` imports no adapter.
MODEL_FORMATS: Registry[type] = Registry("model format", builtins=BUILTIN_FORMAT_MODULES)

_META_KEYS = frozenset(
    {
        "suffixes",
        "sniff",
        "claims",
        "spec_form",
        "description",
        "label",
        "white_box",
        "extra",
        "requires",
        "options_note",
    }
)


@dataclass(frozen=True)
class FormatInfo:
    """A registered model format as :func:`load_model` and ``dermadv models list`` see it."""

    name: str
    cls: type
    suffixes: tuple[str, ...]
    description: str
    label: str
    white_box: bool
    extra: str | None
    requires: tuple[str, ...]
    sniff: Callable[[Path], bool] | None
    claims: Callable[[str], bool] | None
    spec_form: str | None
    options_note: str
    source: str

    @property
    def options(self) -> dict[str, Any]:
        return explicit_options(self.cls)

    @property
    def kind(self) -> str:
        """How users name it: ``.pt / .pth`` for files, the spec form (``module:function``) otherwise."""
        return " / ".join(self.suffixes) if self.suffixes else (self.spec_form or self.name)

    def summary(self) -> str:
        """One line: description, extra, options, white-box or black-box."""
        extra = f" (dermadv[{self.extra}])" if self.extra else ""
        opts = ", ".join(self.options) or "none"
        box = "white-box" if self.white_box else "black-box"
        return f"{self.description}{extra}; options {opts}; {box}"

    def check_requirements(self) -> None:
        """Raise MissingExtraError (one line naming the extra) if a module it needs is not installed."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                package = module.split(".")[0]
                raise MissingExtraError(package, self.extra or package, f"Loading {self.label} models")

    def to_json(self) -> dict[str, Any]:
        return {
            "suffixes": list(self.suffixes),
            "spec_form": self.spec_form,
            "description": self.description,
            "label": self.label,
            "white_box": self.white_box,
            "extra": self.extra,
            "options": list(self.options),
            "source": self.source,
        }


def register_format(
    name: str,
    *,
    description: str,
    white_box: bool,
    suffixes: Sequence[str] = (),
    sniff: Callable[[Path], bool] | None = None,
    claims: Callable[[str], bool] | None = None,
    spec_form: str | None = None,
    label: str | None = None,
    extra: str | None = None,
    requires: Sequence[str] = (),
    options_note: str = "",
) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a model format in :data:`MODEL_FORMATS` (see the module docstring)."""
    norm = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    if not norm and claims is None:
        raise RegistryError(f"model format {name!r}: give suffixes (a file format) or claims (a spec format)")
    if "\n" in description or not description.strip():
        raise RegistryError(f"model format {name!r}: the description must be one non-empty line")
    if requires and not extra:
        raise RegistryError(f"model format {name!r}: requires {list(requires)} but names no extra to install")

    def decorator(cls: type[T]) -> type[T]:
        if not isinstance(cls, type) or not callable(getattr(cls, "load", None)):
            raise RegistryError(f"model format {name!r}: register a class with a load(source, device) method")
        MODEL_FORMATS.add(
            name,
            cls,
            suffixes=norm,
            sniff=sniff,
            claims=claims,
            spec_form=spec_form,
            description=description.strip(),
            label=label or name,
            white_box=bool(white_box),
            extra=extra,
            requires=tuple(requires),
            options_note=options_note,
        )
        return cls

    return decorator


def format_info(name: str) -> FormatInfo:
    """The registered format ``name`` (a plugin registering through ``MODEL_FORMATS.register`` directly
    gets defaults for what it left out; unknown metadata keys are an error naming them)."""
    entry = MODEL_FORMATS.entry(name)
    meta = entry.meta
    unknown = sorted(set(meta) - _META_KEYS)
    if unknown:
        raise RegistryError(
            f"model format {name!r} ({entry.source}): unknown metadata {unknown}; known: {sorted(_META_KEYS)}"
        )
    suffixes = tuple(str(s).lower() for s in meta.get("suffixes", ()))
    if not suffixes and meta.get("claims") is None:
        raise RegistryError(f"model format {name!r} ({entry.source}): declares neither suffixes nor claims")
    return FormatInfo(
        name=name,
        cls=entry.obj,
        suffixes=suffixes,
        description=str(meta.get("description") or (entry.obj.__doc__ or name).strip().splitlines()[0]),
        label=str(meta.get("label") or name),
        white_box=bool(meta.get("white_box", False)),
        extra=meta.get("extra"),
        requires=tuple(meta.get("requires", ())),
        sniff=meta.get("sniff"),
        claims=meta.get("claims"),
        spec_form=meta.get("spec_form"),
        options_note=str(meta.get("options_note") or ""),
        source=entry.source,
    )


def formats() -> list[FormatInfo]:
    """Every registered format, built-ins first."""
    return [format_info(n) for n in MODEL_FORMATS.names()]


def option_values(obj: Any) -> dict[str, Any]:
    """The options a format object was made with (for dataclass formats forwarding them to a loader)."""
    if not is_dataclass(obj):
        raise TypeError(f"{type(obj).__name__} is not a dataclass")
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
