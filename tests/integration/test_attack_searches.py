"""``dermadv attack --search ...`` on real images with the fixed tiny CNN: the rows say which search and
criterion produced them, where the first success came, and stay within the query budget."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))

import make_golden  # noqa: E402

from dermadv.cli import app  # noqa: E402


def test_a_grid_search_campaign_records_queries_to_first_success(isic2019_dir: Path, tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    ids = ",".join(make_golden.melanoma_ids(isic2019_dir, 2))
    out = tmp_path / "run"
    args = [
        "attack",
        "--model",
        str(make_golden.MODEL),
        "--data",
        str(isic2019_dir),
        "--ids",
        ids,
        "--attacks",
        "color,rotation",
        "--search",
        "grid",
        "--search-option",
        "points=3",
        "--chunk",
        "1",
        "--max-queries",
        "20",
        "--stop",
        "success",
        "--out",
        str(out),
        "--no-progress",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)["summary"]
    assert Path(summary["files"]["queries"]).read_bytes()[:4] == b"\x89PNG"
    assert set(summary["query_curves"]) <= {"color", "rotation"}
    con = sqlite3.connect(out / "results.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM results")]
    con.close()
    assert len(rows) == 4
    for r in rows:
        assert r["criterion"] == "group"
        if r["outcome"] == "misclassified":
            continue
        assert r["search"] == "grid" and r["queries"] <= 20
        if r["outcome"] == "success":  # one candidate per forward, stopping at the first success
            assert r["first_success_query"] == r["queries"]
        else:
            assert r["first_success_query"] is None
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.output)["ran"] == 0  # resumed: nothing to redo
    bad_args = [a if a != "grid" else "nope" for a in args]
    bad_args[bad_args.index(str(out))] = str(tmp_path / "x")
    bad = CliRunner().invoke(app, bad_args)
    assert bad.exit_code == 2 and "--search 'nope'" in bad.output and not (tmp_path / "x").exists()
