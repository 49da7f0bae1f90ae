"""Data fixtures of the integration layer. Real images come from ../shared/data beside the repository
(override with DERMADV_DATA); tests/unit never uses these."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = Path(os.environ.get("DERMADV_DATA", REPO.parent / "shared" / "data")).resolve()
ISIC_DEV = DATA_ROOT / "isic-dev"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(
            f"real test images not found at {path}. The integration tests read the ISIC development "
            f"images from ../shared/data/isic-dev beside the repository; set DERMADV_DATA=/path/to/data to "
            f"point elsewhere (tests/unit needs no data: make unit).",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def isic_dev() -> Path:
    return _require(ISIC_DEV)


@pytest.fixture(scope="session")
def isic2019_dir(isic_dev: Path) -> Path:
    return _require(isic_dev / "isic2019")


@pytest.fixture(scope="session")
def ham10000_dir(isic_dev: Path) -> Path:
    return _require(isic_dev / "ham10000")


@pytest.fixture(scope="session")
def vandyke_csv() -> Path:
    """The Van Dyke MRMC data set (../shared/data/mrmc/vandyke.csv; reference values in its README)."""
    return _require(DATA_ROOT / "mrmc" / "vandyke.csv")


@pytest.fixture(scope="session")
def split40(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    """A lesion-grouped, stratified split of 40 real ISIC 2019 melanoma/naevus images (28 train, 12 val)."""
    from dermadv.data import Dataset, load_dataset, make_split, select_samples

    ds = load_dataset(isic2019_dir, progress=False)
    sub = select_samples(ds, classes=("mel", "nv"), limit=40)
    path = tmp_path_factory.mktemp("split") / "split40.csv"
    make_split(Dataset(root=ds.root, layout=ds.layout, samples=sub), val_fraction=0.3, seed=0).write(path)
    return path
