"""Robustness runs on real ISIC images: the CLI end to end, SIGKILL and resume, Ray, the report section."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from campaign_support import train_tiny_torchscript

SIZE = 64


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    return train_tiny_torchscript(
        isic2019_dir, out, size=SIZE, n_images=120, conv_layers=2, epochs=8, batch=40
    )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dermadv.cli", "robustness", *args]


def _images(run: Path) -> list[dict]:
    return json.loads((run / "robustness.json").read_text())["images"]


def test_cli_run_and_report(tiny_model: Path, isic2019_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dermadv.cli import app

    run = tmp_path / "run"
    args = [
        "robustness",
        "--model",
        str(tiny_model),
        "--data",
        str(isic2019_dir),
        "--limit",
        "10",
        "--transforms",
        "color,rotation,gaussian_blur",
        "--samples",
        "32",
        "--out",
        str(run),
        "--no-progress",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["transform"] for r in out["rows"]] == ["color", "rotation", "gaussian_blur"]
    for r in out["rows"]:
        assert r["n_images"] == 10 and 0 <= r["flip_ci_low"] <= r["flip_rate"] <= r["flip_ci_high"] <= 1
        assert r["forwards"] <= r["forwards_fixed_n"] == 10 * 33
    images = _images(run)
    assert len(images) == 30 and {r["source"] for r in images} == {isic2019_dir.name}
    assert all(r["skin_tone_estimate"] for r in images)  # an ITA category (or "undetermined") per image
    assert out["computed_units"] == 6 and out["resumed_units"] == 0
    again = CliRunner().invoke(app, args)  # a rerun resumes everything
    assert json.loads(again.output)["resumed_units"] == 6
    assert _images(run) == images
    report = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "report.html")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report.html").read_text()
    assert "Average-case robustness" in page and "gaussian_blur" in page and "data:image/png;base64" in page


def test_resume_after_sigkill_loses_at_most_the_unit_in_flight(
    tiny_model: Path, isic2019_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    settings = [
        "--model",
        str(tiny_model),
        "--data",
        str(isic2019_dir),
        "--limit",
        "12",
        "--transforms",
        "color,rotation",
        "--samples",
        "64",
        "--fixed-n",
        "--images-per-unit",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _cli(*settings, "--out", str(run)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    units = run / "robustness"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(units.glob("*/*.json"))) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {proc.stderr.read()}"
    before = {p: p.read_bytes() for p in units.glob("*/*.json")}
    assert 2 <= len(before) < 12
    done = subprocess.run(
        _cli(*settings, "--out", str(run), "--json"), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resumed_units"] == len(before) and report["computed_units"] == 12 - len(before)
    for p, data in before.items():  # finished units are untouched
        assert p.read_bytes() == data
    rows = _images(run)
    keys = [(r["transform"], r["image_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24  # 12 images x 2 transforms, none twice
    ref = tmp_path / "ref"
    fresh = subprocess.run(
        _cli(*settings, "--out", str(ref)), env=env, capture_output=True, text=True, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr
    assert _images(ref) == rows  # the interrupted run gives what an uninterrupted one gives


@pytest.mark.slow
def test_ray_executor_gives_the_local_rows(tiny_model: Path, isic2019_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "RAY_DISABLE_USAGE_STATS": "1",
        "RAY_memory_monitor_refresh_ms": "0",
    }
    settings = [
        "--model",
        str(tiny_model),
        "--data",
        str(isic2019_dir),
        "--limit",
        "8",
        "--transforms",
        "color",
        "--samples",
        "32",
        "--images-per-unit",
        "2",
        "--no-progress",
        "--batch-size",
        "8",
    ]
    local = subprocess.run(
        _cli(*settings, "--out", str(tmp_path / "local")),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr
    ray = subprocess.run(
        _cli(*settings, "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ray.returncode == 0, ray.stderr
    assert _images(tmp_path / "ray") == _images(tmp_path / "local")


def test_benchmark_script_runs(tiny_model: Path, tmp_path: Path) -> None:
    """benchmarks/robustness.py at a tiny size, so it cannot rot (the figures themselves are not tested)."""
    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "robustness.py"
    args = ["--model", str(tiny_model), "--n-images", "4", "--samples", "8", "--transforms", "color,jpeg"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [r["transform"] for r in report["rows"]] == ["color", "jpeg"]
    for r in report["rows"]:
        assert r["forwards"] == 4 * 9 and r["ratio"] > 0 and r["pure_forwards_per_s"] > 0
