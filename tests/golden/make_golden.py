"""Record evaluation, sweep and campaign rows on real shared images with a fixed tiny model.

Run once before a refactor (``python tests/golden/make_golden.py record``) to store
``tests/golden/rows.json``; the integration test ``test_golden_rows.py`` recomputes the same rows
through the CLI and compares them with what was stored. The model is a tiny TorchScript CNN whose
weights are stored beside this file (``tiny_cnn.pt``), so nothing here depends on training.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = HERE / "tiny_cnn.pt"
ROWS = HERE / "rows.json"
#: Which shared images the rows cover (the first N mel/nv rows of the isic2019 folder).
EVAL_LIMIT = 24
SWEEP_LIMIT = 16
ATTACK_IDS_LIMIT = 4
ATTACKS = "fgsm,pgd,pixel,color,rotation"
ATTACK_ARGS = ["--popsize", "5", "--max-generations", "3", "--seed", "0"]


def make_model(data: Path, out: Path = MODEL) -> Path:
    """Train a tiny CNN briefly on real images (seeded) and save it as TorchScript."""
    sys.path.insert(0, str(HERE.parent))
    from campaign_support import train_tiny_torchscript  # type: ignore[import-not-found]

    return train_tiny_torchscript(data, out, size=64, n_images=64, conv_layers=2, epochs=3, batch=16)


def run_cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from dermadv.cli import app

    res = CliRunner().invoke(app, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output


def melanoma_ids(data: Path, n: int) -> list[str]:
    with open(data / "ISIC_2019_Training_GroundTruth.csv", newline="") as fh:
        rows = [r["image"] for r in csv.DictReader(fh) if float(r["MEL"]) == 1.0]
    return sorted(rows)[:n]


def compute(data: Path, work: Path, model: Path = MODEL) -> dict[str, Any]:
    """Run evaluate, perturb and attack through the CLI into ``work``; return their rows."""
    import torch

    torch.set_num_threads(1)
    m = str(model)
    ev, sw, at = work / "eval", work / "perturb", work / "attack"
    run_cli(["evaluate", "--model", m, "--data", str(data), "--limit", str(EVAL_LIMIT), "--out", str(ev)])
    run_cli(
        [
            "perturb",
            "--model",
            m,
            "--data",
            str(data),
            "--limit",
            str(SWEEP_LIMIT),
            "--out",
            str(sw),
            "--no-progress",
        ]
    )
    ids = ",".join(melanoma_ids(data, ATTACK_IDS_LIMIT))
    run_cli(
        [
            "attack",
            "--model",
            m,
            "--data",
            str(data),
            "--ids",
            ids,
            "--attacks",
            ATTACKS,
            "--out",
            str(at),
            "--no-progress",
            *ATTACK_ARGS,
        ]
    )
    return {"evaluate": eval_rows(ev), "sweep": sweep_rows(sw), "attack": attack_rows(at)}


def eval_rows(run: Path) -> list[dict[str, Any]]:
    with open(run / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        probs = {k: float(v) for k, v in r.items() if k.startswith("p_")}
        out.append(
            {
                "image_id": r["image_id"],
                "diagnosis": r["diagnosis"],
                **probs,
                "melanoma_score": float(r["melanoma_score"]),
                "predicted": r["predicted"],
            }
        )
    return out


def sweep_rows(run: Path) -> dict[str, Any]:
    rows = json.loads((run / "perturbation.json").read_text())["rows"]
    scores = {}
    for f in sorted((run / "perturb").glob("*.json")):
        rec = json.loads(f.read_text())
        scores[rec.get("spec", f.stem)] = [float(s) for s in rec["scores"]]
    return {"rows": rows, "scores": scores}


def attack_rows(run: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(run / "results.sqlite")
    con.row_factory = sqlite3.Row
    keep = (
        "image_id",
        "attack",
        "direction",
        "outcome",
        "initial_probs",
        "final_probs",
        "params",
        "queries",
        "generations",
        "seed",
    )
    rows = []
    for r in con.execute("SELECT * FROM results ORDER BY image_id, attack"):
        d = dict(r)
        rows.append({k: d.get(k) for k in keep})
    con.close()
    return rows


if __name__ == "__main__":
    import tempfile

    data = Path(sys.argv[2] if len(sys.argv) > 2 else HERE.parents[2] / "shared/data/isic-dev/isic2019")
    if sys.argv[1:2] == ["model"]:
        print(make_model(data))
    elif sys.argv[1:2] == ["record"]:
        with tempfile.TemporaryDirectory() as tmp:
            rows = compute(data, Path(tmp))
        ROWS.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
        print(f"wrote {ROWS}")
