"""Splits are verified (issue 16, item 4): an edited split (rows no longer hash to the sidecar's split_hash)
and a lesion leak (one lesion in two subsets) are refused unless --allow-edited-split, which run.json
records; `dermadv data split` warns about the rows and undecodable images it leaves out."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dermadv.data import load_dataset, make_split, read_split, select_samples
from dermadv.errors import DataError

MODEL = Path(__file__).resolve().parents[1] / "golden" / "tiny_cnn.pt"
HAM_COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def ham_set(
    root: Path, n: int = 6, lesions: dict[int, str] | None = None, extra: list[list[str]] | None = None
) -> Path:
    """``n`` synthetic melanomas and ``n`` naevi in the HAM10000 layout; ``lesions`` overrides the
    lesion id of image i (else each image is its own lesion); ``extra`` rows are appended as they are."""
    from dermadv.synthetic import GROUND_TRUTH_CSV, METADATA_CSV, generate_dataset

    generate_dataset(root, n_melanoma=n, n_naevus=n, size=32, seed=0)
    with open(root / GROUND_TRUTH_CSV, newline="") as fh:
        gt = list(csv.DictReader(fh))
    (root / GROUND_TRUTH_CSV).unlink()
    (root / METADATA_CSV).unlink()
    rows = []
    for i, r in enumerate(gt):
        lesion = (lesions or {}).get(i, f"L{i:03d}")
        dx = "mel" if r["MEL"] == "1.0" else "nv"
        rows.append([lesion, r["image"], dx, "histo", "50", "male", "back"])
    with open(root / "HAM10000_metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HAM_COLUMNS)
        w.writerows(rows + (extra or []))
    return root


def edit_rows(split_csv: Path, n: int, src: str = "train", dst: str = "val") -> list[str]:
    """Move the first ``n`` rows of subset ``src`` to ``dst`` in place; returns their ids."""
    with open(split_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    moved = [r for r in rows if r["subset"] == src][:n]
    for r in moved:
        r["subset"] = dst
    with open(split_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return [r["image_id"] for r in moved]


def invoke(args: list[str]) -> Result:
    from dermadv.cli import app

    return CliRunner().invoke(app, args)


def test_an_edited_split_is_refused_unless_allowed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = load_dataset(ham_set(tmp_path / "data"))
    split_csv = tmp_path / "split.csv"
    make_split(ds, val_fraction=0.3, seed=0).write(split_csv)
    assert read_split(split_csv, ds).edits == []  # as written: verified
    edit_rows(split_csv, 2)

    for reader in (lambda: read_split(split_csv, ds), lambda: read_split(split_csv)):
        with pytest.raises(DataError) as info:
            reader()
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{split_csv}: edited after it was written")
        assert "split.json records split_hash" in message and "--allow-edited-split" in message
        assert "train mel" in message or "train nv" in message  # which counts changed
    with pytest.raises(DataError, match="edited after it was written"):
        select_samples(ds, split=split_csv, subset="val")

    with caplog.at_level(logging.WARNING, logger="dermadv.data"):
        allowed = read_split(split_csv, ds, allow_edited=True)
    assert allowed.edits and "edited after it was written" in allowed.edits[0]
    assert "--allow-edited-split" in caplog.text
    val = select_samples(ds, split=split_csv, subset="val", allow_edited_split=True)
    assert len(val) == len(allowed.val)


def test_a_lesion_leak_is_refused_unless_allowed(tmp_path: Path) -> None:
    ds = load_dataset(ham_set(tmp_path / "data", lesions={0: "L_SHARED", 1: "L_SHARED"}))
    a, b = ds.samples[0].image_id, ds.samples[1].image_id
    split_csv = tmp_path / "hand.csv"  # a split made by hand: no sidecar, so no hash to check
    with open(split_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "diagnosis", "lesion_id", "subset"])
        for s in ds.samples:
            sub = "val" if s.image_id == b or s.image_id in {x.image_id for x in ds.samples[-3:]} else "train"
            w.writerow([s.image_id, s.diagnosis, "", sub])  # no lesion ids in the CSV: the dataset has them
    with pytest.raises(DataError) as info:
        read_split(split_csv, ds)
    assert str(info.value).startswith(
        f"{split_csv}: lesion leak: 1 lesion(s) have images in more than one subset (L_SHARED in train+val)"
    )
    assert read_split(split_csv, ds, allow_edited=True).subsets[a] == "train"
    assert read_split(split_csv).edits == []  # without the dataset nor a lesion_id column: nothing to check

    with open(split_csv, newline="") as fh:  # the CSV's own lesion ids count too
        rows = list(csv.DictReader(fh))
    rows[2]["lesion_id"] = rows[-1]["lesion_id"] = "L_CSV"
    with open(split_csv, "w", newline="") as fh:
        dw = csv.DictWriter(fh, fieldnames=list(rows[0]))
        dw.writeheader()
        dw.writerows(rows)
    with pytest.raises(DataError, match=r"lesion leak: 1 lesion\(s\) .*\(L_CSV in train\+val\)"):
        read_split(split_csv)

    # make_split never leaks a lesion: its split reads back verified
    made = tmp_path / "made.csv"
    make_split(ds, val_fraction=0.3, seed=0).write(made)
    assert read_split(made, ds).edits == []


@pytest.mark.parametrize("command", ["evaluate", "perturb", "attack", "train"])
def test_commands_refuse_an_edited_split(command: str, tmp_path: Path) -> None:
    data = ham_set(tmp_path / "data")
    split_csv = tmp_path / "split.csv"
    make_split(load_dataset(data), val_fraction=0.5, seed=0).write(split_csv)
    edit_rows(split_csv, 2, src="val", dst="train")
    out = tmp_path / "run"
    base = ["--data", str(data), "--split", str(split_csv), "--out", str(out)]
    model = ["--model", str(MODEL)]
    args = {
        "evaluate": ["evaluate", *model, *base, "--no-progress"],
        "perturb": ["perturb", *model, *base, "--perturbations", "none", "--no-progress"],
        "attack": ["attack", *model, *base, "--subset", "val", "--attacks", "color", "--no-progress"],
        "train": ["train", *base, "--arch", "resnet18", "--weights", "none", "--epochs", "1"],
    }[command]
    res = invoke(args)
    assert isinstance(res.exception, DataError), res.output
    assert str(res.exception).startswith(f"{split_csv}: edited after it was written")
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("command", ["evaluate", "perturb"])
def test_allow_edited_split_is_recorded(
    command: str, tmp_path: Path, one_thread: None, caplog: pytest.LogCaptureFixture
) -> None:
    data = ham_set(tmp_path / "data")
    split_csv = tmp_path / "split.csv"
    make_split(load_dataset(data), val_fraction=0.5, seed=0).write(split_csv)
    edit_rows(split_csv, 1, src="val", dst="train")
    out = tmp_path / "run"
    args = [command, "--model", str(MODEL), "--data", str(data), "--split", str(split_csv), "--out", str(out)]
    args += ["--no-progress", "--allow-edited-split"]
    if command == "perturb":
        args += ["--perturbations", "none"]
    with caplog.at_level(logging.WARNING, logger="dermadv.data"):
        res = invoke(args)
    assert res.exit_code == 0, res.output
    assert f"{split_csv}: used as it is (--allow-edited-split): edited after it was written" in caplog.text
    assert json.loads((out / "run.json").read_text())["settings"]["allow_edited_split"] is True
    res = invoke(args[:-3] if command == "perturb" else args[:-1])  # the flag is needed each time
    assert isinstance(res.exception, DataError) and "edited after it was written" in str(res.exception)


def test_data_split_warns_about_what_it_leaves_out(tmp_path: Path) -> None:
    data = ham_set(
        tmp_path / "data", extra=[["L999", "SYN_9999999", "not-a-diagnosis", "histo", "50", "male", "back"]]
    )
    ds = load_dataset(data)
    broken = next(s for s in ds.samples if s.diagnosis == "nv")
    Path(broken.path).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # type: ignore[arg-type]
    out = tmp_path / "split.csv"

    res = invoke(["data", "split", str(data), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert any(
        "1 row(s) with an unknown label left out of the split: SYN_9999999" in line for line in warnings
    ), res.stderr
    assert any(f"1 undecodable image(s) left out of the split: {broken.image_id}" in w for w in warnings)
    summary = json.loads(res.stdout)
    assert summary["left_out"] == {"unknown_label": ["SYN_9999999"], "unreadable_image": [broken.image_id]}
    ids = set(read_split(out).subsets)
    assert broken.image_id not in ids and "SYN_9999999" not in ids and len(ids) == 11

    res = invoke(["data", "split", str(data), "--out", str(tmp_path / "fast.csv"), "--no-verify"])
    assert res.exit_code == 0, res.output
    assert "unknown label" in res.stderr and "undecodable" not in res.stderr
    assert broken.image_id in read_split(tmp_path / "fast.csv").subsets  # --no-verify: not decoded


def test_data_split_keeps_rows_whose_problem_is_only_a_warning(tmp_path: Path) -> None:
    """An EXIF-rotated image is a warning (its row is kept, KEPT_KINDS): it stays in the split and is
    not reported as left out."""
    import io

    from PIL import Image

    data = ham_set(tmp_path / "data")
    ds = load_dataset(data)
    rotated = next(s for s in ds.samples if s.diagnosis == "mel")
    with Image.open(rotated.path) as im:  # type: ignore[arg-type]
        exif = Image.Exif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=90, exif=exif)
    Path(rotated.path).write_bytes(buf.getvalue())  # type: ignore[arg-type]
    out = tmp_path / "split.csv"

    res = invoke(["data", "split", str(data), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["left_out"] == {}
    assert rotated.image_id in read_split(out).subsets
    assert len(read_split(out).subsets) == len(ds.samples)
