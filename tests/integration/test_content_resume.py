"""Resume by content (issue 16, item 3): a rerun into the same --out recomputes the rows of an image whose
file was replaced since, says so, and reuses the others. Real ISIC images, the fixed tiny CNN."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

MODEL = Path(__file__).resolve().parents[1] / "golden" / "tiny_cnn.pt"
GT = "ISIC_2019_Training_GroundTruth.csv"


@pytest.fixture
def small_set(isic2019_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """Three melanomas and three naevi copied from the shared ISIC 2019 folder into a dataset of their own."""
    with open(isic2019_dir / GT, newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    mel = sorted(r["image"] for r in rows if float(r["MEL"]) == 1.0)[:3]
    nv = sorted(r["image"] for r in rows if float(r["NV"]) == 1.0)[:3]
    keep = set(mel + nv)
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for image_id in sorted(keep):
        shutil.copyfile(isic2019_dir / "images" / f"{image_id}.jpg", root / "images" / f"{image_id}.jpg")
    with open(root / GT, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(r for r in rows if r["image"] in keep)
    return {"root": root, "mel": mel, "nv": nv}


def _replace(root: Path, image_id: str, with_id: str) -> str:
    """Overwrite ``image_id``'s file with the bytes of ``with_id``'s; returns the new SHA-256."""
    data = (root / "images" / f"{with_id}.jpg").read_bytes()
    (root / "images" / f"{image_id}.jpg").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _invoke(args: list[str]) -> Result:
    from dermadv.cli import app

    res = CliRunner().invoke(app, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res


def _predictions(run: Path) -> dict[str, dict[str, str]]:
    with open(run / "predictions.csv", newline="") as fh:
        return {r["image_id"]: r for r in csv.DictReader(fh)}


def test_evaluate_repredicts_a_replaced_image(
    small_set: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    import dermadv.evaluate

    root, out = small_set["root"], tmp_path / "eval"
    args = ["evaluate", "--model", str(MODEL), "--data", str(root), "--out", str(out), "--no-progress"]

    def killed(*a: object, **k: object) -> None:
        raise RuntimeError("killed before the results were written")

    with monkeypatch.context() as m:  # interrupted after every prediction was saved
        m.setattr(dermadv.evaluate, "write_evaluation", killed)
        with pytest.raises(RuntimeError, match="killed"):
            _invoke(args)
    assert (out / ".predictions.partial.jsonl").is_file()

    x, y = small_set["mel"][0], small_set["nv"][0]
    _replace(root, x, y)
    res = _invoke([*args, "--json"])
    assert f"1 image(s) changed since the last run: recomputed ({x})" in res.stderr
    assert json.loads(res.stdout)["changed_images"] == [x]
    record = json.loads((out / "metrics.json").read_text())
    assert record["resumed_predictions"] == 5 and record["changed_images"] == [x]
    pred = _predictions(out)
    probs = [k for k in pred[x] if k.startswith("p_")]
    # x is now y's bytes (predicted alone, not in a batch of six: equal up to float rounding)
    assert [float(pred[x][k]) for k in probs] == pytest.approx([float(pred[y][k]) for k in probs], abs=1e-6)


def test_sweep_rescores_a_replaced_image(small_set: dict[str, Any], tmp_path: Path, one_thread: None) -> None:
    root, out = small_set["root"], tmp_path / "sweep"
    args = ["perturb", "--model", str(MODEL), "--data", str(root), "--out", str(out)]
    args += ["--perturbations", "rot180", "--no-progress", "--json"]
    _invoke(args)
    files = sorted((out / "perturb").glob("*.json"))
    assert len(files) == 2  # the unmodified set and rot180
    x, y, z = small_set["mel"][0], small_set["nv"][0], small_set["mel"][1]
    for f in files:  # a marker score for z: reused scores keep it, recomputed ones would not
        rec = json.loads(f.read_text())
        rec["scores"][rec["image_ids"].index(z)] = 0.123456
        f.write_text(json.dumps(rec))

    new_sha = _replace(root, x, y)
    res = _invoke(args)
    assert f"1 image(s) changed since the last run: recomputed ({x})" in res.stderr
    assert json.loads(res.stdout)["changed_images"] == [x]
    for f in files:
        rec = json.loads(f.read_text())
        ids = rec["image_ids"]
        assert rec["scores"][ids.index(z)] == 0.123456  # reused
        assert rec["scores"][ids.index(x)] == pytest.approx(rec["scores"][ids.index(y)], abs=1e-6)
        assert rec["image_sha256"][ids.index(x)] == new_sha
    res = _invoke(args)  # nothing changed since: nothing recomputed, nothing said
    assert "changed since" not in res.stderr and json.loads(res.stdout)["changed_images"] == []


def test_attack_reruns_the_rows_of_a_replaced_image(
    small_set: dict[str, Any], tmp_path: Path, one_thread: None
) -> None:
    root, out = small_set["root"], tmp_path / "attack"
    args = ["attack", "--model", str(MODEL), "--data", str(root), "--out", str(out), "--attacks", "color"]
    args += ["--popsize", "5", "--max-generations", "2", "--seed", "0", "--no-progress", "--json"]
    first = json.loads(_invoke(args).stdout)
    assert first["ran"] == 3  # the three melanomas (mel->nv)

    def rows() -> dict[str, dict[str, Any]]:
        con = sqlite3.connect(out / "results.sqlite")
        con.row_factory = sqlite3.Row
        got = {r["image_id"]: dict(r) for r in con.execute("SELECT * FROM results")}
        con.close()
        return got

    before = rows()
    x, y = small_set["mel"][0], small_set["mel"][1]
    assert (
        before[x]["image_sha256"] == hashlib.sha256((root / "images" / f"{x}.jpg").read_bytes()).hexdigest()
    )
    new_sha = _replace(root, x, y)
    res = _invoke(args)
    summary = json.loads(res.stdout)
    assert summary["ran"] == 1 and summary["already_done"] == 2 and summary["changed_images"] == [x]
    assert f"note: 1 image(s) changed since the last run: recomputed ({x}): 1 row(s) deleted" in res.stderr
    after = rows()
    assert after[x]["image_sha256"] == new_sha
    x_probs, y_probs = json.loads(after[x]["initial_probs"]), json.loads(after[y]["initial_probs"])
    assert x_probs == pytest.approx(y_probs, abs=1e-6)  # attacked from y's bytes now
    for other in small_set["mel"][1:]:
        assert after[other] == before[other]  # reused as they were
    referenced = {p for r in after.values() for p in (r["original_path"], r["adversarial_path"]) if p}
    assert {f"images/{p.name}" for p in (out / "images").iterdir()} == referenced  # old PNGs removed


def test_train_refuses_to_resume_over_replaced_images(
    small_set: dict[str, Any], tmp_path: Path, one_thread: None
) -> None:
    from dermadv.errors import DermadvError

    root, out = small_set["root"], tmp_path / "train"
    split = tmp_path / "split.csv"
    _invoke(["data", "split", str(root), "--out", str(split), "--val-fraction", "0.34", "--json"])
    args = ["train", "--data", str(root), "--split", str(split), "--out", str(out), "--arch", "resnet18"]
    args += [
        "--weights",
        "none",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]
    _invoke([*args, "--epochs", "1"])
    from dermadv.data import read_split

    train_ids = [s.image_id for s in read_split(split).train]
    _replace(root, train_ids[0], train_ids[1])
    with pytest.raises(DermadvError, match="train image files changed since the run started"):
        _invoke([*args, "--epochs", "2"])
