"""The synthetic demo data and the one-command demo (end to end, ``--size small``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermadv.data import load_dataset
from dermadv.synthetic import generate_dataset, is_synthetic


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_set_is_deterministic_and_loadable(tmp_path):
    a = generate_dataset(tmp_path / "a", 6, 5, size=96, seed=3)
    generate_dataset(tmp_path / "b", 6, 5, size=96, seed=3)
    generate_dataset(tmp_path / "c", 6, 5, size=96, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    ds = load_dataset(a.root, progress=False)  # the real ISIC 2019 loader reads it
    assert ds.layout == "isic2019" and not ds.problems
    assert sorted(s.diagnosis for s in ds.samples) == ["mel"] * 6 + ["nv"] * 5
    assert all(s.image_id.startswith("SYN_") and s.lesion_id and s.site and s.sex for s in ds.samples)
    assert is_synthetic(a.root) and is_synthetic(a.root / "images") and not is_synthetic(tmp_path)
    with pytest.raises(ValueError, match="at least one image per class"):
        generate_dataset(tmp_path / "d", 0, 3)


def test_synthetic_classes_differ_as_described(tmp_path):
    """Melanomas: more colour variegation inside the lesion than naevi (the ABC 'C')."""
    s = generate_dataset(tmp_path / "s", 12, 12, size=128, seed=0)
    ds = load_dataset(s.root, progress=False)

    def variegation(path: Path) -> float:
        img = np.asarray(Image.open(path), dtype=float)
        centre = img[44:84, 44:84].reshape(-1, 3)
        return float(centre.std(axis=0).mean())

    mel = [variegation(x.path) for x in ds.samples if x.diagnosis == "mel"]
    nv = [variegation(x.path) for x in ds.samples if x.diagnosis == "nv"]
    assert np.median(mel) > 1.5 * np.median(nv)
