"""The one registry mechanism: register, names, options, create, errors, entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from dermadv.registry import Registry, RegistryError, coerce


def _registry() -> Registry:
    reg: Registry = Registry("widget", group="dermadv.test_widgets")

    @reg.register("box", builtin=True)
    class Box:
        def __init__(
            self,
            size: int = 3,
            *,
            scale: float = 1.0,
            flags: tuple = (1.0, 2.0),
            on: bool = False,
            label: str = "x",
        ) -> None:
            self.size, self.scale, self.flags, self.on, self.label = size, scale, flags, on, label

    @reg.register("maker")
    def make(width: float = 2.0) -> dict:
        return {"width": width}

    return reg


def test_register_names_options_create() -> None:
    reg = _registry()
    assert reg.names() == ("box", "maker")
    assert reg.names(builtin=True) == ("box",)
    assert reg.options("box") == {"size": 3, "scale": 1.0, "flags": (1.0, 2.0), "on": False, "label": "x"}
    box = reg.create("box", size="5", scale="0.5", flags="1,2,3", on="yes", label="7")
    assert (box.size, box.scale, box.flags, box.on, box.label) == (5, 0.5, (1.0, 2.0, 3.0), True, "7")
    assert reg.create("maker", width="4")["width"] == 4.0
    assert "box" in reg and "nope" not in reg


def test_errors_name_what_was_wrong() -> None:
    reg = _registry()
    with pytest.raises(RegistryError, match=r"unknown widget 'nope'; choose one of: box, maker"):
        reg.get("nope")
    with pytest.raises(RegistryError, match=r"unknown option\(s\) colour; valid options: flags, label"):
        reg.create("box", colour=1)
    with pytest.raises(RegistryError, match=r"option size='big' is not a valid int"):
        reg.create("box", size="big")
    with pytest.raises(RegistryError, match="registered twice"):
        reg.add("box", lambda size=1: size)


def test_kwargs_are_refused() -> None:
    reg: Registry = Registry("widget", group=None)

    def loose(**options: object) -> None: ...

    with pytest.raises(RegistryError, match="explicit keyword argument"):
        reg.add("loose", loose)


def test_entry_points_register_objects_and_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_widget_plugin")

    def gadget(n: int = 1) -> int:
        return n * 10

    module.gadget = gadget  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_widget_plugin", module)
    eps = [metadata.EntryPoint("gadget", "fake_widget_plugin:gadget", "dermadv.test_widgets")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps if "test_widgets" in group else [])
    reg = _registry()
    assert reg.names() == ("box", "maker", "gadget")
    assert reg.create("gadget", n="4") == 40
    assert reg.entry("gadget").source == "fake_widget_plugin"


def test_broken_plugin_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [metadata.EntryPoint("bad", "no_such_module_xyz:thing", "dermadv.test_widgets")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps)
    with pytest.raises(RegistryError, match=r"widget plugin 'bad' \(no_such_module_xyz:thing"):
        _registry().names()


def test_coerce_keeps_non_strings_and_text() -> None:
    assert coerce(3, 1.0, "x") == 3
    assert coerce("abc", None, "x") == "abc"
    assert coerce("2", None, "x") == 2
    assert coerce("0.5,1", 0.7, "x") == (0.5, 1.0)


def test_class_without_init_has_no_options() -> None:
    reg: Registry = Registry("widget", group=None)

    @reg.register("plain")
    class Plain:
        def run(self) -> str:
            return "ran"

    class Base:
        def __init__(self, depth: int = 2) -> None:
            self.depth = depth

    @reg.register("inherits")
    class Inherits(Base):  # no __init__ of its own: the base's options
        pass

    @reg.register("made")
    class Made:
        def __new__(cls, width: float = 1.0) -> Made:
            obj = super().__new__(cls)
            obj.width = width  # type: ignore[attr-defined]
            return obj

    assert reg.options("plain") == {} and reg.create("plain").run() == "ran"
    with pytest.raises(RegistryError, match=r"unknown option\(s\) size; valid options: none"):
        reg.create("plain", size=1)
    assert reg.options("inherits") == {"depth": 2} and reg.create("inherits", depth="5").depth == 5
    assert reg.options("made") == {"width": 1.0} and reg.create("made", width="3").width == 3.0

    class Loose:
        def __new__(cls, *args: object, **kwargs: object) -> Loose:
            return super().__new__(cls)

    with pytest.raises(RegistryError, match="explicit keyword argument"):
        reg.add("loose", Loose)


@pytest.fixture
def builtin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Registry, str]]:
    """A registry whose one built-in lives in a real module file, not imported until needed."""
    module = "dermadv_test_builtin_widgets"
    holder = types.ModuleType("dermadv_test_widget_registry")
    holder.REG = Registry("widget", group="dermadv.test_widgets", builtins=(module,))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    (tmp_path / f"{module}.py").write_text(
        "from dermadv_test_widget_registry import REG\n\n"
        "@REG.register('builtin-box', builtin=True)\n"
        "class Box:\n"
        "    def __init__(self, size: int = 3) -> None:\n"
        "        self.size = size\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    yield holder.REG, module
    sys.modules.pop(module, None)


def test_builtins_are_imported_on_first_lookup_before_plugins(
    builtin_module: tuple[Registry, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, module = builtin_module
    plugin = types.ModuleType("fake_widget_plugin")

    def gadget(n: int = 1) -> int:
        return n

    plugin.gadget = gadget  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_widget_plugin", plugin)
    eps = [metadata.EntryPoint("gadget", "fake_widget_plugin:gadget", "dermadv.test_widgets")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps if "test_widgets" in group else [])
    assert module not in sys.modules  # creating the registry imported nothing
    assert reg.names() == ("builtin-box", "gadget")
    assert module in sys.modules and reg.entry("builtin-box").source == "dermadv_test_builtin_widgets"
    assert reg.create("builtin-box", size="4").size == 4


def test_builtins_come_first_when_a_plugin_registers_directly(builtin_module: tuple[Registry, str]) -> None:
    reg, module = builtin_module
    reg.add("early", lambda k=1: k)  # e.g. a plugin module imported before any lookup
    assert module in sys.modules
    assert reg.names() == ("builtin-box", "early")


def test_a_missing_builtin_module_fails_loudly_every_time() -> None:
    reg: Registry = Registry("widget", group=None, builtins=("dermadv_no_such_builtin_module",))
    for _ in range(2):  # not marked loaded after a failure: the second lookup fails the same way
        with pytest.raises(ModuleNotFoundError, match="dermadv_no_such_builtin_module"):
            reg.names()
    with pytest.raises(TypeError, match="sequence of module names"):
        Registry("widget", builtins="dermadv.models.checkpoint")  # type: ignore[arg-type]


def test_model_formats_import_their_builtins_lazily_and_first() -> None:
    code = (
        "import sys\n"
        "from dermadv.models.formats import BUILTIN_FORMAT_MODULES, MODEL_FORMATS\n"
        "assert not [m for m in BUILTIN_FORMAT_MODULES if m in sys.modules], 'imported too early'\n"
        "names = MODEL_FORMATS.names()\n"
        "assert all(m in sys.modules for m in BUILTIN_FORMAT_MODULES)\n"
        "print(','.join(names))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    names = done.stdout.strip().split(",")
    assert names[:5] == ["checkpoint", "torchscript", "keras", "onnx", "callable"], names
