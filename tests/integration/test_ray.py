"""Campaigns on a real local Ray cluster (2 worker processes on this machine) over real ISIC images.

Shows that ``--executor ray`` gives exactly the rows of the local executor, that a worker process
killed mid-run loses and doubles nothing (its unit runs again elsewhere), that a killed driver is
resumed by rerunning the command, and that ``--executor ray`` without Ray installed names the extra.
The model is a tiny CNN trained briefly on real images and exported as TorchScript (a model file
the workers load themselves); attack budgets are tiny.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaign_support import kill_after_rows, train_tiny_torchscript
from dermadv.campaign.runner import run_campaign
from dermadv.campaign.store import ResultsStore
from dermadv.data import select_samples
from dermadv.errors import MissingExtraError
from dermadv.models.registry import load_model

pytest.importorskip("ray", reason="dermadv[ray] not installed")

SIZE = 64
ATTACKS = ["color", "rotation"]
TINY = {"popsize": 4, "max_generations": 3, "threshold": 0.99}
N_IMAGES = 5
TIMING = ("seconds", "finished_at")
GT_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    """A 2-conv-layer CNN trained for a few seconds on 120 real images, exported as TorchScript."""
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    return train_tiny_torchscript(
        isic2019_dir, out, size=SIZE, n_images=120, conv_layers=2, epochs=8, batch=40
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    """ISIC 2019 layout with real melanomas (symlinked, not copied)."""
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    lines = [GT_HEADER]
    for s in select_samples(isic2019_dir, classes=("mel",), limit=N_IMAGES):
        (root / "images" / f"{s.image_id}.jpg").symlink_to(s.path)
        lines.append(f"{s.image_id},1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n")
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("".join(lines))
    return root


@pytest.fixture(scope="module")
def local_rows(tiny_model: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The reference: the same campaign with the local executor (one thread, like each Ray worker)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("runs") / "local"
        run_campaign(
            load_model(str(tiny_model)),
            select_samples(data_dir, classes=("mel",)),
            run,
            ATTACKS,
            attack_options=TINY,
            data_info={"path": str(data_dir)},
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    with ResultsStore(run, create=False) as store:
        rows = store.rows()
    assert len(rows) == N_IMAGES * len(ATTACKS)
    assert {r["outcome"] for r in rows} & {"success", "failure"}, "no image was attacked at all"
    return rows


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A Ray instance with 2 CPUs (so 2 worker actors) on this machine; yields its GCS address."""
    import ray

    os.environ["RAY_DISABLE_USAGE_STATS"] = "1"
    # Ray's memory monitor kills workers when the *machine* is nearly full, whoever uses the memory;
    # on a shared test machine that would kill workers at random, so only our own kill tests recovery
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class KillOneWorker:
    """Wraps a RayExecutor: after the first result, SIGKILLs a worker process that is running a unit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.killed: int | None = None

    def run(self, units: Any) -> Iterator[Any]:
        for pair in self.inner.run(units):
            if self.killed is None:
                busy = self.inner.busy_worker_pids()
                assert busy, "no worker was busy after the first result"
                self.killed = busy[0]
                os.kill(self.killed, signal.SIGKILL)
            yield pair


def test_ray_rows_equal_local_and_survive_a_killed_worker(
    ray_cluster: str, tiny_model: Path, data_dir: Path, local_rows: list[dict], tmp_path: Path
) -> None:
    from dermadv.runs.executor import RayExecutor
    from dermadv.runs.specs import ModelSpec

    model = load_model(str(tiny_model))
    executor = RayExecutor(ModelSpec(str(tiny_model)), workers=2, reference_model=model, verbose=False)
    killer = KillOneWorker(executor)
    samples = select_samples(data_dir, classes=("mel",))
    out = run_campaign(
        model,
        samples,
        tmp_path / "ray",
        ATTACKS,
        attack_options=TINY,
        data_info={"path": str(data_dir)},
        executor=killer,
        progress=False,
    )
    assert out.ran == N_IMAGES * len(ATTACKS)
    with ResultsStore(tmp_path / "ray", create=False) as store:
        rows = store.rows()
    # every row (outcome, params, probabilities, confidences, queries, seed, image paths) as local
    assert _comparable(rows) == _comparable(local_rows)
    stats = executor.stats()
    assert killer.killed is not None and stats["worker_failures"] >= 1 and stats["retried_units"] >= 1
    per_worker = stats["per_worker"]
    assert len(per_worker) == 2 and any(w["jobs"] > 0 and not w["failures"] for w in per_worker), per_worker
    assert sum(w["jobs"] for w in per_worker) == stats["jobs"] == len(rows)
    assert stats["images"] == N_IMAGES and stats["images_per_s"] > 0
    assert sum(killer.killed in w["pids"] for w in per_worker) == 1
    assert ray_is_clean_of_actors()


def ray_is_clean_of_actors(timeout: float = 20.0) -> bool:
    """The executor kills its actors when the run ends (their CPUs are free for the next run)."""
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= 2:
            return True
        time.sleep(0.2)
    return False


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dermadv.cli", "attack", *args]


def test_cli_ray_driver_killed_then_resumed(
    ray_cluster: str, tiny_model: Path, data_dir: Path, local_rows: list[dict], tmp_path: Path
) -> None:
    run = tmp_path / "cli"
    cmd = _cli(
        "--model",
        str(tiny_model),
        "--data",
        str(data_dir),
        "--attacks",
        ",".join(ATTACKS),
        "--out",
        str(run),
        "--popsize",
        "4",
        "--max-generations",
        "3",
        "--threshold",
        "0.99",
        "--executor",
        "ray",
        "--address",
        ray_cluster,
        "--no-progress",
    )
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_after_rows(proc, run / "results.sqlite", timeout=90)
    with ResultsStore(run, create=False) as store:
        before = len(store)
    assert 2 <= before < N_IMAGES * len(ATTACKS)

    done = subprocess.run(
        cmd + ["--json", "--workers", "2"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["already_done"] == before and report["ran"] == N_IMAGES * len(ATTACKS) - before
    ray_stats = report["executor"]
    assert ray_stats["executor"] == "ray" and ray_stats["workers"] == 2
    assert ray_stats["jobs"] == report["ran"] == sum(w["jobs"] for w in ray_stats["per_worker"])
    with ResultsStore(run, create=False) as store:
        rows = store.rows()
    assert _comparable(rows) == _comparable(local_rows)  # none lost, none twice, all as local


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> None:
    from dermadv.runs.executor import LocalExecutor, make_executor
    from dermadv.runs.specs import ModelSpec

    assert isinstance(make_executor("local", ModelSpec(str(tiny_model))), LocalExecutor)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(MissingExtraError, match=r"dermadv\[ray\]"):
        make_executor("ray", ModelSpec(str(tiny_model)))


def test_perturbation_sweep_on_ray_equals_local(
    ray_cluster: str, tiny_model: Path, isic2019_dir: Path, tmp_path: Path
) -> None:
    """`dermadv perturb --executor ray`: one unit per perturbation, the same scores as in-process."""
    import torch
    from typer.testing import CliRunner

    from dermadv.cli import app
    from dermadv.perturb.sweep import run_sweep

    specs = "rot:45,shift:r:+10,decoder:other"
    samples = select_samples(isic2019_dir, classes=("mel", "nv"), limit=24)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_sweep(
            load_model(str(tiny_model)), samples, tmp_path / "local", specs, batch_size=8, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    res = CliRunner().invoke(
        app,
        [
            "perturb",
            "--model",
            str(tiny_model),
            "--data",
            str(isic2019_dir),
            "--limit",
            "24",
            "--perturbations",
            specs,
            "--batch-size",
            "8",
            "--out",
            str(tmp_path / "ray"),
            "--no-progress",
            "--executor",
            "ray",
            "--workers",
            "2",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["rows"] == local.rows and len(report["rows"]) == 4  # baseline + 3 perturbations
    assert (tmp_path / "ray" / "perturbation_scores.csv").read_text() == (
        tmp_path / "local" / "perturbation_scores.csv"
    ).read_text()
    stats = report["executor"]
    assert stats["workers"] == 2 and stats["jobs"] == 4 == sum(w["jobs"] for w in stats["per_worker"])
    assert stats["images"] == 4 * 24
    assert ray_is_clean_of_actors()
