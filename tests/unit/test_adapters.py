"""Adapter errors without data: the Keras backend and missing extras, files that are no model, missing
files, unknown suffixes and bad specs. The adapters on real images: tests/integration/test_adapters.py."""

from __future__ import annotations

import sys
import types

import pytest

from dermadv.errors import MissingExtraError, ModelError
from dermadv.models.registry import load_model, parse_model_options


def test_keras_backend_and_missing_extras(monkeypatch, tmp_path):
    from dermadv.models.keras_adapter import import_keras

    # Keras 3 installed here only runs on torch; another backend already imported must be refused clearly.
    fake = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: "tensorflow"))
    monkeypatch.setitem(sys.modules, "keras", fake)
    with pytest.raises(ModelError, match="already imported with the 'tensorflow' backend"):
        import_keras()
    monkeypatch.setitem(sys.modules, "keras", None)  # not installed
    with pytest.raises(MissingExtraError, match=r"dermadv\[keras\]"):
        import_keras()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(MissingExtraError, match=r"dermadv\[onnx\]"):
        load_model(str(path), classes="mel,nv")


# ----- hostile input ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["model.onnx", "model.keras", "model.ts", "model.pt"])
def test_not_a_model_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError, match=str(path.name)) as info:
        load_model(str(path), classes="mel,nv", input_size=64)
    assert "not found" not in str(info.value)  # the file exists: say what is wrong with it


def test_missing_files_unknown_suffix_and_bad_specs(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "absent.onnx"))
    with pytest.raises(ModelError, match="not a model file, a registered model"):
        load_model("no-such-model")
    odd = tmp_path / "weights.h5"
    odd.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model file type '.h5'"):
        load_model(str(odd))
    with pytest.raises(ModelError, match="cannot import module"):
        load_model("no_such_module_xyz:predict", classes="mel,nv")
    with pytest.raises(ModelError, match="has no attribute"):
        load_model("models_support:absent_function", classes="mel,nv")
    with pytest.raises(ModelError, match=r"unknown option\(s\) \['colour'\] for a callable model; known: cl"):
        load_model("models_support:mean_colour_probs", colour="red")
    with pytest.raises(ModelError, match="KEY=VALUE"):
        parse_model_options(["classes"])
