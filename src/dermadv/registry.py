"""One registry mechanism for every kind of extension (timm style: one registry behind one factory).

Each kind of extension has one :class:`Registry`, defined beside the interface it extends::

    ATTACKS = Registry("attack", group="dermadv.attacks")        # dermadv/attacks/__init__.py

    @ATTACKS.register("color")                                   # where the thing is defined
    class ColorAttack(Attack):
        def __init__(self, delta: float = 0.1, *, popsize: int = 20, ...) -> None: ...

    ATTACKS.names()                       # ('fgsm', 'pgd', 'pixel', 'color', 'rotation', ...)
    ATTACKS.options("color")              # {'delta': 0.1, 'popsize': 20, ...}
    ATTACKS.create("color", delta="0.05") # strings from a command line become the default's type

Options are read from the explicit keyword arguments of the registered class's ``__init__`` (or of
the registered factory function), scikit-learn style: a registered callable may not take
``**kwargs``, so ``options()`` is always the complete, true list and an unknown option is an error
naming the valid ones.

Other packages add extensions without editing dermadv through Python entry points, one group per
kind (``dermadv.attacks``, ``dermadv.perturbations``, ``dermadv.searches``, ``dermadv.model_formats``,
``dermadv.models``, ``dermadv.defences``, ``dermadv.report_sections``, ``dermadv.commands``). An entry
point names a module (``my_pkg.attacks``) or an object (``my_pkg.attacks:MyAttack``); loading it
is expected to call ``register`` (as importing the module does), and an object that is not yet
registered is registered under the entry point's name. Entry points are loaded the first time a
registry is asked for its names.

A registry whose built-ins live in modules that are not imported with it (so that importing the
registry stays cheap) lists them as ``builtins``; they are imported on the first lookup (or the first
``add``), before the entry points, so built-ins always come first in ``names()``::

    MODEL_FORMATS = Registry("model format", builtins=("dermadv.models.checkpoint", ...))
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from dermadv.errors import DermadvError

T = TypeVar("T")

#: Entry-point groups, one per kind of extension.
ENTRY_POINT_GROUPS: dict[str, str] = {
    "attack": "dermadv.attacks",
    "perturbation": "dermadv.perturbations",
    "search": "dermadv.searches",
    "model format": "dermadv.model_formats",
    "model": "dermadv.models",
    "defence": "dermadv.defences",
    "report section": "dermadv.report_sections",
    "command": "dermadv.commands",
}


class RegistryError(DermadvError, ValueError):
    """An unknown name, an unknown or invalid option, or a broken plugin (the message says which)."""


_MISSING = inspect.Parameter.empty


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered extension: its name, the object, and free-form metadata."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "dermadv"  # "dermadv" for built-ins, else the distribution that registered it


def explicit_options(obj: Callable[..., Any]) -> dict[str, Any]:
    """Keyword options of a class's ``__init__`` or a function, with their defaults (``_MISSING``
    when required). Raises TypeError when it takes ``**kwargs``: the options would not be knowable.

    For a class: its ``__init__``, else its ``__new__``; one with neither (only ``object``'s, whose
    signature is ``*args, **kwargs``) takes no options: ``{}``."""
    target: Callable[..., Any] = obj
    if isinstance(obj, type):
        cls: Any = obj  # the class's own (or inherited) constructor methods, compared with object's
        if cls.__init__ is not object.__init__:
            target = cls.__init__
        elif cls.__new__ is not object.__new__:
            target = cls.__new__
        else:
            return {}
    params = list(inspect.signature(target).parameters.values())
    if isinstance(obj, type) and params and params[0].name in ("self", "cls"):
        params = params[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        raise TypeError(
            f"{getattr(obj, '__qualname__', obj)!r} takes **kwargs; a registered extension must list "
            "every option as an explicit keyword argument"
        )
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def coerce(value: Any, default: Any, what: str) -> Any:
    """Convert a command-line string to the type of ``default`` (bool, int, float, tuple of floats).

    Non-strings pass unchanged; a string option (or one whose default is None and whose text is not
    a number) stays a string.
    """
    if not isinstance(value, str) or isinstance(default, str):
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, (tuple, list)):
            return tuple(float(v) for v in text.split(",") if v.strip())
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            if "," in text:  # e.g. mutation=0.5,1.0 where the default is one number
                return tuple(float(v) for v in text.split(","))
            return float(text)
        # default None or required: numbers if the text is one, else the text
        if "," in text:
            try:
                return tuple(float(v) for v in text.split(","))
            except ValueError:
                return text
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
        return text
    except ValueError:
        expected = type(default).__name__
        raise RegistryError(f"{what}={value!r} is not a valid {expected}") from None


class Registry(Generic[T]):
    """Name -> extension, for one kind of extension (see the module docstring)."""

    def __init__(self, kind: str, group: str | None = None, *, builtins: Sequence[str] = ()) -> None:
        if isinstance(builtins, str):
            raise TypeError(f"Registry({kind!r}): builtins must be a sequence of module names, not a string")
        self.kind = kind
        self.group = group if group is not None else ENTRY_POINT_GROUPS.get(kind)
        #: Modules defining the built-ins, imported on the first lookup (see the module docstring).
        self.builtins: tuple[str, ...] = tuple(builtins)
        self._entries: dict[str, Entry[T]] = {}
        self._builtins_loaded = not self.builtins
        self._plugins_loaded = False
        self._loading = False

    # ----- registering --------------------------------------------------------------------------
    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", **meta)`` on a class or factory function."""

        def decorator(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, source: str | None = None, **meta: Any) -> None:
        """Register ``obj`` under ``name``; re-registering the same object is a no-op, another one an
        error (two plugins claiming one name must not silently replace each other)."""
        self.load_builtins()  # built-ins first, even when a plugin module is imported directly
        name = str(name).strip()
        if not name:
            raise RegistryError(f"{self.kind}: empty name")
        if callable(obj):
            try:
                explicit_options(obj)
            except (TypeError, ValueError) as exc:
                raise RegistryError(f"{self.kind} {name!r}: {exc}") from None
        old = self._entries.get(name)
        if old is not None:
            if old.obj is obj:
                return
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice ({_where(old.obj)} and {_where(obj)})"
            )
        src = source or _source_of(obj)
        self._entries[name] = Entry(name, obj, dict(meta), src)

    # ----- looking up ---------------------------------------------------------------------------
    def names(self, **meta: Any) -> tuple[str, ...]:
        """Registered names, built-ins first in registration order; ``names(builtin=True)`` filters on
        metadata."""
        self.load_plugins()
        return tuple(n for n, e in self._entries.items() if all(e.meta.get(k) == v for k, v in meta.items()))

    def entries(self) -> Iterator[Entry[T]]:
        self.load_plugins()
        yield from self._entries.values()

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._entries

    def __len__(self) -> int:
        return len(self.names())

    def entry(self, name: str) -> Entry[T]:
        self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self._entries) or "none registered"
            raise RegistryError(f"unknown {self.kind} {name!r}; choose one of: {valid}") from None

    def get(self, name: str) -> T:
        """The registered object (class or factory)."""
        return self.entry(name).obj

    def meta(self, name: str) -> dict[str, Any]:
        return dict(self.entry(name).meta)

    def options(self, name: str) -> dict[str, Any]:
        """Option names with their defaults (``inspect.Parameter.empty`` for a required one)."""
        return explicit_options(self.get(name))  # type: ignore[arg-type]

    def create(self, name: str, **options: Any) -> Any:
        """Build ``name`` with ``options`` (strings converted to each default's type)."""
        obj = self.get(name)
        valid = self.options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            listed = ", ".join(sorted(valid)) or "none"
            raise RegistryError(
                f"{self.kind} {name!r}: unknown option(s) {', '.join(unknown)}; valid options: {listed}"
            )
        kwargs = {
            k: coerce(v, None if valid[k] is _MISSING else valid[k], f"{self.kind} {name!r}: option {k}")
            for k, v in options.items()
        }
        try:
            return obj(**kwargs)  # type: ignore[operator]
        except DermadvError:  # RegistryError included: already says what was wrong
            raise
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"{self.kind} {name!r}: {exc}") from None

    # ----- built-ins and plugins ---------------------------------------------------------------
    def load_builtins(self) -> None:
        """Import the ``builtins`` modules once (each registers what it defines where it is defined)."""
        if self._builtins_loaded:
            return
        self._builtins_loaded = True  # set first: the modules call add(), which calls this again
        try:
            for module in self.builtins:
                importlib.import_module(module)
        except Exception:
            self._builtins_loaded = False  # the next lookup tries again (and fails the same way, loudly)
            raise

    def load_plugins(self) -> None:
        """Load this kind's entry points once, after the built-ins (idempotent; a failing plugin is a
        clear error)."""
        self.load_builtins()
        if self._plugins_loaded or self._loading or self.group is None:
            return
        self._loading = True
        try:
            for ep in metadata.entry_points(group=self.group):
                dist = getattr(getattr(ep, "dist", None), "name", None) or ep.module.split(".")[0]
                try:
                    loaded = ep.load()
                except Exception as exc:  # a broken plugin: say which, do not hide it
                    raise RegistryError(
                        f"{self.kind} plugin {ep.name!r} ({ep.value}, from the package {dist}) failed to "
                        f"load: {type(exc).__name__}: {exc}"
                    ) from exc
                if isinstance(loaded, types.ModuleType):
                    continue  # importing the module registered what it defines
                if not any(e.obj is loaded for e in self._entries.values()):
                    self.add(ep.name, loaded, source=dist)
            self._plugins_loaded = True
        finally:
            self._loading = False

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} registered)"


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _source_of(obj: Any) -> str:
    module = str(getattr(obj, "__module__", "") or "")
    return "dermadv" if module.split(".")[0] == "dermadv" else module.split(".")[0] or "?"
