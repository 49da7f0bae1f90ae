"""Results store columns for queries to first success, and success-against-queries curves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dermadv.campaign.store import COLUMNS, ResultsStore
from dermadv.campaign.summary import (
    first_success_queries,
    not_top1_true,
    plot_query_curves,
    query_budgets,
    query_curves,
    summarize_rows,
    wilson_ci,
)

NEW = ("criterion", "search", "first_success_query", "first_threshold_query", "fittest")


def test_a_schema_2_store_reads_and_gains_the_query_columns(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    old = [(c, t) for c, t in COLUMNS if c not in NEW]
    con = sqlite3.connect(run / "results.sqlite")
    con.execute(
        f"CREATE TABLE results ({', '.join(f'{c} {t}' for c, t in old)}, PRIMARY KEY (image_id, attack))"
    )
    con.execute(
        "INSERT INTO results (image_id, attack, outcome, queries) VALUES ('a', 'color', 'success', 61)"
    )
    con.execute("PRAGMA user_version=2")
    con.commit()
    con.close()
    with ResultsStore(run) as store:
        (row,) = store.rows()
        assert all(row[c] is None for c in NEW)
        assert first_success_queries(row) == 61  # old rows: the queries of a success
        store.add(
            {
                "image_id": "b",
                "attack": "color",
                "outcome": "success",
                "queries": 9,
                "criterion": "top1",
                "search": "grid",
                "first_success_query": 7,
                "first_threshold_query": 9,
                "fittest": {"fitness": 0.1, "success": False},
            }
        )
        b = store.rows()[1]
    assert (b["criterion"], b["search"], b["first_success_query"], b["first_threshold_query"]) == (
        "top1",
        "grid",
        7,
        9,
    )
    assert b["fittest"] == {"fitness": 0.1, "success": False}


def _row(
    attack: str, outcome: str, queries: int, first: int | None, probs: list[float] | None = None
) -> dict:
    return {
        "attack": attack,
        "outcome": outcome,
        "queries": queries,
        "first_success_query": first,
        "seconds": 1.0,
        "search": "random",
        "criterion": "group",
        "true_group": "melanoma",
        "initial_probs": probs or [0.6, 0.4, 0.0],
    }


def test_success_against_queries_counts_first_successes_within_each_budget() -> None:
    rows = [
        _row("color", "success", 3, 3),
        _row("color", "success", 10, 6),  # scored in chunks: first success before its last query
        _row("color", "failure", 50, None),
        _row("color", "misclassified", 1, None),  # not attempted
        _row("color", "success", 40, 40, probs=[0.4, 0.1, 0.5]),  # top-1 class 3: not top-1 melanoma
    ]
    curves = query_curves(rows, budgets=[1, 5, 10, 50])
    c = curves["color"]
    assert c["attempted"] == 4 and c["successes"] == [0, 1, 2, 3]
    assert c["success_rate"] == [0.0, 0.25, 0.5, 0.75]
    assert (c["ci_low"][2], c["ci_high"][2]) == pytest.approx(wilson_ci(2, 4))
    assert c["median_queries_success"] == 6 and c["p90_queries_success"] == pytest.approx(
        np.percentile([3, 6, 40], 90)
    )
    assert query_budgets(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert query_budgets(61)[-1] == 61
    model = {"classes": ["mel", "nv", "bkl"], "melanoma_classes": ["mel"], "benign_classes": ["nv"]}
    (table,) = summarize_rows(rows, model)
    assert table["not_top1_true"] == 1 and table["search"] == "random" and table["criterion"] == "group"
    assert table["p90_queries_success"] == pytest.approx(np.percentile([3, 10, 40], 90))
    assert table["median_first_success_query"] == 6
    assert not_top1_true(rows, None) is None


def test_the_curve_figure_is_written(tmp_path: Path) -> None:
    rows = [_row("rotation", "success", 2, 2), _row("rotation", "failure", 20, None)]
    out = tmp_path / "queries.png"
    plot_query_curves(query_curves(rows), out, title="toy")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
