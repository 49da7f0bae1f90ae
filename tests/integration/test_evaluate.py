"""End to end on real ISIC images: `dermadv data split` -> `dermadv train` -> `dermadv evaluate`, all through
the real CLI, then every output checked for consistency (and against scikit-learn and the ISIC scorer)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score, roc_auc_score

from cli_support import run_cli
from dermadv.errors import DermadvError

torch.set_num_threads(1)  # the shared 2-core test machine is oversubscribed: 1 thread is fastest


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> dict:
    """Split all 400 melanoma/naevus images of the ISIC 2019 dev set 80/20 and train a small ResNet-18."""
    root = tmp_path_factory.mktemp("e2e")
    t0 = time.time()
    split = root / "split.csv"
    info = json.loads(
        run_cli(["data", "split", str(isic2019_dir), "--out", str(split), "--seed", "0", "--json"])
    )
    assert info["counts"]["val"] == {"mel": 40, "nv": 40}
    run = root / "run"
    summary = json.loads(
        run_cli(
            [
                "train",
                "--data",
                str(isic2019_dir),
                "--split",
                str(split),
                "--out",
                str(run),
                "--arch",
                "resnet18",
                "--weights",
                "none",
                "--image-size",
                "64",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--lr",
                "0.01",
                "--no-progress",
                "--json",
            ]
        )
    )
    t_train = time.time() - t0
    return {"root": root, "split": split, "run": run, "summary": summary, "train_seconds": t_train}


def read_predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_end_to_end_split_train_evaluate(
    trained: dict, isic2019_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, split = trained["run"], trained["split"]
    for name in ("best.pt", "last.pt", "history.csv", "history.json", "train.json"):
        assert (run / name).is_file(), name
    assert trained["summary"]["epochs_run"] == 2 and trained["summary"]["best_epoch"] in (1, 2)

    t0 = time.time()
    out = trained["root"] / "eval"
    summary = json.loads(
        run_cli(
            [
                "evaluate",
                "--model",
                str(run / "best.pt"),
                "--data",
                str(isic2019_dir),
                "--split",
                str(split),
                "--out",
                str(out),
                "--isic-submission",
                "--no-progress",
                "--json",
            ]
        )
    )
    t_eval = time.time() - t0
    for name in (
        "predictions.csv",
        "metrics.json",
        "roc.png",
        "confusion.txt",
        "confusion.json",
        "isic_submission.csv",
    ):
        assert (out / name).is_file(), name

    # predictions.csv: one row per val image, probabilities sum to 1, score and prediction consistent.
    rows = read_predictions(out / "predictions.csv")
    assert len(rows) == 80 == summary["n"]
    assert {r["diagnosis"] for r in rows} == {"mel", "nv"}
    p = np.array([[float(r["p_mel"]), float(r["p_nv"])] for r in rows])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    score = np.array([float(r["melanoma_score"]) for r in rows])
    np.testing.assert_allclose(score, p[:, 0], atol=1e-6)  # binary model: score = P(melanoma)
    assert [r["predicted"] for r in rows] == ["melanoma" if s >= 0.5 else "benign" for s in score]

    # The metrics equal scikit-learn's on predictions.csv.
    y = np.array([r["diagnosis"] == "mel" for r in rows], dtype=int)
    pred = (score >= 0.5).astype(int)
    assert summary["auc"]["value"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert summary["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert summary["sensitivity"]["value"] == pytest.approx(recall_score(y, pred), abs=1e-12)
    assert summary["specificity"]["value"] == pytest.approx(recall_score(y, pred, pos_label=0), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert summary["confusion"] == {"tp": tp, "fn": fn, "fp": fp, "tn": tn}
    for key in ("auc", "accuracy", "sensitivity", "specificity"):
        assert 0 <= summary[key]["ci_low"] <= summary[key]["value"] <= summary[key]["ci_high"] <= 1

    # metrics.json records what produced the numbers.
    record = json.loads((out / "metrics.json").read_text())
    assert record["metrics"]["auc"]["method"].startswith("DeLong")
    assert record["model"]["checkpoint"]["arch"] == "resnet18"
    assert record["model"]["checkpoint"]["training"]["lr"] == 0.01
    assert record["data"]["subset"] == "val" and len(record["data"]["hash"]) == 16
    assert record["versions"]["torch"] == torch.__version__
    assert json.loads((out / "confusion.json").read_text()) == summary["confusion"]
    with Image.open(out / "roc.png") as im:
        assert im.format == "PNG" and im.size[0] >= 400

    # The checkpoint describes itself and loads alone through the registry; it reproduces the CSV.
    from dermadv.models.registry import load_model

    model = load_model(str(run / "best.pt"))
    d = model.describe()
    assert d["classes"] == ["mel", "nv"] and d["input_size"] == [64, 64] and d["decoder"] == "pil"
    ck = d["checkpoint"]
    assert ck["data"]["split_hash"] and ck["data"]["n_val"] == 80 and ck["versions"]["dermadv"]
    assert ck["metrics"]["auc"]["value"] == pytest.approx(trained["summary"]["best_val"]["auc"]["value"])
    # Validation during training used exactly the evaluation pipeline: same AUC.
    assert ck["metrics"]["auc"]["value"] == pytest.approx(summary["auc"]["value"], abs=1e-9)
    first = [r["image_id"] for r in rows[:4]]
    images = [model.load_image(str(isic2019_dir / "images" / f"{i}.jpg")) for i in first]
    np.testing.assert_allclose(model.predict_proba(images), p[:4], atol=1e-6)

    # The ISIC 2019 submission passes the official scorer's parser and row validation, carries the model's
    # probabilities exactly (no rounding: ties would change the ranking), and the official scorer's MEL AUC
    # equals dermadv's auc_raw_p_mel: both rank the same exact numbers, however saturated the model is.
    # (Full scoring needs every category present in the truth, which a melanoma/naevus set is not.)
    import pandas as pd
    from isic_challenge_scoring import metrics as isic_metrics
    from isic_challenge_scoring.load_csv import parse_csv, parse_truth_csv, sort_rows, validate_rows
    from scipy.stats import rankdata

    from dermadv.metrics import delong_auc_ci

    # isic-challenge-scoring 5.6 calls DataFrame.applymap, renamed DataFrame.map in pandas 2.1, gone in 3.
    monkeypatch.setattr(pd.DataFrame, "applymap", pd.DataFrame.map, raising=False)
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    gt = {r["image"]: r for r in csv.DictReader((isic2019_dir / "ISIC_2019_Training_GroundTruth.csv").open())}
    truth_csv = "image," + ",".join(columns) + "\n"
    truth_csv += "".join(
        r["image_id"] + "," + ",".join(gt[r["image_id"]][c] for c in columns) + "\n" for r in rows
    )
    truth_p, weights = parse_truth_csv(io.StringIO(truth_csv))
    with (out / "isic_submission.csv").open() as fh:
        pred_p = parse_csv(fh, truth_p.columns)
    validate_rows(truth_p, pred_p)
    sort_rows(truth_p)
    sort_rows(pred_p)
    sub = {r["image"]: r for r in read_predictions(out / "isic_submission.csv")}
    for r in rows:  # lossless: the submission's numbers are exactly predictions.csv's (clipped to [0, 1])
        assert float(sub[r["image_id"]]["MEL"]) == min(1.0, float(r["p_mel"]))
        assert float(sub[r["image_id"]]["NV"]) == min(1.0, float(r["p_nv"]))
    assert all(float(r[c]) == 0.0 for r in sub.values() for c in columns[2:])
    isic_auc = isic_metrics.auc(truth_p["MEL"], pred_p["MEL"], weights["score_weight"])
    raw = record["metrics"]["auc_raw_p_mel"]
    assert summary["auc_raw_p_mel"]["value"] == raw["value"]
    assert isic_auc == pytest.approx(raw["value"], abs=1e-12)
    y_sub = (truth_p["MEL"].to_numpy() == 1.0).astype(int)
    assert isic_auc == pytest.approx(delong_auc_ci(y_sub, pred_p["MEL"].to_numpy())["value"], abs=1e-12)
    assert 0 <= raw["ci_low"] <= raw["value"] <= raw["ci_high"] <= 1 and raw["method"].startswith("DeLong")
    # The headline (melanoma vs naevus) ranks p_mel/(p_mel+p_nv); named as such, equal to "auc".
    head = record["metrics"]["auc_melanoma_vs_naevus"]
    assert head["value"] == summary["auc"]["value"] and "p_mel / (p_mel + p_benign)" in head["definition"]
    # Binary model: the two coincide whenever the two scores rank the cases the same way (float
    # rounding of p_mel + p_nv != 1 may reorder near-ties of a saturated model, so only then).
    p_mel = np.array([float(r["p_mel"]) for r in rows])
    if (rankdata(score) == rankdata(p_mel)).all():
        assert raw["value"] == pytest.approx(head["value"], abs=1e-12)

    auc = summary["auc"]
    print(
        f"\nE2E: split+train {trained['train_seconds']:.1f} s, evaluate {t_eval:.1f} s, "
        f"val AUC {auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]"
    )


def test_evaluate_other_classes_excluded_and_text_output(trained: dict, isic2019_dir: Path) -> None:
    """Without a split: all diagnoses are predicted; benign keratoses are written but left out of metrics."""
    gt = list(csv.DictReader((isic2019_dir / "ISIC_2019_Training_GroundTruth.csv").open()))
    bkl = [r["image"] for r in gt if r["BKL"] == "1.0"][:2]
    mel = [r["image"] for r in gt if r["MEL"] == "1.0"][:3]
    nv = [r["image"] for r in gt if r["NV"] == "1.0"][:3]
    out = trained["root"] / "eval_ids"
    text = run_cli(
        [
            "evaluate",
            "--model",
            str(trained["run"] / "best.pt"),
            "--data",
            str(isic2019_dir),
            "--ids",
            ",".join(bkl + mel + nv),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert "auc" in text and "sensitivity" in text and "2 not melanoma/naevus" in text
    rows = read_predictions(out / "predictions.csv")
    assert [r["image_id"] for r in rows] == bkl + mel + nv
    assert [r["in_metrics"] for r in rows] == ["0", "0"] + ["1"] * 6
    record = json.loads((out / "metrics.json").read_text())
    assert record["metrics"]["n"] == 6 and record["data"]["excluded_from_metrics"] == {"bkl": 2}


def test_evaluate_errors(trained: dict, isic2019_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DermadvError, match="all melanoma"):
        gt = list(csv.DictReader((isic2019_dir / "ISIC_2019_Training_GroundTruth.csv").open()))
        mel = [r["image"] for r in gt if r["MEL"] == "1.0"][:3]
        run_cli(
            [
                "evaluate",
                "--model",
                str(trained["run"] / "best.pt"),
                "--data",
                str(isic2019_dir),
                "--ids",
                ",".join(mel),
                "--no-progress",
            ]
        )
    with pytest.raises(DermadvError, match="--isic-submission needs --out"):
        run_cli(
            [
                "evaluate",
                "--model",
                str(trained["run"] / "best.pt"),
                "--data",
                str(isic2019_dir),
                "--isic-submission",
            ]
        )
    # Out-of-range settings are clear errors, not a traceback (nan) or silently ignored (0, 2).
    model = str(trained["run"] / "best.pt")
    for option, value, match in (
        ("--threshold", "nan", "--threshold must be between 0 and 1"),
        ("--threshold", "2", "--threshold must be between 0 and 1"),
        ("--batch-size", "0", "--batch-size must be a positive integer"),
        ("--device", "bogus", "is not a torch device"),
    ):
        with pytest.raises(DermadvError, match=match):
            run_cli(["evaluate", "--model", model, "--data", str(isic2019_dir), option, value, "--limit=4"])
    if not torch.cuda.is_available():
        with pytest.raises(DermadvError, match="CUDA is not available"):
            run_cli(["evaluate", "--model", model, "--data", str(isic2019_dir), "--device", "cuda"])
    # "auto" (as in `dermadv train`) means CUDA when available, else the CPU.
    auto = ["evaluate", "--model", model, "--data", str(isic2019_dir), "--device", "auto", "--limit=4"]
    assert "auc" in json.loads(run_cli([*auto, "--json"]))
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    with pytest.raises(DermadvError, match="file.txt: exists and is not a directory"):
        run_cli([*auto, "--out", str(not_a_dir)])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DermadvError, match="bad.pt"):
        run_cli(["evaluate", "--model", str(bad), "--data", str(isic2019_dir)])


def test_evaluation_resumes_from_saved_predictions(trained: dict, isic2019_dir: Path, tmp_path: Path) -> None:
    from dermadv.data import select_samples
    from dermadv.evaluate import PartialPredictions, evaluate_model, write_evaluation
    from dermadv.models.registry import load_model

    model = load_model(str(trained["run"] / "best.pt"))
    samples = select_samples(isic2019_dir, split=trained["split"], subset="val", limit=12)
    ref = evaluate_model(model, samples, batch_size=4, progress=False)

    # As if a previous run was killed after 5 images (and mid-way through writing the 6th line).
    partial = PartialPredictions(tmp_path, model, samples)
    partial.start(keep=False)
    stored = np.tile([0.25, 0.75], (5, 1))
    partial.append(samples[:5], stored)
    with partial.path.open("a") as fh:
        fh.write('{"id": "' + samples[5].image_id + '", "p": [0.1')
    ev = evaluate_model(model, samples, batch_size=4, progress=False, resume_dir=tmp_path)
    assert ev.extra == {"resumed_predictions": 5}
    np.testing.assert_allclose(ev.probs[:5], stored)  # reused, not recomputed
    np.testing.assert_allclose(ev.probs[5:], ref.probs[5:], atol=1e-6)
    write_evaluation(ev, model, tmp_path)
    assert not partial.path.exists()  # finished: nothing left to resume

    # Saved predictions of another image list (or model) are not reused.
    other = PartialPredictions(tmp_path, model, samples[:6])
    other.start(keep=False)
    other.append(samples[:5], stored)
    ev = evaluate_model(model, samples, batch_size=4, progress=False, resume_dir=tmp_path)
    assert ev.extra == {} and np.allclose(ev.probs, ref.probs, atol=1e-6)


def test_predict_samples_resizes_while_loading(trained: dict, isic2019_dir: Path) -> None:
    """Only images at the model's input size reach the model: a batch of full-size originals is never
    held in memory, and the probabilities equal those of predicting the decoded originals directly."""
    from dermadv.data import select_samples
    from dermadv.evaluate import predict_samples
    from dermadv.models.registry import load_model

    model = load_model(str(trained["run"] / "best.pt"))
    samples = select_samples(isic2019_dir, limit=6)
    originals = [model.load_image(str(s.path)) for s in samples]
    assert all(im.shape[:2] != model.input_size for im in originals)  # the dev images are 256 px
    direct = model.predict_proba(originals)
    seen: list[tuple[int, ...]] = []
    predict = model.predict_proba

    def recording(images, metadata=None, batch_size=None):
        seen.extend(np.asarray(im).shape[:2] for im in images)
        return predict(images, metadata=metadata, batch_size=batch_size)

    model.predict_proba = recording  # type: ignore[method-assign]
    probs = predict_samples(model, samples, batch_size=4, progress=False)
    assert len(seen) == 6 and set(seen) == {tuple(model.input_size)}
    np.testing.assert_allclose(probs, direct, atol=1e-6)
