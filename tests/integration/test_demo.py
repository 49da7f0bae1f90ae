"""The synthetic demo data and the one-command demo (end to end, ``--size small``)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dermadv.report.html import SECTIONS


@pytest.mark.slow
def test_demo_small_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dermadv.cli",
            "demo",
            "--size",
            "small",
            "--out",
            str(out),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["synthetic"] is True and "SYNTHETIC" in proc.stderr
    assert "--data /path/to/ISIC_2019" in proc.stderr
    report = Path(res["report"])
    assert report == out / "report.html" and report.exists()
    html = report.read_text(encoding="utf-8")
    not_run = ("robustness", "defences")  # the demo makes no robustness or defence-comparison run
    for key, _ in SECTIONS:  # every other built-in section has something to show in the demo
        assert (f'<section id="{key}">' in html) == (key not in not_run), key
    assert "Synthetic data." in html and "dermadv demo --data /path/to/ISIC_2019" in html
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(pngs) >= 6  # ROC, training, perturbation, success bars, heat map, examples
    for b64 in pngs:
        Image.open(io.BytesIO(base64.b64decode(b64))).verify()
    # every step ran and left its files
    for f in (
        "split.csv",
        "train/best.pt",
        "evaluation/metrics.json",
        "evaluation/predictions.csv",
        "perturbation/perturbation.csv",
        "attacks/results.sqlite",
        "demo.json",
    ):
        assert (out / f).exists(), f
    rows = json.loads((out / "perturbation" / "perturbation.json").read_text())["rows"]
    assert len(rows) == 1 + 20 + 4
    assert all(r["correct"] + r["false_negatives"] + r["false_positives"] == r["n"] for r in rows)
    from dermadv.campaign.store import ResultsStore

    with ResultsStore(out / "attacks", create=False) as store:
        assert set(store.attacks()) == {"fgsm", "pgd", "pixel", "color", "rotation"}
    assert set(res["steps"]) >= {
        "data",
        "split",
        "train",
        "evaluate",
        "perturb",
        "attack",
        "sklesion",
        "report",
    }
    _check_sklesion_on_real_images(out, html)
    print(f"demo --size small: {res['seconds']} s; steps {res['steps']}")


def _check_sklesion_on_real_images(out: Path, html: str) -> None:
    """sklesion is evaluated and attacked on the real ISIC 2017 sample, and the report shows it."""
    from dermadv import samples
    from dermadv.campaign.store import ResultsStore

    if not (out / "attacks-sklesion").exists():
        pytest.skip("sklesion not installed: the demo skips the third-party model")
    ids = set(samples.image_ids())
    with ResultsStore(out / "attacks-sklesion", create=False) as store:
        rows = store.rows()
    attacked = [r for r in rows if r["outcome"] in ("success", "failure") and r.get("adversarial_path")]
    assert attacked and {r["image_id"] for r in rows} <= ids  # real images, attacked (not misclassified)
    assert all(r["delta_e_mean"] is not None and 0 <= r["ssim"] <= 1 for r in attacked)
    assert (out / "evaluation-sklesion" / "metrics.json").exists()
    examples = html.split('<section id="examples">')[1].split("</section>")[0]
    assert "example attacks sklesion" in examples  # the sklesion example grid: its attacked images
    assert "sklesion" in html.split('<section id="summary">')[1].split("</section>")[0]
    assert (out / "transfer" / "transfer.csv").exists() and '<section id="transfer">' in html
    assert (out / "explain-sklesion" / "explain.json").exists()
