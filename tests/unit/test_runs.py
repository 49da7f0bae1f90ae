"""One run record (dermadv.runs) without data: settings hash, open/check/record, read errors and legacy
kinds, file modes that honour the umask. The run kinds on real images: tests/integration/test_runs.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from dermadv.errors import DataError
from dermadv.runs.record import (
    NON_RESULT_KEYS,
    RunDir,
    non_result_settings,
    read_run,
    result_settings,
    settings_hash,
)
from models_support import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ----- settings ------------------------------------------------------------------------------------
def _set(settings: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(settings))
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


BASE: dict[str, Any] = {
    "model": {"name": "m", "input_size": [32, 32], "batch_size": 8, "device": "cpu", "path": "/a/m.pt"},
    "model_file_sha256": "ab" * 32,
    "data": {"path": "/data", "subset": "val", "hash": "0123"},
    "threshold": 0.5,
    "batch_size": 16,  # a training mini-batch: a result setting
    "device": "cpu",
    "attacks": {"pixel": {"popsize": 2}},
}


def test_settings_hash_ignores_exactly_the_non_result_keys() -> None:
    h = settings_hash(BASE)
    for key in sorted(NON_RESULT_KEYS):
        assert settings_hash(_set(BASE, key, "something else")) == h, key
    for key in (
        "model.name",
        "model.input_size",
        "model_file_sha256",
        "data.path",
        "data.subset",
        "data.hash",
        "threshold",
        "batch_size",
        "lr_schedule_epochs",
        "attacks.pixel.popsize",
        "model.checkpoint.arch",  # only the checkpoint's path is not a result setting
        "model.metadata.encoder",
    ):
        assert settings_hash(_set(BASE, key, 12345)) != h, key
    # the two views split the flat settings without overlap or loss
    flat_result, flat_other = result_settings(BASE), non_result_settings(BASE)
    assert set(flat_other) == {"model.batch_size", "model.device", "model.path", "device"}
    assert not set(flat_result) & set(flat_other)
    assert len(flat_result) + len(flat_other) == 13


def test_open_check_and_record(tmp_path: Path) -> None:
    run = RunDir.open(tmp_path / "r", "sweep", BASE, {"note": 1}, argv=["perturb", "--device", "cpu"])
    info = read_run(tmp_path / "r")
    assert info["kind"] == "sweep" and info["schema"] == 1 and info["settings_hash"] == settings_hash(BASE)
    assert info["provenance"] == {"note": 1} and not run.resumed
    assert info["invocations"][0]["argv"] == ["perturb", "--device", "cpu"]
    assert info["invocations"][0]["options"]["device"] == "cpu"
    # resume on another device with another inference batch: accepted, a second invocation
    moved = _set(_set(BASE, "device", "cuda"), "model.batch_size", 64)
    again = RunDir.open(tmp_path / "r", "sweep", moved, argv=["perturb", "--device", "cuda"])
    info = read_run(tmp_path / "r")
    assert again.resumed and [i["argv"][-1] for i in info["invocations"]] == ["cpu", "cuda"]
    assert info["created"] == run.info["created"] and info["settings_hash"] == settings_hash(BASE)
    # one error naming every differing result key
    changed = _set(_set(BASE, "threshold", 0.6), "data.hash", "9999")
    diff = r"different settings \(data\.hash: '0123' -> '9999'; threshold: 0\.5 -> 0\.6\)"
    with pytest.raises(DataError, match=diff):
        RunDir.open(tmp_path / "r", "sweep", changed)
    with pytest.raises(DataError, match="holds a sweep run, not an evaluate run"):
        RunDir.open(tmp_path / "r", "evaluate", BASE)
    assert len(read_run(tmp_path / "r")["invocations"]) == 2  # refused invocations are not recorded
    # extendable sections may gain entries; existing ones must agree
    RunDir.open(tmp_path / "r", "sweep", _set(BASE, "attacks.fgsm", {"eps": 2}), extendable=("attacks",))
    assert set(read_run(tmp_path / "r")["settings"]["attacks"]) == {"pixel", "fgsm"}
    with pytest.raises(DataError, match=r"attacks\.fgsm\.eps: 2 -> 4"):
        RunDir.open(tmp_path / "r", "sweep", _set(BASE, "attacks.fgsm", {"eps": 4}), extendable=("attacks",))


def test_read_run_errors_and_legacy_kinds(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no run.json"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(DataError, match="run.json: unreadable run record"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"kind": "dermadv-attack-campaign", "settings": {}}))
    assert read_run(tmp_path)["kind"] == "attack"


# ----- file modes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("umask", "mode"), [(0o027, 0o640), (0o022, 0o644)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    from dermadv.fileio import atomic_write_json, atomic_write_text, current_umask
    from dermadv.models.checkpoint import save_checkpoint
    from dermadv.models.export import export_onnx, export_torchscript

    old = os.umask(umask)
    try:
        assert current_umask() == umask and current_umask() == umask  # reading leaves it unchanged
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "b.json", {"a": 1})
        RunDir.open(tmp_path / "run", "evaluate", {})
        save_checkpoint({"x": 1}, tmp_path / "c.pt")
        export_torchscript(tiny_model(), tmp_path / "d.ts")
        if umask == 0o027:  # the ONNX export (slower) once
            export_onnx(tiny_model(), tmp_path / "e.onnx")
    finally:
        os.umask(old)
    names = ["a.txt", "b.json", "c.pt", "d.ts", *(["e.onnx"] if umask == 0o027 else []), "run"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left behind
    for name in [*names[:-1], "run/run.json"]:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_result_files_that_cannot_be_read_are_named(tmp_path: Path) -> None:
    from dermadv.fileio import read_json, read_result

    p = tmp_path / "transfer.json"
    p.write_text('{"matrix": [1]}')
    assert read_result(p, "transfer results", "transfer", "matrix") == {"matrix": [1]}
    with pytest.raises(DataError, match=r"transfer.json: not a dermadv explain result \(no 'entries'\)"):
        read_result(p, "explanations", "explain", "entries")
    p.write_text("{broken")
    with pytest.raises(DataError, match=r"transfer.json: unreadable transfer results \("):
        read_result(p, "transfer results", "transfer", "matrix")
    with pytest.raises(DataError, match=r"missing.json: unreadable JSON \("):
        read_json(tmp_path / "missing.json")
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="unreadable defence comparison"):
        read_json(p, "defence comparison")
