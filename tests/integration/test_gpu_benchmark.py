"""benchmarks/gpu.py at toy sizes on whatever device the suite has (the CPU in CI), so the script that
measures the GPU hot paths cannot rot: every section runs end to end and writes its JSON. Its figures
at these sizes measure nothing; only the structure and the arithmetic that links them are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu  # noqa: E402


def test_peak_table_and_full_budget() -> None:
    assert gpu.peak_tflops("NVIDIA H200") == gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0  # the longer name wins over "H100"
    assert gpu.peak_tflops("NVIDIA GeForce RTX 4090") == 165.2
    assert gpu.peak_tflops("Some Future Accelerator") is None
    # the study's settings: popsize 20 x D candidates, initial population + 20 generations
    assert [gpu.full_budget(a) for a in ("color", "rotation", "pixel")] == [1261, 1261, 6301]


@pytest.mark.timeout(600)
def test_gpu_benchmark_runs_tiny_on_this_machine(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu.py"),
            "--tiny",
            "--compile-backend",
            "eager",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tiny"] and "measure nothing" in report["note"]
    inf = report["inference"]
    assert inf["gflops_per_image"] > 0
    rows = [r for r in inf["rows"] if "images_per_s" in r]
    assert {(r["mode"], r["batch"]) for r in rows} == {(m, b) for m in ("eager", "compiled") for b in (1, 2)}
    for r in rows:
        assert r["images_per_s"] > 0 and r["module_images_per_s"] > 0
        # the JSON rounds rates to 0.1 img/s and ratios to 3 decimals: tolerances follow that rounding
        ips, mips = r["images_per_s"], r["module_images_per_s"]
        assert r["adapter_ratio"] == pytest.approx(
            ips / mips, abs=ips / mips * (0.05 / ips + 0.05 / mips) + 6e-4
        )
        assert r["tflops"] == pytest.approx(
            ips * inf["gflops_per_image"] / 1e3, rel=0.05 / ips + 2e-3, abs=6e-4
        )
        assert (r["mfu"] is None) == (report["device"]["peak_bf16_tflops"] is None)
    camp = report["campaign"]
    assert [r["attack"] for r in camp["rows"]] == ["color", "rotation", "pixel"]
    for r in camp["rows"]:
        assert r["attacked"] == r["images"] == 2  # every image attacked away from its own call
        assert r["forwards"] > r["images"] and r["wall_s"] > 0
        pure = camp["pure_images_per_s"]
        assert r["overhead"] == pytest.approx(
            r["wall_s"] / (r["forwards"] / pure), rel=0.05 / pure + 5e-4 / r["wall_s"] + 1e-3, abs=6e-4
        )
        assert r["device_path"] is (report["device"]["type"] == "cuda")
    proj = report["projection"]
    assert proj["study_images"] == 4496 and proj["full_budget_forwards"] == 4496 * (1261 + 1261 + 6301)
    assert proj["minutes_at_full_budget"] > 0 and proj["minutes_at_measured_stopping"] > 0
    train = report["training"]
    assert train["images_per_s"] > 0 and train["steps"] == 2
    if report["device"]["type"] != "cuda":
        assert train["gpu_busy_fraction"] is None and train["gpu_busy_note"] == "not a CUDA device"
