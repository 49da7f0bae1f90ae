"""Hostile input on real images and the real sklesion model (issue 16, items 2, 5 and 6): a real JPEG
with flipped scan bytes, out-of-range metadata in an sklesion campaign, sklesion-onnx's metadata note.
Without data: tests/unit/test_bad_input.py."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dermadv.data import Sample, check_dataset, load_dataset
from dermadv.errors import DataError


def _ham(ham10000_dir: Path, diagnosis: str, n: int) -> list[Sample]:
    samples = sorted(load_dataset(ham10000_dir, progress=False).samples, key=lambda s: s.image_id)
    return [s for s in samples if s.diagnosis == diagnosis][:n]


def _flip_scan_bytes(data: bytes, n: int = 30, seed: int = 0) -> bytes:
    out = bytearray(data)
    sos = out.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(out[sos + 2 : sos + 4], "big")
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(start, len(out) - 2), size=n, replace=False):
        out[i] ^= 0xFF if out[i] != 0x00 else 0x5A
    return bytes(out)


def test_real_jpeg_with_flipped_scan_bytes_fails_the_check_for_each_decoder(
    tmp_path: Path, ham10000_dir: Path
) -> None:
    mel, nv = _ham(ham10000_dir, "mel", 1)[0], _ham(ham10000_dir, "nv", 1)[0]
    (tmp_path / "mel").mkdir()
    (tmp_path / "nv").mkdir()
    bad = tmp_path / "mel" / f"{mel.image_id}.jpg"
    bad.write_bytes(_flip_scan_bytes(mel.path.read_bytes()))
    shutil.copy(nv.path, tmp_path / "nv" / f"{nv.image_id}.jpg")
    for decoders in (("pil",), ("tf",), None):  # a PIL-decoder model, sklesion's decoder, every decoder
        ds = check_dataset(tmp_path, progress=False, decoders=decoders)
        assert [s.image_id for s in ds.samples] == [nv.image_id], decoders
        [problem] = ds.problems
        assert problem.kind == "unreadable_image" and problem.path == bad
        assert problem.message.startswith("corrupt JPEG"), problem.message


def test_bad_metadata_is_an_error_row_not_a_stopped_sklesion_campaign(
    sklesion, ham10000_dir: Path, tmp_path: Path
) -> None:
    from dermadv.campaign.runner import run_campaign

    good, bad = _ham(ham10000_dir, "mel", 2)
    bad = replace(bad, age=999.0, sex="banana")
    run_campaign(
        sklesion,
        [good, bad],
        tmp_path / "run",
        ["color"],
        attack_options={"popsize": 2, "max_generations": 1},
        progress=False,
    )
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as conn:
        rows = {i: (o, e) for i, o, e in conn.execute("SELECT image_id, outcome, error FROM results")}
    assert rows[bad.image_id][0] == "error"
    assert (
        rows[bad.image_id][1]
        == f"{bad.image_id}: sklesion: unknown sex 'banana'; expected female, male or unknown"
    )
    assert rows[good.image_id][0] != "error"
    # evaluate names the image before predicting anything
    from dermadv.evaluate import check_metadata

    with pytest.raises(DataError, match=f"image {bad.image_id} .*unknown sex 'banana'"):
        check_metadata(sklesion, [good, bad])


def test_sklesion_onnx_states_the_metadata_defaults_it_used(ham10000_dir: Path) -> None:
    from dermadv.models.registry import load_model

    model = load_model("sklesion-onnx")
    samples = _ham(ham10000_dir, "mel", 2)
    images = [model.load_image(s.path) for s in samples]
    model.predict_proba(images[:1], [samples[0].metadata()])  # HAM10000 rows carry age, sex and site
    model.predict_proba(images[1:])  # no metadata at all: every default
    note = model.describe().get("metadata_defaults_note")
    assert note == "1 of 2 images had no metadata; defaults used for age 1, sex 1, site 1 times", note
