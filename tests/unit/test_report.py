"""The HTML report without data: reference-CSV validation, non-run folders refused, the few-pixel
difference circled. The report built from real runs (and in headless Chromium): tests/integration."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dermadv.errors import DataError
from dermadv.report.html import build_report, read_reference_csv


def test_reference_csv_validation(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("who,accuracy\nx,0.9\n")
    with pytest.raises(DataError, match="'model'"):
        read_reference_csv(bad)
    bad.write_text("model,accuracy\nx,high\n")
    with pytest.raises(DataError, match="line 2: accuracy='high' is not a number"):
        read_reference_csv(bad)
    bad.write_text("model,auc\nx,140\n")
    with pytest.raises(DataError, match="outside"):
        read_reference_csv(bad)
    with pytest.raises(DataError, match="not found"):
        read_reference_csv(tmp_path / "missing.csv")


def test_report_rejects_non_runs(tmp_path):
    with pytest.raises(DataError, match="not a dermadv run"):
        build_report([tmp_path], tmp_path / "r.html")
    with pytest.raises(DataError, match="not a directory"):
        build_report([tmp_path / "nope"], tmp_path / "r.html")


def test_few_pixel_difference_is_circled():
    """A 3-pixel attack's difference image marks the changed pixels: one pixel of a model input is
    otherwise invisible in the report."""
    from dermadv.report.figures import AttackExample, changed_pixels, example_grid

    original = np.full((96, 96, 3), 120, np.uint8)
    adversarial = original.copy()
    for y, x in ((10, 20), (50, 60), (90, 5)):
        adversarial[y, x] = 0  # darker only: the difference image itself holds no red
    assert changed_pixels(original, adversarial).tolist() == [[10, 20], [50, 60], [90, 5]]
    ex = AttackExample("ISIC_x", "pixel", original, adversarial, 0.6, 0.4, "success", show_difference=True)
    with Image.open(io.BytesIO(example_grid([ex]))) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert red.sum() > 30  # three red circles
    assert red[:, : rgb.shape[1] * 2 // 3].sum() == 0  # only on the difference panel
