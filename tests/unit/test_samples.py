"""dermadv.samples: the shipped real dermoscopy sample (ISIC 2017, CC-0), small and fully attributed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dermadv import samples


def test_sample_is_small_licensed_and_attributed():
    rows = samples.attribution()
    files = sorted(samples.path().glob("*.jpg"))
    assert 0 < len(rows) == len(files) <= 24
    assert sum(f.stat().st_size for f in files) <= 1_000_000
    assert {f.stem for f in files} == set(samples.image_ids())
    for r in rows:
        assert re.fullmatch(r"ISIC_\d{7}", r["image_id"]), r
        assert r["license"] == "CC-0" and "ISIC 2017" in r["attribution"]
        assert r["label"] in ("mel", "nv") and r["source_repo"] and r["original_path"].startswith("ISIC-2017")
    licence = (samples.path() / "LICENSE.txt").read_text(encoding="utf-8")
    assert "CC-0" in licence and "publicdomain/zero/1.0" in licence and "not recompressed" in licence


def test_sample_loads_as_a_dataset():
    ds = samples.dataset()
    assert ds.layout == "isic2017" and not ds.problems
    labels = {r["image_id"]: r["label"] for r in samples.attribution()}
    assert {s.image_id: s.diagnosis for s in ds.samples} == labels
    assert sum(1 for v in labels.values() if v == "mel") >= 10  # several melanomas
    img = samples.load(samples.image_ids()[0])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 200


def test_unknown_id_is_named():
    from dermadv.errors import DataError

    with pytest.raises(DataError, match="'ISIC_9999999' is not one of the 24 dermadv sample images"):
        samples.load("ISIC_9999999")
