"""Datasets: published ISIC/HAM10000 layouts -> one table of :class:`Sample`; validation; splits.

>>> from dermadv.data import load_dataset, make_split, select_samples
>>> ds = load_dataset("../shared/data/isic-dev/ham10000")          # doctest: +SKIP
>>> make_split(ds, val_fraction=0.2, seed=0).write("split.csv")      # doctest: +SKIP
>>> val = select_samples(ds, split="split.csv", subset="val")        # doctest: +SKIP
"""

from dermadv.data.dataset import (
    PROBLEM_KINDS,
    Dataset,
    Problem,
    Sample,
    check_dataset,
    load_dataset,
    summarize_problems,
    verify_dataset_images,
)
from dermadv.data.splits import (
    DEFAULT_CLASSES,
    SPLIT_COLUMNS,
    SUBSETS,
    Split,
    dataset_hash,
    make_split,
    normalize_classes,
    read_split,
    select_samples,
    sidecar_path,
    stratified_prefix,
)

__all__ = [
    "DEFAULT_CLASSES",
    "PROBLEM_KINDS",
    "SPLIT_COLUMNS",
    "SUBSETS",
    "Dataset",
    "Problem",
    "Sample",
    "Split",
    "check_dataset",
    "dataset_hash",
    "load_dataset",
    "make_split",
    "normalize_classes",
    "read_split",
    "select_samples",
    "sidecar_path",
    "stratified_prefix",
    "summarize_problems",
    "verify_dataset_images",
]
