"""A SAM benchmark submission (``image_path,nevus,melanoma``) for any model.

The benchmark (Maron et al. 2021; DBO-DKFZ/SCP-Robustness-Benchmark) ships templates with the
``image_path`` column filled in and its images without labels; its maintainers score submissions.
``score_sam_template`` reads a template, scores every listed image with the model (decoded and
resized as the model's own pipeline does) and writes the filled file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermadv.errors import DataError
from dermadv.metrics import melanoma_score
from dermadv.robustness.published import write_sam_submission

if TYPE_CHECKING:
    from dermadv.models.base import Classifier


def read_template(template: str | Path) -> list[str]:
    """The ``image_path`` column of a submission template (DataError naming the file if absent)."""
    path = Path(template)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "image_path" not in reader.fieldnames:
                raise DataError(f"{path}: not a SAM submission template (no image_path column)")
            paths = [row["image_path"] for row in reader]
    except OSError as e:
        raise DataError(f"{path}: cannot read the template ({e.strerror})") from None
    if not paths:
        raise DataError(f"{path}: the template lists no images")
    return paths


def score_sam_template(
    model: Classifier, template: str | Path, root: str | Path, out: str | Path, batch_size: int | None = None
) -> int:
    """Score the images of ``template`` (paths relative to ``root``) and write the submission ``out``."""
    paths = read_template(template)
    files = [Path(root) / p for p in paths]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) of {template} not found under {root} (first: {missing[0]})")
    bs = int(batch_size or getattr(model, "batch_size", 32) or 32)
    scores = np.empty(len(files), dtype=np.float64)
    for i in range(0, len(files), bs):
        chunk = files[i : i + bs]
        batch = model.prepare([model.load_image(str(f)) for f in chunk])
        scores[i : i + len(chunk)] = melanoma_score(model, model.predict_proba(batch, batch_size=bs))
    write_sam_submission(out, paths, 1.0 - scores, scores)
    return len(paths)
