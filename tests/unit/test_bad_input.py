"""Hostile input without real data (issue 16, items 2, 5 and 6): decompression bombs, 16-bit PNGs,
corrupt JPEG scans, full disks, out-of-vocabulary metadata, undecodable label CSVs, symlink loops.
Every failure is one line, and nothing dies on one image. On real images and sklesion:
tests/integration/test_bad_input.py."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermadv.data import check_dataset, load_dataset, select_samples
from dermadv.data.images import check_image_bytes, decode_bytes
from dermadv.errors import DataError

torch.set_num_threads(1)

MODEL = "models_support:mean_colour_probs"  # pil decoder, 48 x 48 input


def jpeg_bytes(size: int = 32, seed: int = 0, exif_orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    if exif_orientation is None:
        im.save(buf, "JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def bomb_jpeg(side: int = 20000) -> bytes:
    """A tiny JPEG whose frame header (SOF0) claims ``side`` x ``side`` pixels."""
    data = bytearray(jpeg_bytes(16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    return bytes(data)


def flipped_jpeg(n: int = 30, seed: int = 0) -> bytes:
    """A JPEG with ``n`` scan bytes flipped (after the start-of-scan header, before the end marker)."""
    data = bytearray(jpeg_bytes(64, seed))
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(start, len(data) - 2), size=n, replace=False):
        data[i] ^= 0xFF if data[i] != 0x00 else 0x5A
    return bytes(data)


def folders_dataset(root: Path, files: dict[str, bytes]) -> Path:
    """Class folders: ``files`` maps "mel/ISIC_1.jpg" -> bytes."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple:
    """``dermadv ARGS`` through the real entry point, in this process: (exit code, stdout, stderr)."""
    from dermadv import cli

    monkeypatch.setattr(sys, "argv", ["dermadv", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


# ----- decompression bombs ------------------------------------------------------------------------


def test_decompression_bomb_is_a_data_error_with_both_decoders() -> None:
    data = bomb_jpeg()
    for decoder in ("pil", "tf"):
        with pytest.raises(DataError, match="bomb.jpg: image too large to decode.*decompression bomb"):
            decode_bytes(data, decoder=decoder, name="bomb.jpg")


def test_bomb_in_data_check_evaluate_and_attack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = folders_dataset(
        tmp_path / "d",
        {
            "mel/ISIC_1.jpg": bomb_jpeg(),
            "mel/ISIC_2.jpg": jpeg_bytes(48, 2),
            "mel/ISIC_3.jpg": jpeg_bytes(48, 3),
            "nv/ISIC_4.jpg": jpeg_bytes(48, 4),
        },
    )
    bomb = root / "mel" / "ISIC_1.jpg"
    code, out, err = run_main(["data", "check", str(root)], monkeypatch, capsys)
    assert code == 1, err
    lines = [ln for ln in out.splitlines() if "ISIC_1" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"  [unreadable_image] {bomb}: image too large"), out
    # evaluate stops with one line naming the image, exit 2
    code, out, err = run_main(
        ["evaluate", "--model", MODEL, "--data", str(root), "--no-progress"], monkeypatch, capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {bomb}: image too large to decode"), err
    # attack stores an error row for the bomb; the other images run
    run = tmp_path / "run"
    args = ["attack", "--model", MODEL, "--data", str(root), "--out", str(run), "--attacks", "color"]
    args += ["--popsize", "4", "--max-generations", "1", "--no-progress"]
    code, out, err = run_main(args, monkeypatch, capsys)
    assert code in (0, None), err
    with sqlite3.connect(run / "results.sqlite") as conn:
        rows = dict(conn.execute("SELECT image_id, outcome FROM results").fetchall())
        error = conn.execute("SELECT error FROM results WHERE image_id='ISIC_1'").fetchone()[0]
    assert rows["ISIC_1"] == "error" and "image too large to decode" in error
    assert rows["ISIC_2"] != "error" and rows["ISIC_3"] != "error"


# ----- decoding -----------------------------------------------------------------------------------


def test_16_bit_png_is_scaled_not_white() -> None:
    wide = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    img = decode_bytes(buf.getvalue(), name="x.png")
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
    assert not (img == 255).all() and img.min() == 0
    expected = np.rint(wide / 257.0).astype(np.uint8)
    assert np.array_equal(img[..., 0], expected) and np.array_equal(img[..., 2], expected)


def test_flipped_scan_bytes_fail_the_check_with_each_decoder() -> None:
    data = flipped_jpeg()
    decode_bytes(data, decoder="pil", name="f.jpg")  # PIL decodes it silently: what the check must catch
    with pytest.raises(DataError, match=r"f.jpg: corrupt JPEG .*PIL decodes it anyway.*\[decoder pil"):
        check_image_bytes(data, ("pil",), "f.jpg")
    with pytest.raises(DataError, match=r"f.jpg: corrupt JPEG .*\[decoder tf"):
        check_image_bytes(data, ("tf",), "f.jpg")
    assert check_image_bytes(jpeg_bytes(), ("pil", "tf"), "ok.jpg") == []


def test_check_warns_on_tiny_and_exif_rotated_images(tmp_path: Path) -> None:
    root = folders_dataset(
        tmp_path,
        {
            "mel/ISIC_1.jpg": jpeg_bytes(1),
            "mel/ISIC_2.jpg": jpeg_bytes(160, exif_orientation=6),
            "nv/ISIC_3.jpg": jpeg_bytes(160),
        },
    )
    ds = check_dataset(root, progress=False, min_side=112)
    kinds = {p.image_id: p.kind for p in ds.problems}
    assert kinds == {"ISIC_1": "small_image", "ISIC_2": "exif_orientation"}, ds.problems
    assert len(ds) == 3  # warnings keep the images
    msg = {p.image_id: p.message for p in ds.problems}
    assert msg["ISIC_1"].startswith("image is 1 x 1 pixels, far below the model's input size")
    assert "EXIF orientation 6 is not applied" in msg["ISIC_2"]


def test_data_check_with_model_uses_its_decoder_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = folders_dataset(
        tmp_path,
        {"mel/ISIC_1.jpg": flipped_jpeg(), "mel/ISIC_2.jpg": jpeg_bytes(20), "nv/ISIC_3.jpg": jpeg_bytes(48)},
    )
    code, out, err = run_main(["data", "check", str(root), "--model", MODEL, "--json"], monkeypatch, capsys)
    assert code == 1, err
    problems = {p["image_id"]: p for p in json.loads(out)["problems"]}
    assert (
        problems["ISIC_1"]["kind"] == "unreadable_image" and "[decoder pil" in problems["ISIC_1"]["message"]
    )
    assert problems["ISIC_2"]["kind"] == "small_image" and "under 24 px" in problems["ISIC_2"]["message"]
    assert "ISIC_3" not in problems


# ----- writing results ----------------------------------------------------------------------------


def test_full_disk_is_one_line_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import dermadv.evaluate

    root = folders_dataset(
        tmp_path / "d", {"mel/ISIC_1.jpg": jpeg_bytes(48, 1), "nv/ISIC_2.jpg": jpeg_bytes(48, 2)}
    )
    real = dermadv.evaluate.atomic_write_text

    def full(path: str | Path, text: str) -> None:
        if Path(path).name == "metrics.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, text)

    monkeypatch.setattr(dermadv.evaluate, "atomic_write_text", full)
    out = tmp_path / "ev"
    args = ["evaluate", "--model", MODEL, "--data", str(root), "--out", str(out), "--no-progress"]
    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 2, err
    assert err.strip() == (
        f"error: cannot write {out}: No space left on device; check free space/permissions there "
        "(results already written stay valid: rerun the same command to continue)"
    )
    assert (out / "predictions.csv").is_file()  # written before the disk filled: still there, whole


def test_only_output_io_errors_are_turned_into_one_line(tmp_path: Path) -> None:
    from dermadv.cli import output_error_message

    out = tmp_path / "run"
    argv = ["attack", "--out", str(out)]
    denied = PermissionError(errno.EACCES, "Permission denied", str(out / "results.sqlite"))
    assert output_error_message(denied, argv).startswith(f"cannot write {out / 'results.sqlite'}: Permission")
    assert output_error_message(denied, ["attack", f"--out={out}"]) is not None
    parent = PermissionError(errno.EPERM, "Operation not permitted", str(tmp_path))  # creating --out's folder
    assert output_error_message(parent, ["data", "split", "x", "--out", str(out / "s.csv")]) is not None
    # reading an input the user may not read keeps its traceback (not an output problem)
    assert output_error_message(PermissionError(errno.EACCES, "denied", "/etc/model.pt"), argv) is None
    assert output_error_message(FileNotFoundError(errno.ENOENT, "gone", str(out)), argv) is None
    assert output_error_message(ValueError("x"), argv) is None
    full = sqlite3.OperationalError("database or disk is full")
    assert output_error_message(full, argv) == (
        f"cannot write {out}: database or disk is full; check free space/permissions there "
        "(results already written stay valid: rerun the same command to continue)"
    )
    assert output_error_message(sqlite3.OperationalError("no such table: x"), argv) is None


# ----- metadata and label CSVs --------------------------------------------------------------------


def _isic2019(root: Path, meta_rows: list[list[str]]) -> Path:
    from data_support import write_csv

    write_csv(
        root / "ISIC_2019_Training_GroundTruth.csv",
        ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"],
        [[r[0], 1, 0, 0, 0, 0, 0, 0, 0, 0] for r in meta_rows],
    )
    write_csv(
        root / "ISIC_2019_Training_Metadata.csv",
        ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
        meta_rows,
    )
    for r in meta_rows:
        folders_dataset(root, {f"images/{r[0]}.jpg": jpeg_bytes(16)})
    return root


def test_out_of_vocabulary_metadata_is_named_with_image_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _isic2019(
        tmp_path,
        [
            ["ISIC_1", "999", "moon", "L1", "banana"],
            ["ISIC_2", "-5", "anterior torso", "L2", "female"],
            ["ISIC_3", "45", "Head/Neck", "L3", "male"],
        ],
    )
    ds = load_dataset(root, progress=False)
    meta_csv = root / "ISIC_2019_Training_Metadata.csv"
    messages = [str(p) for p in ds.problems]
    ignored = "; ignored (treated as unknown)"
    assert messages[:2] == [
        f"{meta_csv}: line 2 (ISIC_1): age '999' is outside 0..120 years{ignored}",
        f"{meta_csv}: line 2 (ISIC_1): sex 'banana' is not in ISIC's vocabulary (female, male){ignored}",
    ]
    assert messages[2].startswith(f"{meta_csv}: line 2 (ISIC_1): site 'moon' is not in ISIC's vocabulary (")
    assert "anterior torso" in messages[2] and messages[2].endswith(ignored)
    assert messages[3:] == [f"{meta_csv}: line 3 (ISIC_2): age '-5' is outside 0..120 years{ignored}"]
    assert {p.kind for p in ds.problems} == {"bad_metadata"}
    by_id = ds.by_id()
    assert len(ds) == 3  # rows kept, the bad values unknown
    assert by_id["ISIC_1"].metadata() == {"age": None, "sex": None, "site": None}
    assert by_id["ISIC_3"].metadata() == {"age": 45.0, "sex": "male", "site": "Head/Neck"}
    # the warning says what happens: rows kept, not "left out"
    with caplog.at_level(logging.WARNING, logger="dermadv.data"):
        select_samples(ds, classes=None)
    assert "4 problems: 4 bad_metadata; those rows are kept" in caplog.text and "left out" not in caplog.text


def test_sklesion_metadata_errors_are_data_errors_and_validate_counts_nothing() -> None:
    pytest.importorskip("sklesion", reason="sklesion is part of the keras extra")
    from dermadv.errors import MetadataError, ModelError
    from dermadv.models.sklesion import SklesionMetadata

    enc = SklesionMetadata()
    for bad in ({"sex": "banana"}, {"site": "moon"}, {"age": 999}):
        with pytest.raises(MetadataError) as err:
            enc.validate(bad)
        assert isinstance(err.value, DataError) and isinstance(err.value, ModelError)
    enc.validate({"age": 45, "sex": "male", "site": "back"})
    assert enc.counts["images"] == 0 and enc.counts["age_default"] == 0


def test_non_utf8_label_csv_is_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_bytes("image,MEL,NV\nISIC_1,1,0\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"labels.csv: not a UTF-8 text CSV file"):
        load_dataset(tmp_path)


def test_symlink_loop_does_not_hide_class_folders(tmp_path: Path) -> None:
    root = folders_dataset(tmp_path, {"mel/ISIC_1.jpg": jpeg_bytes(), "nv/ISIC_2.jpg": jpeg_bytes()})
    os.symlink(root / "loop", root / "loop")
    ds = load_dataset(root, progress=False)
    assert ds.layout == "folders" and len(ds) == 2
