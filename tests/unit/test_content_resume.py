"""Resume by content, without data (issue 16, item 3): file hashes computed once and cached by stat, the
partial predictions and the campaign store telling which images changed since their rows."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dermadv.runs import content
from dermadv.runs.content import CACHE_FILE, UNREADABLE, ContentHashes, changed_message, sample_hashes


def _old_file(path: Path, data: bytes, age: float = 60.0) -> Path:
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def test_hashes_are_sha256_read_once_and_cached_by_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _old_file(tmp_path / "a.jpg", b"image a")
    b = _old_file(tmp_path / "b.jpg", b"image b")
    fresh = tmp_path / "fresh.jpg"
    fresh.write_bytes(b"just written")
    run = tmp_path / "run"
    reads: list[str] = []
    from dermadv.runs.provenance import file_sha256 as real

    def counting(path: str | Path) -> str:
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(content, "file_sha256", counting)
    hashes = ContentHashes(run)
    got = hashes.of_paths([a, b, fresh, a, tmp_path / "absent.jpg"])
    assert got[str(a)] == hashlib.sha256(b"image a").hexdigest()
    assert got[str(tmp_path / "absent.jpg")] == UNREADABLE
    assert sorted(reads) == ["a.jpg", "b.jpg", "fresh.jpg"]  # a once, though asked twice
    hashes.of_paths([a, b])
    assert len(reads) == 3  # once per run
    hashes.save()
    cached = json.loads((run / CACHE_FILE).read_text())["files"]
    assert set(cached) == {os.path.realpath(a), os.path.realpath(b)}  # a just-written file is not cached

    reads.clear()
    _old_file(b, b"image B, replaced", age=30.0)
    again = ContentHashes(run).of_paths([a, b, fresh])
    assert sorted(reads) == ["b.jpg", "fresh.jpg"]  # a unchanged: its hash comes from the cache
    assert again[str(b)] == hashlib.sha256(b"image B, replaced").hexdigest() != got[str(b)]


def test_changed_message() -> None:
    assert changed_message(["x"]) == "1 image(s) changed since the last run: recomputed (x)"
    many = changed_message([f"i{k}" for k in range(7)])
    assert many.startswith("7 image(s) changed") and many.endswith("i4 and 2 more)")


class _Sample:
    def __init__(self, image_id: str, path: Path) -> None:
        self.image_id, self.path, self.diagnosis = image_id, path, "mel"


class _Model:
    classes = ("mel", "nv")

    def describe(self) -> dict[str, Any]:
        return {"name": "stub", "classes": list(self.classes), "device": "cpu"}


def test_partial_predictions_drop_rows_of_changed_images(tmp_path: Path) -> None:
    from dermadv.evaluate import PartialPredictions

    samples = [_Sample(f"i{k}", _old_file(tmp_path / f"i{k}.jpg", f"image {k}".encode())) for k in range(3)]
    out = tmp_path / "run"
    first = PartialPredictions(out, _Model(), samples)
    first.start(keep=False)
    first.append(samples, np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]]))
    assert set(PartialPredictions(out, _Model(), samples).load()) == {"i0", "i1", "i2"}

    _old_file(samples[1].path, b"another image", age=10.0)
    again = PartialPredictions(out, _Model(), samples)
    done = again.load()
    assert set(done) == {"i0", "i2"} and again.changed == ["i1"]
    np.testing.assert_allclose(done["i2"], [0.3, 0.7])
    again.start(keep=True)
    again.append([samples[1]], np.array([[0.5, 0.5]]))  # predicted again: the last row wins
    third = PartialPredictions(out, _Model(), samples)
    assert set(third.load()) == {"i0", "i1", "i2"} and third.changed == []
    # another model file: nothing is reused
    assert PartialPredictions(out, _Model(), samples, model_file_hash="0" * 64).load() == {}


def test_store_rows_record_their_image_hash_and_changed_images_are_redone(tmp_path: Path) -> None:
    from dermadv.campaign.store import ResultsStore

    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with ResultsStore(tmp_path / "run") as store:
        for image_id, sha in (("a", "sha-a"), ("b", "sha-b")):
            for attack in ("color", "pixel"):
                result = {"image_id": image_id, "attack": attack, "outcome": "success", "original": image + 1}
                result["adversarial"] = image + (2 if attack == "color" else 3)
                store.add(result, image_sha256=sha)
        assert {r["image_sha256"] for r in store.rows() if r["image_id"] == "a"} == {"sha-a"}
        assert store.changed_images({"a": "sha-a", "b": "sha-b"}) == ([], 0)
        assert store.changed_images({"a": "sha-a", "b": "new", "c": "x"}) == (["b"], 0)
        pngs: dict[str, set[str]] = {}
        for r in store.rows():
            pngs.setdefault(r["image_id"], set()).update((r["original_path"], r["adversarial_path"]))
        assert store.delete_images(["b"]) == 2
        assert {r["image_id"] for r in store.rows()} == {"a"}
        left = {p.name for p in (tmp_path / "run" / "images").iterdir()}
        assert left == {Path(p).name for p in pngs["a"]}  # b's PNGs went with its rows


def test_a_schema_1_store_gains_the_hash_column(tmp_path: Path) -> None:
    from dermadv.campaign.store import COLUMNS, SCHEMA_VERSION, ResultsStore

    run = tmp_path / "run"
    run.mkdir()
    old = [(c, t) for c, t in COLUMNS if c != "image_sha256"]
    con = sqlite3.connect(run / "results.sqlite")
    cols = ", ".join(f"{c} {t}" for c, t in old)
    con.execute(f"CREATE TABLE results ({cols}, PRIMARY KEY (image_id, attack))")
    con.execute("INSERT INTO results (image_id, attack, outcome) VALUES ('a', 'color', 'failure')")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    with ResultsStore(run) as store:
        assert store.rows()[0]["image_sha256"] is None
        assert store.changed_images({"a": "sha-a"}) == ([], 1)  # unknown: kept, and counted
        store.add({"image_id": "b", "attack": "color", "outcome": "failure"}, image_sha256="sha-b")
    con = sqlite3.connect(run / "results.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    con.close()


def test_sample_hashes_of_samples_without_a_file(tmp_path: Path) -> None:
    s = _Sample("x", _old_file(tmp_path / "x.jpg", b"x"))
    missing = _Sample("y", tmp_path / "y.jpg")
    none = _Sample("z", tmp_path / "z.jpg")
    none.path = None  # type: ignore[assignment]
    got = sample_hashes([s, missing, none], tmp_path / "run")
    assert got == {"x": hashlib.sha256(b"x").hexdigest(), "y": UNREADABLE, "z": UNREADABLE}


def test_unit_records_are_reused_only_for_the_same_images_settings_and_content(tmp_path: Path) -> None:
    from dermadv.runs.content import changed_indices, read_unit_record

    path = tmp_path / "unit.json"
    rec = {"fingerprint": "f1", "image_ids": ["a", "b"], "image_sha256": ["h1", "h2"], "rows": [1, 2]}
    path.write_text(json.dumps(rec))
    assert read_unit_record(path, ["a", "b"], "f1") == rec
    assert read_unit_record(path, ["a", "b"]) == rec  # any settings: what changed can still be named
    assert read_unit_record(path, ["a", "b"], "f2") is None  # other result settings
    assert read_unit_record(path, ["b", "a"], "f1") is None  # other images (or order)
    assert read_unit_record(tmp_path / "missing.json", ["a", "b"]) is None
    assert changed_indices(rec, ["h1", "h2"]) == [] and changed_indices(rec, ["h1", "NEW"]) == [1]
    for broken in ("{not json", json.dumps([1, 2]), json.dumps({**rec, "image_sha256": ["h1"]})):
        path.write_text(broken)
        assert read_unit_record(path, ["a", "b"]) is None
    path.write_bytes(b"\xff\xfe")
    assert read_unit_record(path, ["a", "b"]) is None
