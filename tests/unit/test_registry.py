"""The one registry mechanism: register, names, options, create, errors, entry points."""

from __future__ import annotations

import sys
import types
from importlib import metadata

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
