"""One run record (dermadv.runs): settings hash, refusal of changed result settings, invocations, kinds,
device-independent resume for sweeps and campaigns alike, and file modes that honour the umask."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dermadv.data import select_samples  # noqa: E402
from dermadv.errors import DataError, DermadvError  # noqa: E402
from dermadv.runs.record import (  # noqa: E402
    NON_RESULT_KEYS,
    RunDir,
    non_result_settings,
    read_run,
    result_settings,
    settings_hash,
)
from models_support import tiny_cnn  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(device: str = "cpu", batch_size: int = 4) -> Any:
    """A real white-box torch classifier (fixed random weights) on 32 px inputs."""
    from dermadv.models.base import TorchModuleClassifier

    return TorchModuleClassifier(
        tiny_cnn(seed=0),
        ["mel", "nv"],
        (32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        name="tiny",
        device=device,
        batch_size=batch_size,
    )


@pytest.fixture(scope="module")
def mel_nv(isic2019_dir: Path) -> list[Any]:
    samples = select_samples(isic2019_dir, classes=("mel", "nv"), limit=8)
    assert {s.diagnosis for s in samples} == {"mel", "nv"}
    return samples


@pytest.fixture(scope="module")
def melanomas(isic2019_dir: Path) -> list[Any]:
    return select_samples(isic2019_dir, classes=("mel",), limit=2)


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


# ----- the four kinds ------------------------------------------------------------------------------
def test_attack_kind_refusal_invocations_and_device(melanomas: list[Any], tmp_path: Path) -> None:
    from dermadv.campaign.runner import run_campaign

    out = tmp_path / "attack"
    opts = {"eps": [2]}
    first = run_campaign(tiny_model(), melanomas, out, ["fgsm"], attack_options=opts, progress=False)
    assert first.ran == 2
    info = read_run(out)
    assert info["kind"] == "attack" and info["provenance"]["versions"]["torch"]
    assert info["provenance"]["data"]["n_selected"] == 2
    with pytest.raises(DataError, match=r"holds an attack run with different settings \(seed: 0 -> 1\)"):
        run_campaign(tiny_model(), melanomas, out, ["fgsm"], seed=1, attack_options=opts, progress=False)
    # another device string and inference batch size: resumes, nothing to redo
    again = run_campaign(
        tiny_model("cpu:0", 2), melanomas, out, ["fgsm"], attack_options=opts, progress=False
    )
    assert (again.already_done, again.ran) == (2, 0)
    info = read_run(out)
    assert len(info["invocations"]) == 2
    assert [i["options"]["model.device"] for i in info["invocations"]] == ["cpu", "cpu:0"]
    # a record written before run records had one shape (model keys already dropped) still resumes
    legacy = {k: v for k, v in info.items() if k not in ("schema", "provenance", "invocations")}
    legacy["kind"] = "dermadv-attack-campaign"
    legacy["settings"]["model"] = {
        k: v for k, v in legacy["settings"]["model"].items() if k not in ("device", "batch_size")
    }
    (out / "run.json").write_text(json.dumps(legacy))
    third = run_campaign(tiny_model(), melanomas, out, ["fgsm"], attack_options=opts, progress=False)
    assert third.ran == 0 and read_run(out)["kind"] == "attack" and read_run(out)["schema"] == 1


def test_sweep_kind_refusal_invocations_and_device(mel_nv: list[Any], tmp_path: Path) -> None:
    from dermadv.perturb.sweep import run_sweep

    out = tmp_path / "sweep"
    first = run_sweep(tiny_model(), mel_nv, out, "rot180", progress=False, data_info={"path": "/d"})
    assert first.computed == ["none", "rot:180"]
    info = read_run(out)
    assert info["kind"] == "sweep" and info["status"] == "complete"
    assert info["scope"]["perturbations"] == ["none", "rot:180"]
    with pytest.raises(DataError, match=r"different settings \(threshold: 0\.5 -> 0\.6\)"):
        run_sweep(
            tiny_model(), mel_nv, out, "rot180", threshold=0.6, progress=False, data_info={"path": "/d"}
        )
    with pytest.raises(DataError, match=r"different settings \(data\.hash: "):
        run_sweep(tiny_model(), mel_nv[:6], out, "rot180", progress=False, data_info={"path": "/d"})
    # started on "cpu" with batch 4, resumed on "cpu:0" with batch 2: the campaign's decision too
    again = run_sweep(
        tiny_model("cpu:0", 2), mel_nv, out, "rot180", batch_size=2, progress=False, data_info={"path": "/d"}
    )
    assert again.computed == [] and again.rows == first.rows
    info = read_run(out)
    assert len(info["invocations"]) == 2
    assert info["invocations"][1]["options"] == {"inference_batch_size": 2, "model.device": "cpu:0"}


def test_evaluate_kind_refusal(mel_nv: list[Any], tmp_path: Path) -> None:
    from dermadv.evaluate import evaluate_model, write_evaluation

    model = tiny_model()
    out = tmp_path / "eval"
    ev = evaluate_model(model, mel_nv, progress=False)
    write_evaluation(ev, model, out, data={"path": "/d"}, settings={"model": "tiny", "batch_size": 4})
    info = read_run(out)
    assert info["kind"] == "evaluate" and info["settings"]["inference_batch_size"] == 4
    assert info["provenance"]["model_spec"] == "tiny" and info["settings"]["data"]["hash"]
    metrics_before = (out / "metrics.json").read_text()
    other = evaluate_model(model, mel_nv, threshold=0.3, progress=False)
    diff = r"holds an evaluate run with different settings \(threshold: 0\.5 -> 0\.3\)"
    with pytest.raises(DataError, match=diff):
        write_evaluation(other, model, out, data={"path": "/d"})
    assert (out / "metrics.json").read_text() == metrics_before  # refused before writing anything
    write_evaluation(ev, tiny_model("cpu:0", 1), out, data={"path": "/d"}, settings={"batch_size": 1})
    assert len(read_run(out)["invocations"]) == 2


def test_train_kind_refusal_and_extension(isic2019_dir: Path, tmp_path: Path) -> None:
    from dermadv.data import Dataset, load_dataset, make_split
    from dermadv.models.train import TrainSettings, train

    ds = load_dataset(isic2019_dir, progress=False)
    sub = select_samples(ds, classes=("mel", "nv"), limit=16)
    split = tmp_path / "split.csv"
    make_split(Dataset(root=ds.root, layout=ds.layout, samples=sub), val_fraction=0.4, seed=0).write(split)
    out = tmp_path / "train"

    def settings(**kw: Any) -> TrainSettings:
        base = {"arch": "resnet18", "weights": "none", "image_size": 32, "batch_size": 4, "device": "cpu"}
        return TrainSettings(data=str(isic2019_dir), split=str(split), out=str(out), **{**base, **kw})

    train(settings(epochs=1), progress=False, log=lambda m: None)
    info = read_run(out)
    assert info["kind"] == "train" and info["summary"]["epochs_run"] == 1
    assert info["settings"]["batch_size"] == 4 and info["settings"]["data"]["train_hash"]
    # more epochs extend the run: a second invocation
    train(settings(epochs=2), progress=False, log=lambda m: None)
    info = read_run(out)
    assert len(info["invocations"]) == 2 and info["summary"]["epochs_run"] == 2
    # a changed hyper-parameter is refused, by the checkpoint check and, without it, by run.json
    with pytest.raises(DermadvError, match="lr: 0.001 -> 0.01"):
        train(settings(epochs=2, lr=0.01), progress=False, log=lambda m: None)
    (out / "last.pt").unlink()
    with pytest.raises(DataError, match=r"holds a train run with different settings \(batch_size: 4 -> 8\)"):
        train(settings(epochs=2, batch_size=8), progress=False, log=lambda m: None)


def test_report_reads_the_kind(mel_nv: list[Any], tmp_path: Path) -> None:
    from dermadv.report.runs import detect_run

    RunDir.open(tmp_path / "a", "attack", {})
    assert detect_run(tmp_path / "a").kinds == ["attack"]  # from run.json, not from files
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "run.json").write_text(json.dumps({"settings": {}}))  # no kind: sniff the files
    (legacy / "perturbation.json").write_text(json.dumps({"rows": []}))
    (legacy / "metrics.json").write_text("{}")
    assert detect_run(legacy).kinds == ["evaluation", "perturbation"]
    (legacy / "run.json").write_text(json.dumps({"kind": "robustness"}))
    with pytest.raises(DataError, match="a 'robustness' run; reports cover"):
        detect_run(legacy)


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
