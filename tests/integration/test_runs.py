"""One run record (dermadv.runs): settings hash, refusal of changed result settings, invocations, kinds,
device-independent resume for sweeps and campaigns alike, and file modes that honour the umask."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dermadv.data import select_samples
from dermadv.errors import DataError, DermadvError
from dermadv.runs.record import (
    RunDir,
    read_run,
)
from models_support import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def mel_nv(isic2019_dir: Path) -> list[Any]:
    samples = select_samples(isic2019_dir, classes=("mel", "nv"), limit=8)
    assert {s.diagnosis for s in samples} == {"mel", "nv"}
    return samples


@pytest.fixture(scope="module")
def melanomas(isic2019_dir: Path) -> list[Any]:
    return select_samples(isic2019_dir, classes=("mel",), limit=2)


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
    # how the arithmetic ran is recorded per invocation, never compared (dermadv.models.accel)
    assert info["invocations"][1]["options"] == {
        "inference_batch_size": 2,
        "model.device": "cpu:0",
        "model.inference.precision": "fp32",
        "model.inference.channels_last": False,
        "model.inference.compile": False,
        "model.inference.cuda_graphs": False,
    }


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
    (legacy / "run.json").write_text(json.dumps({"kind": "calibration"}))  # a kind no report covers
    with pytest.raises(DataError, match="a 'calibration' run; reports cover"):
        detect_run(legacy)
