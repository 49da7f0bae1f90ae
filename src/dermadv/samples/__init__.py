"""A small sample of real dermoscopy shipped with dermadv (like ``skimage.data``): 24 ISIC 2017 images.

The images are CC-0 (ISIC 2017 challenge, International Skin Imaging Collaboration); each one's ISIC
id, label, licence, attribution and provenance is in ``isic2017/ATTRIBUTION.csv`` and the licence
statement in ``isic2017/LICENSE.txt``. The folder is a dataset in the ISIC 2017 layout
(``labels.csv``: image_id, melanoma, seborrheic_keratosis), so every command takes it as ``--data``::

    from dermadv import samples
    ds = samples.dataset()                  # a dermadv.data.Dataset of the 24 images
    img = samples.load("ISIC_0000522")      # uint8 RGB array
    samples.path()                          # the folder, e.g. for `dermadv evaluate --data`

The sample is chosen, not random: 12 melanomas the third-party model sklesion calls melanoma, 2 it
misses, 9 naevi it calls benign and 1 it calls melanoma (see LICENSE.txt). It shows real images in
a first run; it measures nothing about any model.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import DataError

if TYPE_CHECKING:
    from dermadv.data.dataset import Dataset

#: The shipped sample's folder name inside this package.
SAMPLE_NAME = "isic2017"
_ROOT = Path(__file__).resolve().parent / SAMPLE_NAME


def path() -> Path:
    """The folder holding the sample (a dataset folder any ``--data`` option accepts)."""
    if not (_ROOT / "labels.csv").exists():
        raise DataError(f"{_ROOT}: the dermadv sample images are missing (a broken install?)")
    return _ROOT


def attribution() -> list[dict[str, str]]:
    """One row per image: image_id, label, license, attribution, width, height, source_repo, commit,
    original_path, sklesion_onnx_melanoma_score (the score that got it chosen)."""
    with (path() / "ATTRIBUTION.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def image_ids() -> list[str]:
    """The ISIC ids of the sample images, in the order of ``labels.csv``."""
    return [r["image_id"] for r in attribution()]


def image_path(image_id: str) -> Path:
    """The JPEG of one sample image (DataError naming the id when it is not in the sample)."""
    p = path() / f"{image_id}.jpg"
    if image_id not in image_ids() or not p.exists():
        raise DataError(f"{image_id!r} is not one of the {len(image_ids())} dermadv sample images")
    return p


def load(image_id: str) -> NDArray[np.uint8]:
    """One sample image as a uint8 H x W x 3 RGB array."""
    from dermadv.data.images import load_image

    return load_image(str(image_path(image_id)))


def dataset() -> Dataset:
    """The sample as a :class:`dermadv.data.Dataset` (ISIC 2017 layout)."""
    from dermadv.data import load_dataset

    return load_dataset(path(), progress=False)
