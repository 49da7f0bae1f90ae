"""Extension points through the one Registry, without data: a registered command runs in the real CLI;
a missing extra is one line; registration rules; `--help` imports no framework. A registered model
format and report section on real images: tests/integration/test_extension_points.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dermadv.cli import COMMANDS, add_commands
from dermadv.errors import MissingExtraError, ModelError
from dermadv.models.formats import register_format
from dermadv.models.registry import NAMED_MODELS, load_model
from dermadv.registry import RegistryError
from plugin_support import REPO


def test_registered_command_runs(registries: None) -> None:
    @COMMANDS.register("format-count")
    def register(app: typer.Typer) -> None:
        @app.command("format-count")
        def format_count(white_box: bool = typer.Option(False, "--white-box")) -> None:
            """How many model formats are registered."""
            from dermadv.models.formats import formats

            typer.echo(str(sum(1 for f in formats() if f.white_box or not white_box)))

    app = typer.Typer()
    add_commands(app)
    result = CliRunner().invoke(app, ["format-count", "--white-box"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "3"  # checkpoint, torchscript, keras
    assert CliRunner().invoke(app, ["models", "list"]).exit_code == 0  # the built-ins came along


def test_missing_extra_is_one_line(registries: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    @register_format(
        "fancy",
        suffixes=(".fancy",),
        description="needs a package that is not installed",
        white_box=False,
        extra="fancy",
        requires=("no_such_module_xyz",),
    )
    class FancyFormat:
        def __init__(self, classes: str | None = None) -> None:
            self.classes = classes

        def load(self, source: Path, device: str | None = None) -> None:
            raise AssertionError("must not be reached")

    path = tmp_path / "m.fancy"
    path.write_bytes(b"x")
    with pytest.raises(MissingExtraError) as info:
        load_model(str(path))
    assert str(info.value) == (
        "Loading fancy models needs the Python package 'no_such_module_xyz', which is not installed. "
        "Install it with: pip install 'dermadv[fancy]'"
    )
    for module, suffix, extra in (("keras", ".keras", "keras"), ("onnxruntime", ".onnx", "onnx")):
        monkeypatch.setitem(sys.modules, module, None)
        model_file = tmp_path / f"m{suffix}"
        model_file.write_bytes(b"x")
        with pytest.raises(MissingExtraError) as info:
            load_model(str(model_file), classes="mel,nv")
        assert "\n" not in str(info.value) and f"pip install 'dermadv[{extra}]'" in str(info.value)


def test_registration_rules(registries: None) -> None:
    with pytest.raises(RegistryError, match="explicit keyword argument"):

        @register_format("loose", suffixes=(".loose",), description="x", white_box=False)
        class Loose:
            def __init__(self, **options: object) -> None: ...

            def load(self, source: Path, device: str | None = None) -> None: ...

    with pytest.raises(RegistryError, match="neither|give suffixes"):
        register_format("nothing", description="x", white_box=False)
    with pytest.raises(RegistryError, match="one non-empty line"):
        register_format("two-lines", suffixes=(".x",), description="a\nb", white_box=False)
    with pytest.raises(RegistryError, match="registered twice"):

        @register_format("onnx", suffixes=(".onnx",), description="another onnx", white_box=False)
        class AnotherOnnx:
            def __init__(self) -> None: ...

            def load(self, source: Path, device: str | None = None) -> None: ...

    # named models: options from the factory's signature; unknown ones refused with the known list
    assert NAMED_MODELS.names()[:2] == ("sklesion", "sklesion-onnx")
    assert NAMED_MODELS.options("sklesion") == {"device": None, "decoder": "tf", "batch_size": None}
    known = r"sklesion: unknown option\(s\) \['colour'\]; known: decoder, batch_size"
    with pytest.raises(ModelError, match=known):
        load_model("sklesion", colour="red")


def test_help_imports_no_framework() -> None:
    """`dermadv --help` builds every command without importing torch, Keras or onnxruntime, nor the model
    adapters and named models (the --model help is fixed text; `models list` reads the registries)."""
    script = (
        "import runpy, sys\n"
        "sys.argv = ['dermadv', '--help']\n"
        "try:\n"
        "    runpy.run_module('dermadv.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "evaluate" in done.stdout and "models" in done.stdout
    modules = set(done.stdout.split("MODULES", 1)[1].split())
    assert "dermadv.commands.evaluate" in modules
    assert not {"dermadv.models.registry", "dermadv.models.onnx_adapter", "dermadv.models.sklesion"} & modules
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "torchvision", "keras", "onnxruntime"))
    assert heavy == []
