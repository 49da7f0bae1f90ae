"""Campaigns on real ISIC images: rows, images, resume after SIGKILL, errors, summaries, black boxes.

The model is a tiny CNN trained for a second on real isic-dev images (64 px) and exported as
TorchScript, so the command line can load it like any user model. Attack budgets are tiny.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from campaign_support import kill_after_rows, train_tiny_torchscript
from dermadv.campaign.runner import job_seed, plan_jobs, read_run_info, run_campaign
from dermadv.campaign.store import ResultsStore
from dermadv.data import select_samples
from dermadv.errors import DataError, ModelError
from dermadv.models.registry import load_model

SIZE = 64
BLACK_BOX = ["pixel", "color", "rotation"]
TINY = {"popsize": 2, "max_generations": 3}
#: Columns that legitimately differ between two runs of the same job (timing).
TIMING = ("seconds", "finished_at")
GT_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"
CORRUPT_ID = "ISIC_9999999"


def _comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    """A 3-layer CNN trained briefly on 160 real images, exported as TorchScript (white-box file)."""
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    return train_tiny_torchscript(
        isic2019_dir, out, size=SIZE, n_images=160, conv_layers=3, epochs=12, batch=32
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    """ISIC 2019 layout with 6 real melanomas (symlinked, not copied) and one truncated JPEG."""
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    mels = select_samples(isic2019_dir, classes=("mel",), limit=6)
    lines = [GT_HEADER]
    for s in mels:
        (root / "images" / f"{s.image_id}.jpg").symlink_to(s.path)
        lines.append(f"{s.image_id},1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n")
    (root / "images" / f"{CORRUPT_ID}.jpg").write_bytes(mels[0].path.read_bytes()[:3000])
    lines.append(f"{CORRUPT_ID},1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n")
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("".join(lines))
    return root


@pytest.fixture(scope="module")
def api_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, data_dir: Path) -> Path:
    """The black-box attacks plus FGSM over 7 images (one corrupt), through the Python API."""
    model = load_model(str(tiny_model))
    samples = select_samples(data_dir, classes=("mel",))
    run = tmp_path_factory.mktemp("runs") / "api"
    out = run_campaign(
        model,
        samples,
        run,
        [*BLACK_BOX, "fgsm"],
        attack_options={**TINY, "eps": [2, 8]},
        data_info={"path": str(data_dir)},
        progress=False,
    )
    assert (out.planned, out.already_done, out.ran) == (28, 0, 28)
    return run


def test_campaign_rows_and_images(api_run: Path, tiny_model: Path, data_dir: Path) -> None:
    model = load_model(str(tiny_model))
    with ResultsStore(api_run, create=False) as store:
        rows = store.rows()
        assert len(store.done_keys()) == len(rows) == 7 * 4
    assert {(r["image_id"], r["attack"]) for r in rows} == {
        (s.image_id, a) for s in select_samples(data_dir, classes=("mel",)) for a in [*BLACK_BOX, "fgsm"]
    }
    # the truncated JPEG: one error row per attack, naming the file and the problem; the run went on
    bad = [r for r in rows if r["image_id"] == CORRUPT_ID]
    assert len(bad) == 4 and all(r["outcome"] == "error" for r in bad)
    assert all(f"{CORRUPT_ID}.jpg" in r["error"] and "truncated" in r["error"] for r in bad)
    good = [r for r in rows if r["image_id"] != CORRUPT_ID]
    assert {r["outcome"] for r in good} <= {"success", "failure", "misclassified"}
    assert {r["outcome"] for r in good} & {"success", "failure"}, "no image was attacked at all"
    for r in good:
        assert r["seed"] == job_seed(0, r["image_id"], r["attack"])
        original = np.asarray(Image.open(api_run / r["original_path"]))
        expected = model.prepare(model.load_image(str(data_dir / "images" / f"{r['image_id']}.jpg")))[0]
        np.testing.assert_array_equal(original, expected)  # lossless, at the model's input size
        if r["outcome"] == "misclassified":
            assert r["adversarial_path"] is None and r["final_probs"] is None
            assert r["initial_conf"] <= 0.5 and r["queries"] == 1
            continue
        adv = np.asarray(Image.open(api_run / r["adversarial_path"]))
        assert adv.shape == (SIZE, SIZE, 3) and adv.dtype == np.uint8
        # the saved PNG is exactly the image that got the stored final probabilities
        np.testing.assert_allclose(model.predict_proba(adv[None])[0], r["final_probs"], atol=1e-5)
        assert (r["outcome"] == "success") == (r["final_probs"][1] > r["final_probs"][0])
        assert r["initial_conf"] > 0.5 and r["queries"] > 1
    info = read_run_info(api_run)
    assert info["model_description"]["name"] == "tiny-cnn"
    assert info["settings"]["attacks"]["pixel"]["search"]["popsize"] == 2
    assert info["kind"] == "attack" and info["provenance"]["versions"]["dermadv"] and info["settings_hash"]


def test_batched_images_give_the_same_results(
    api_run: Path, tiny_model: Path, data_dir: Path, tmp_path: Path
) -> None:
    model = load_model(str(tiny_model))
    samples = select_samples(data_dir, classes=("mel",))
    run_campaign(
        model,
        samples,
        tmp_path / "b",
        [*BLACK_BOX, "fgsm"],
        batch_images=3,
        attack_options={**TINY, "eps": [2, 8]},
        data_info={"path": str(data_dir)},
        progress=False,
    )
    with ResultsStore(api_run, create=False) as one, ResultsStore(tmp_path / "b", create=False) as many:
        a, b = one.rows(), many.rows()
    assert [(r["image_id"], r["attack"], r["outcome"], r["queries"]) for r in a] == [
        (r["image_id"], r["attack"], r["outcome"], r["queries"]) for r in b
    ]
    for ra, rb in zip(a, b, strict=True):
        if ra["final_conf"] is not None:
            assert rb["final_conf"] == pytest.approx(ra["final_conf"], abs=1e-4)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dermadv.cli", "attack", *args]


def test_resume_after_sigkill(tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    settings = ["--popsize", "4", "--max-generations", "3", "--threshold", "0.99"]
    cmd = _cli(
        "--model",
        str(tiny_model),
        "--data",
        str(data_dir),
        "--attacks",
        ",".join(BLACK_BOX),
        "--out",
        str(run),
        "--no-progress",
        *settings,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_after_rows(proc, run / "results.sqlite")
    with ResultsStore(run, create=False) as store:
        before = {(r["image_id"], r["attack"]): r for r in store.rows()}
    assert 2 <= len(before) < 21, "the kill should leave the campaign unfinished"

    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["already_done"] == len(before) and report["ran"] == 21 - len(before)
    with ResultsStore(run, create=False) as store:
        after = store.rows()
    keys = [(r["image_id"], r["attack"]) for r in after]
    assert len(keys) == len(set(keys)) == 21  # 7 images x 3 attacks: none missing, none twice
    for r in after:  # rows committed before the kill are untouched
        if (r["image_id"], r["attack"]) in before:
            assert r == before[(r["image_id"], r["attack"])]
        if r["adversarial_path"]:
            assert (run / r["adversarial_path"]).is_file()

    # an uninterrupted run with the same settings gives the same rows: nothing was done differently
    model = load_model(str(tiny_model))
    ref = tmp_path / "ref"
    run_campaign(
        model,
        select_samples(data_dir, classes=("mel",)),
        ref,
        BLACK_BOX,
        attack_options={"popsize": 4, "max_generations": 3, "threshold": 0.99},
        data_info={"path": str(data_dir)},
        progress=False,
    )
    with ResultsStore(ref, create=False) as store:
        assert [_comparable(r) for r in store.rows()] == [_comparable(r) for r in after]


def test_changed_settings_are_refused(api_run: Path, tiny_model: Path, data_dir: Path) -> None:
    model = load_model(str(tiny_model))
    samples = select_samples(data_dir, classes=("mel",))
    with pytest.raises(DataError, match=r"different settings \(seed: 0 -> 1\)"):
        run_campaign(
            model,
            samples,
            api_run,
            BLACK_BOX,
            seed=1,
            attack_options=TINY,
            data_info={"path": str(data_dir)},
            progress=False,
        )
    with pytest.raises(DataError, match=r"attacks\.pixel\.search\.popsize: 2 -> 3"):
        run_campaign(
            model,
            samples,
            api_run,
            BLACK_BOX,
            attack_options={**TINY, "popsize": 3},
            data_info={"path": str(data_dir)},
            progress=False,
        )
    # the same settings resume (nothing to do); a narrower selection is fine too
    out = run_campaign(
        model,
        samples[:2],
        api_run,
        ["color"],
        attack_options=TINY,
        data_info={"path": str(data_dir)},
        progress=False,
    )
    assert (out.planned, out.ran) == (2, 0)


def test_summarize_cli(api_run: Path, tmp_path: Path) -> None:
    import csv

    from typer.testing import CliRunner

    from dermadv.cli import app

    res = CliRunner().invoke(app, ["attack", "summarize", str(api_run), "--json", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    with ResultsStore(api_run, create=False) as store:
        rows = store.rows()
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [t["attack"] for t in table] == sorted(BLACK_BOX + ["fgsm"])
    for t, s in zip(table, summary["attacks"], strict=True):
        mine = [r for r in rows if r["attack"] == t["attack"]]
        n = {
            o: sum(r["outcome"] == o for r in mine) for o in ("success", "failure", "misclassified", "error")
        }
        assert int(t["images"]) == len(mine) == 7
        assert int(t["attempted"]) == n["success"] + n["failure"] == s["attempted"]
        assert int(t["successful"]) == n["success"] and int(t["misclassified"]) == n["misclassified"]
        assert int(t["errors"]) == n["error"] == 1
        assert int(t["attempted"]) + int(t["misclassified"]) + int(t["errors"]) == len(mine)
        if s["attempted"]:
            assert s["ci_low"] <= s["success_rate"] <= s["ci_high"]
            assert s["success_rate"] == pytest.approx(n["success"] / s["attempted"])
    with Image.open(tmp_path / "heatmap.png") as im:
        assert im.format == "PNG" and im.size[0] > 300


CALLABLE = '''
import torch

_net = torch.jit.load({path!r})


def predict(images):
    """Black box: uint8 N x 64 x 64 x 3 -> probabilities (no gradients exposed)."""
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        return torch.softmax(_net(x), dim=1).numpy()


predict.classes = ("mel", "nv")
predict.input_size = (64, 64)
'''


def test_black_box_callable_model(api_run: Path, tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "blackbox.py"
    source.write_text(CALLABLE.format(path=str(tiny_model)))
    model = load_model(f"{source}:predict")
    assert not model.white_box
    samples = select_samples(data_dir, classes=("mel",))
    with pytest.raises(ModelError, match="fgsm.*black-box"):
        run_campaign(model, samples, tmp_path / "refused", ["fgsm", "pixel"], progress=False)
    assert not (tmp_path / "refused" / "results.sqlite").exists()  # refused before anything ran
    out = run_campaign(
        model,
        samples,
        tmp_path / "bb",
        None,
        attack_options=TINY,
        data_info={"path": str(data_dir)},
        progress=False,
    )
    assert out.attacks == BLACK_BOX and "fgsm" in out.notes[0]

    # the same network behind a black-box callable: the same code gives the same results
    # (up to float32 rounding of the two normalisations, hence the fitness compared approximately)
    def key(r: dict) -> tuple:
        params = {k: v for k, v in r["params"].items() if k != "fitness"}
        return (
            r["image_id"],
            r["attack"],
            r["outcome"],
            r["queries"],
            params,
        )

    with ResultsStore(tmp_path / "bb", create=False) as bb, ResultsStore(api_run, create=False) as wb:
        got, want = bb.rows(), [r for r in wb.rows() if r["attack"] in BLACK_BOX]
    assert [key(r) for r in got] == [key(r) for r in want]
    np.testing.assert_allclose(
        [r["final_conf"] or 0 for r in got], [r["final_conf"] or 0 for r in want], atol=1e-5
    )


def test_plan_skips_done_jobs_and_seeds_are_stable(data_dir: Path) -> None:
    samples = select_samples(data_dir, classes=("mel",))
    jobs = plan_jobs(samples, BLACK_BOX, seed=0, done={(samples[0].image_id, "pixel")})
    assert len(jobs) == len(samples) * 3 - 1
    shuffled = plan_jobs(samples[::-1], BLACK_BOX[::-1], seed=0)
    assert {j.key: j.seed for j in jobs} == {
        j.key: j.seed for j in shuffled if j.key in {k.key for k in jobs}
    }
    assert len({j.seed for j in shuffled}) == len(shuffled)
    assert job_seed(1, samples[0].image_id, "pixel") != job_seed(0, samples[0].image_id, "pixel")


@pytest.mark.slow
def test_sklesion_keras_model(ham10000_dir: Path, tmp_path: Path) -> None:
    """The published Keras 3 model (7 classes + metadata) through the same campaign code."""
    model = load_model("sklesion")
    assert model.needs_metadata
    samples = select_samples(ham10000_dir, classes=("mel",), limit=1)
    run_campaign(
        model,
        samples,
        tmp_path / "sk",
        ["color"],
        attack_options={"popsize": 1, "max_generations": 1},
        data_info={"path": str(ham10000_dir)},
        progress=False,
    )
    with ResultsStore(tmp_path / "sk", create=False) as store:
        (row,) = store.rows()
    assert row["outcome"] in ("success", "failure", "misclassified")
    assert len(row["initial_probs"]) == 7
    # the stored initial probabilities are the model's, with the image's clinical metadata
    image = model.prepare(model.load_image(str(samples[0].path)))
    np.testing.assert_allclose(
        model.predict_proba(image, [samples[0].metadata()])[0], row["initial_probs"], atol=1e-4
    )
