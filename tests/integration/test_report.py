"""The HTML report: built from real evaluation, perturbation and attack runs on real ISIC images;
every section with something to show present (the others left out), every figure a decodable PNG,
text escaped, the first screen's numbers linked, and it renders in headless Chromium with every image
loaded and no request leaving the file, and prints to a PDF holding every figure."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser_support import CHROMIUM, CHROMIUM_ARGS
from dermadv.data import select_samples
from dermadv.data.images import load_image, resize_uint8
from dermadv.report.html import SECTIONS, build_report

NASTY_NAME = 'bright<ness> & "co"'
#: The sections a report of an evaluation, a perturbation and an attack run has something to show in.
SHOWN = [
    "summary",
    "overview",
    "metrics",
    "roc",
    "perturbation",
    "attacks",
    "heatmap",
    "examples",
    "provenance",
]


def brightness_model(samples, name: str = NASTY_NAME):
    """A white-box torch classifier calling darker images melanoma (threshold: median of ``samples``)."""
    import torch

    from dermadv.models.base import TorchModuleClassifier

    centre = float(np.median([resize_uint8(load_image(s.path), (48, 48)).mean() / 255 for s in samples]))
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[-8.0, -8.0, -8.0], [0.0, 0.0, 0.0]]))
        net[2].bias.copy_(torch.tensor([24.0 * centre, 0.0]))
    return TorchModuleClassifier(
        net, ["mel", "nv"], (48, 48), mean=(0, 0, 0), std=(1, 1, 1), name=name, device="cpu", batch_size=32
    )


@pytest.fixture(scope="module")
def runs(isic2019_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """An evaluation run, a perturbation run and an attack run of one real model on 24 real images."""
    from dermadv.campaign.runner import run_campaign
    from dermadv.evaluate import evaluate_model, write_evaluation
    from dermadv.perturb.sweep import run_sweep

    root = tmp_path_factory.mktemp("runs")
    samples = select_samples(isic2019_dir, classes=("mel", "nv"), limit=24)
    model = brightness_model(samples)
    ev = evaluate_model(model, samples, progress=False)
    write_evaluation(ev, model, root / "eval")
    run_sweep(model, samples, root / "perturb", "rot180,rot45,shift:r:+50,shift:b:-50", progress=False)
    scores = {s.image_id: float(v) for s, v in zip(samples, ev.scores, strict=True)}
    mels = sorted((s for s in samples if s.diagnosis == "mel"), key=lambda s: -scores[s.image_id])[:2]
    run_campaign(
        model,
        mels,
        root / "attack",
        ["fgsm", "color", "pixel"],
        attack_options={"popsize": 1, "max_generations": 2, "eps": (4.0, 16.0)},
        progress=False,
    )
    return {"eval": root / "eval", "perturb": root / "perturb", "attack": root / "attack", "root": root}


@pytest.fixture(scope="module")
def reference_csv(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("ref") / "reference.csv"
    p.write_text(
        "model,accuracy,sensitivity,specificity,auc,source\n"
        "Published model <A>,0.9,85%,,0.95,user-supplied row\n",
        encoding="utf-8",
    )
    return p


@pytest.fixture(scope="module")
def report(runs, reference_csv) -> Path:
    return build_report(
        [runs["eval"], runs["perturb"], runs["attack"]],
        runs["root"] / "report.html",
        reference_csv=reference_csv,
        title="Test <report>",
    )


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_sections_images_and_escaping(report):
    html = report.read_text(encoding="utf-8")
    for key, _title in SECTIONS:
        assert (f'<section id="{key}">' in html) == (key in SHOWN), key  # nothing to show: left out
    assert 'class="empty"' not in html
    # one ROC, one perturbation plot, success bars, heat map, example grid
    pngs = _images(html)
    assert len(pngs) >= 5
    for png in pngs:
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.format == "PNG" and im.width > 100 and im.height > 100
    # self-contained: no external resources at all
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "<script" not in html
    # user-controlled text is escaped
    assert NASTY_NAME not in html and "bright&lt;ness&gt; &amp; &quot;co&quot;" in html
    assert "Test &lt;report&gt;" in html and "Published model &lt;A&gt;" in html
    # study content
    assert "Rotation 180°" in html and "Red +50" in html
    assert "fgsm" in html and "color" in html and "pixel" in html
    assert "Synthetic data." not in html  # real images: no synthetic warning
    assert "0.850" in html  # the reference row's 85% shown as a fraction


def test_report_numbers_match_the_runs(runs, report):
    import json

    html = report.read_text(encoding="utf-8")
    m = json.loads((runs["eval"] / "metrics.json").read_text())["metrics"]
    assert (
        f"{m['accuracy']['value']:.3f} ({m['accuracy']['ci_low']:.3f}–{m['accuracy']['ci_high']:.3f})" in html
    )
    rows = json.loads((runs["perturb"] / "perturbation.json").read_text())["rows"]
    for r in rows:
        assert f'<td class="l">{r["label"]}</td>' in html
    from dermadv.campaign.store import ResultsStore
    from dermadv.campaign.summary import summarize_rows

    with ResultsStore(runs["attack"], create=False) as store:
        table = summarize_rows(store.rows())
    for s in table:
        if s["attempted"]:
            assert f"{s['successful']}/{s['attempted']} = {100 * s['success_rate']:.1f}%" in html


def test_report_in_headless_chromium(report):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.resolve().as_uri(), wait_until="load")
            widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
            ids = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
            title = page.title()
        finally:
            browser.close()
    assert len(widths) >= 5 and all(w > 0 for w in widths), widths
    assert ids == [k for k, _ in SECTIONS if k in SHOWN] == SHOWN
    assert title == "Test <report>"
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_cli_report(runs, reference_csv, tmp_path):
    out = tmp_path / "cli.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dermadv.cli",
            "report",
            str(runs["perturb"]),
            str(runs["attack"]),
            "--out",
            str(out),
            "--reference",
            str(reference_csv),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    res = json.loads(proc.stdout)
    assert res["runs"][str(runs["perturb"])] == ["perturbation"] and res["runs"][str(runs["attack"])] == [
        "attack"
    ]
    html = out.read_text(encoding="utf-8")
    assert '<section id="attacks">' in html and '<section id="perturbation">' in html
    assert '<section id="roc">' not in html  # no evaluation run: nothing to draw, left out
    assert '<section id="metrics">' in html and "Published model &lt;A&gt;" in html  # the reference row


def test_attack_table_one_column_per_model(runs, tmp_path):
    """The study's Supplementary Table 2: every attack run is its own column, even when two runs'
    folders and model names coincide; dermadv checkpoints are told apart by path and colour jitter."""
    import shutil

    from dermadv.report.runs import model_label

    first, second = tmp_path / "a" / "attack", tmp_path / "b" / "attack"
    shutil.copytree(runs["attack"], first)
    shutil.copytree(runs["attack"], second)
    html = build_report([first, second], tmp_path / "two.html").read_text(encoding="utf-8")
    table = html.split('<section id="attacks">')[1].split("</table>")[0]
    header = table.split("</thead>")[0]
    assert header.count("</th>") == 3, header  # attack + two model columns
    assert str(second) in header

    def ckpt(path: str, jitter: float) -> dict:
        return {"name": "resnet18:best.pt", "checkpoint": {"path": path, "arch": "resnet18",
                                                          "training": {"color_jitter": jitter}}}  # fmt: skip

    assert model_label(ckpt("runs/m1/best.pt", 0.0)) == "resnet18:runs/m1/best.pt (no colour jitter)"
    assert model_label(ckpt("runs/m2/best.pt", 0.1)) == "resnet18:runs/m2/best.pt (colour jitter)"
    assert model_label({"name": "sklesion"}) == "sklesion"


def test_first_screen_answers_per_model_with_linked_numbers(runs, report):
    import json

    from dermadv.campaign.store import ResultsStore
    from dermadv.campaign.summary import summarize_rows

    html = report.read_text(encoding="utf-8")
    first = html.split('<section id="summary">')[1].split("</section>")[0]
    assert html.index('<section id="summary">') < html.index('<section id="overview">')
    m = json.loads((runs["eval"] / "metrics.json").read_text())["metrics"]
    c = m["confusion"]
    sens = m["sensitivity"]
    assert f'<a class="num" href="#metrics">{c["tp"]} of {c["tp"] + c["fn"]}</a> melanomas' in first
    assert (
        f'href="#metrics">{sens["value"]:.2f}, 95% CI {sens["ci_low"]:.2f}–{sens["ci_high"]:.2f}</a>' in first
    )
    with ResultsStore(runs["attack"], create=False) as store:
        table = summarize_rows(store.rows())
    for s in table:
        if s["attempted"] and s["successful"]:
            assert f'href="#attacks">{s["successful"]} of {s["attempted"]} (' in first
    worst = max(
        json.loads((runs["perturb"] / "perturbation.json").read_text())["rows"][1:],
        key=lambda r: r["flipped"],
    )
    assert f'href="#perturbation">{worst["flipped"]} of {worst["n"]}</a>' in first
    # every link on the first screen leads to a section of the report
    for target in set(re.findall(r'href="#([a-z-]+)"', first)):
        assert f'<section id="{target}">' in html, target
    # visibility of each attack: below-JND counts in the attack table, ΔE00 in the example grid caption
    assert "below JND" in html.split('<section id="attacks">')[1] and "CIEDE2000" in html


def test_report_prints_to_pdf_with_every_figure(report, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium")
    from dermadv.report.pdf import html_to_pdf, pdf_facts

    figures = len(_images(report.read_text(encoding="utf-8")))
    pdf = html_to_pdf(report, tmp_path / "report.pdf")
    facts = pdf_facts(pdf)
    assert facts["images"] >= figures >= 5
    assert facts["pages"] >= 3 and facts["page_count"] == facts["pages"]  # page objects = the page tree
    assert pdf.read_bytes().rstrip().endswith(b"%%EOF")
