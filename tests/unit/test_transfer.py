"""Transferability: scoring a campaign's adversarial images on other models."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dermadv.campaign.runner import run_campaign
from dermadv.campaign.store import ResultsStore
from dermadv.data import load_dataset
from dermadv.models.callable_adapter import CallableClassifier
from dermadv.synthetic import generate_dataset
from dermadv.transfer import read_transfer, run_transfer, transfer_matrix
from dermadv.vocab import Outcome


def _darkness(images: np.ndarray) -> np.ndarray:
    """P(mel) from how dark the image is, sharpened so that colour attacks flip some calls."""
    dark = 1.0 - images.reshape(len(images), -1).mean(axis=1) / 255.0
    p = 1 / (1 + np.exp(-40 * (dark - 0.45)))
    return np.stack([p, 1 - p], axis=1)


def _constant(images: np.ndarray) -> np.ndarray:
    """A model that ignores its input: always 0.8 melanoma."""
    return np.tile([0.8, 0.2], (len(images), 1))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    ds = load_dataset(generate_dataset(root / "data", 8, 2, size=48, seed=1).root, progress=False)
    model = CallableClassifier(_darkness, ("mel", "nv"), (48, 48), name="darkness")
    mels = [s for s in ds.samples if s.diagnosis == "mel"]
    run_campaign(
        model,
        mels,
        root / "run",
        ["color", "rotation"],
        attack_options={"popsize": 2, "max_generations": 3},
        progress=False,
    )
    return root, model


def test_same_model_reproduces_campaign_outcomes(campaign):
    root, model = campaign
    with ResultsStore(root / "run", create=False) as store:
        rows = {(r["image_id"], r["attack"]): r["outcome"] for r in store.rows() if r.get("adversarial_path")}
    assert Outcome.SUCCESS in rows.values() and Outcome.FAILURE in rows.values(), rows
    res = run_transfer([root / "run"], {"darkness": model}, root / "t-same")
    got = {(r["image_id"], r["attack"]): r["outcome"] for r in res.rows}
    assert got == rows  # every row: success stays success, failure stays failure
    hit = [m for m in res.matrix if m["source_successes"]]
    assert hit and all(m["rate"] == 1.0 and m["attempted"] == m["source_successes"] for m in hit)
    assert all(np.isnan(m["rate"]) and m["attempted"] == 0 for m in res.matrix if not m["source_successes"])
    # files: matrix CSV, per-row CSV, JSON, run record of kind transfer
    with (root / "t-same" / "transfer.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert {r["attack"] for r in table} == {m["attack"] for m in res.matrix}
    assert {m["ci_high"] for m in read_transfer(root / "t-same")["matrix"]} <= {1.0, None}
    assert json.loads((root / "t-same" / "run.json").read_text())["kind"] == "transfer"


def test_model_that_ignores_its_input_is_never_fooled(campaign):
    root, model = campaign
    blind = CallableClassifier(_constant, ("mel", "nv"), (32, 32), name="blind")
    res = run_transfer([root / "run"], {"darkness": model, "blind": blind}, root / "t-blind")
    cells = [m for m in res.matrix if m["target"] == "blind" and m["source_successes"]]
    assert cells and all(m["transferred"] == 0 and m["attempted"] == m["source_successes"] > 0 for m in cells)
    assert all(m["rate"] == 0.0 and m["ci_low"] == 0.0 and 0 < m["ci_high"] < 1 for m in cells)
    assert res.cell(cells[0]["attack"], cells[0]["source"], "darkness")["rate"] == 1.0


def test_matrix_counts_only_source_successes_the_target_got_right():
    base = {"attack": "color", "source": "a", "target": "b"}
    rows = [
        {**base, "source_outcome": "success", "outcome": "success"},
        {**base, "source_outcome": "success", "outcome": "failure"},
        {**base, "source_outcome": "success", "outcome": "misclassified"},
        {**base, "source_outcome": "failure", "outcome": "success"},  # not a source success: not counted
    ]
    (m,) = transfer_matrix(rows)
    assert (m["transferred"], m["attempted"], m["source_successes"], m["target_misclassified"]) == (
        1,
        2,
        3,
        1,
    )
    assert m["rate"] == 0.5 and m["ci_low"] < 0.5 < m["ci_high"]


def test_bad_input(tmp_path, campaign):
    from dermadv.errors import DataError

    root, model = campaign
    with pytest.raises(DataError, match="at least one campaign"):
        run_transfer([], {"m": model}, tmp_path / "x")
    (tmp_path / "notrun").mkdir()
    with pytest.raises(DataError, match="not a dermadv run"):
        run_transfer([tmp_path / "notrun"], {"m": model}, tmp_path / "x")
