"""One writer per run folder (issue 16, item 1): ``RUN/.lock`` held for the whole run by every run kind.

Real processes where it matters: two ``dermadv attack`` processes on one ``--out`` (the second is
refused with one line naming the first's PID; every row and PNG is the first's), a SIGKILLed holder
(its folder is locked and resumed by the next process), a holder's forked worker (it does not keep the
lock alive). In-process: perturb, evaluate, train and attack refuse a folder held by another lock; a
PNG never changes once its row exists.
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

import numpy as np
import pytest
from PIL import Image

import dermadv
from campaign_support import kill_after_rows
from cli_support import run_cli
from dermadv.campaign.store import ResultsStore
from dermadv.errors import DataError
from dermadv.runs.lock import LOCK_FILE, RunInUseError, RunLock, hold_run, holding_run, is_held, read_holder
from dermadv.runs.record import RunDir, read_run

GOLDEN_MODEL = Path(__file__).resolve().parent / "golden" / "tiny_cnn.pt"
SRC = str(Path(dermadv.__file__).resolve().parents[1])
TINY_ATTACK = ["--attacks", "color,pixel", "--max-generations", "3", "--seed", "0", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + (os.pathsep + path if path else "")}


def _wait_for_holder(run: Path, proc: subprocess.Popen, timeout: float = 120.0) -> dict[str, Any]:
    """The lock details once ``proc`` holds ``run`` (fails if it ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = read_holder(run)
        if holder is not None and holder["pid"] == proc.pid:
            return holder
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before it held {run}")
        time.sleep(0.01)
    raise AssertionError(f"process did not lock {run} within {timeout} s")


def _melanoma_ids(data: Path, n: int) -> list[str]:
    from dermadv.data import select_samples

    return [s.image_id for s in select_samples(data, classes=("mel",), limit=n)]


def _attack_cmd(data: Path, out: Path, popsize: int, ids: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dermadv.cli",
        "attack",
        "--model",
        str(GOLDEN_MODEL),
        "--data",
        str(data),
        "--ids",
        ",".join(ids),
        "--out",
        str(out),
        "--popsize",
        str(popsize),
        *TINY_ATTACK,
    ]


def _main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> tuple[int, str]:
    """``dermadv ARGS`` in this process through the console entry point: (exit status, stderr)."""
    from dermadv.cli import main

    monkeypatch.setattr(sys, "argv", ["dermadv", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    code = exit_info.value.code
    return (0 if code is None else int(code)), capsys.readouterr().err


def _assert_consistent(run: Path, popsize: int) -> None:
    """Every row is this run's: one setting, its PNGs are the images its params and probabilities say."""
    from dermadv.models.registry import load_model
    from dermadv.perturb.color import color_balance

    info = read_run(run)
    assert len(info["invocations"]) == 1
    assert info["settings"]["attacks"]["color"]["search"]["popsize"] == popsize
    model = load_model(str(GOLDEN_MODEL))
    with ResultsStore(run, create=False) as store:
        rows = store.rows()
    referenced = set()
    for r in rows:
        assert r["outcome"] in ("success", "failure", "misclassified"), r
        referenced.add(r["original_path"])
        original = np.asarray(Image.open(run / r["original_path"]))
        if r["adversarial_path"] is None:
            continue
        referenced.add(r["adversarial_path"])
        adv = np.asarray(Image.open(run / r["adversarial_path"]))
        np.testing.assert_allclose(model.predict_proba(adv[None])[0], r["final_probs"], atol=1e-5)
        if r["attack"] == "color":
            assert r["params"]["population"] == max(5, popsize * 3)
            np.testing.assert_array_equal(adv, color_balance(original, r["params"]["c"])[0])
    assert {f"images/{p.name}" for p in (run / "images").iterdir()} == referenced  # no stray PNG


# ----- the lock itself ------------------------------------------------------------------------
def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run) as lock:
        holder = read_holder(run)
        assert holder is not None and holder["pid"] == os.getpid() and holder == lock.holder
        assert {"host", "command", "argv", "started"} <= set(holder)
        with pytest.raises(RunInUseError) as refused:
            RunLock(run).acquire()
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"{run} is in use by PID {os.getpid()} ({holder['command']}, started ")
        assert message.endswith("wait for it to finish or choose another --out")
        with pytest.raises(RunInUseError):  # RunDir.open (check-and-record) takes the same lock
            RunDir.open(run, "sweep", {"a": 1})
        assert not (run / "run.json").exists()
    assert not run.exists()  # taking the lock made the folder; nothing was written into it


def test_holds_in_one_process_share_the_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"

    @holding_run("out")
    def write(out: Path, value: int) -> RunDir:
        assert is_held(out)
        return RunDir.open(out, "sweep", {"value": value})  # borrows the hold: no second lock

    with hold_run(run):
        record = write(run, 1)
        record.update(status="complete")
        assert is_held(run) and (run / LOCK_FILE).exists()
    assert not is_held(run) and not (run / LOCK_FILE).exists()
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]
    with RunDir.open(run, "sweep", {"value": 1}) as again:  # a RunDir of its own holds until closed
        assert is_held(run) and again.resumed
        with pytest.raises(DataError, match="different settings"):
            RunDir.open(run, "sweep", {"value": 2})
    assert not is_held(run)
    recorded = read_run(run)
    with RunLock(run), pytest.raises(RunInUseError):  # writing needs the folder's lock
        again.update(status="changed")
    assert read_run(run) == recorded
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="file: exists and is not a directory"):
        hold_run(tmp_path / "file")


def test_sigkilled_holder_and_its_worker_leave_the_folder_free(tmp_path: Path) -> None:
    """The kernel drops a dead holder's lock; a forked worker of the holder does not keep it."""
    run = tmp_path / "run"
    script = (
        "import os, sys, time\n"
        "from dermadv.runs.record import RunDir\n"
        f"record = RunDir.open({str(run)!r}, 'sweep', {{'a': 1}})  # held while it exists\n"
        "child = os.fork()\n"
        "if child == 0:  # a worker: running, past fork\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(proc.stdout.readline())  # type: ignore[union-attr]
        holder = _wait_for_holder(run, proc)
        assert holder["command"] == "python -c"  # sys.argv of `python -c CODE`
        with pytest.raises(RunInUseError, match=f"in use by PID {proc.pid} "):
            RunDir.open(run, "sweep", {"a": 1})
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert read_holder(run)["pid"] == proc.pid  # the dead holder's file is still there...
        with RunDir.open(run, "sweep", {"a": 1}) as resumed:  # ...and no obstacle
            assert resumed.resumed and len(resumed.info["invocations"]) == 2
            assert read_holder(run)["pid"] == os.getpid()
    finally:
        proc.kill()
        proc.wait(30)
        if child:
            os.kill(child, signal.SIGKILL)


# ----- the commands ---------------------------------------------------------------------------
def test_two_attack_processes_on_one_out(tmp_path: Path, isic2019_dir: Path) -> None:
    """The second is refused (exit 2, one line naming the first's PID); the rows and PNGs are the first's."""
    run = tmp_path / "run"
    ids = _melanoma_ids(isic2019_dir, 3)
    first = subprocess.Popen(
        _attack_cmd(isic2019_dir, run, 5, ids), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        holder = _wait_for_holder(run, first)
        first.send_signal(signal.SIGSTOP)  # holding the lock mid-run while the second one starts
        try:
            second = subprocess.run(
                _attack_cmd(isic2019_dir, run, 9, ids),
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"{run} is in use by PID {first.pid} (dermadv attack --model " in lines[0]
    assert f"started {holder['started']}); wait for it to finish or choose another --out" in lines[0]
    assert holder["command"].endswith("...") and "--popsize 5" in " ".join(holder["argv"])  # long: shortened
    assert not (run / LOCK_FILE).exists()
    _assert_consistent(run, 5)

    # once the first is done, the other setting is refused by the settings check, changing nothing
    again = subprocess.run(
        _attack_cmd(isic2019_dir, run, 9, ids), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 2 and "different settings" in again.stderr and "9" in again.stderr
    _assert_consistent(run, 5)


def test_sigkilled_attack_is_resumed_by_the_next_process(tmp_path: Path, isic2019_dir: Path) -> None:
    run = tmp_path / "run"
    ids = _melanoma_ids(isic2019_dir, 4)
    cmd = _attack_cmd(isic2019_dir, run, 5, ids)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_after_rows(proc, run / "results.sqlite", rows=2)
    assert read_holder(run)["pid"] == proc.pid  # a stale lock file from the killed holder
    report = json.loads(run_cli([*cmd[3:], "--json"]))
    assert report["already_done"] >= 2 and report["already_done"] + report["ran"] == 8
    assert not (run / LOCK_FILE).exists()
    info = read_run(run)
    assert len(info["invocations"]) == 2
    _assert_consistent_rows_only(run)


def _assert_consistent_rows_only(run: Path) -> None:
    from dermadv.perturb.color import color_balance

    with ResultsStore(run, create=False) as store:
        rows = store.rows()
    assert len(rows) == 8
    for r in rows:
        if r["attack"] == "color" and r["adversarial_path"]:
            original = np.asarray(Image.open(run / r["original_path"]))
            adv = np.asarray(Image.open(run / r["adversarial_path"]))
            np.testing.assert_array_equal(adv, color_balance(original, r["params"]["c"])[0])


def _marker_folder(path: Path) -> dict[str, bytes]:
    path.mkdir()
    (path / "keep.txt").write_text("untouched")
    return _contents(path)


def _contents(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != LOCK_FILE}


@pytest.mark.parametrize("command", ["attack", "perturb", "evaluate", "train"])
def test_commands_refuse_a_held_folder(
    command: str,
    tmp_path: Path,
    isic2019_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    before = _marker_folder(out)
    model, data = str(GOLDEN_MODEL), str(isic2019_dir)
    if command == "train":  # a real split: only the lock stands in the way
        from dermadv.data import Dataset, load_dataset, make_split, select_samples

        ds = load_dataset(isic2019_dir, progress=False)
        sub = select_samples(ds, classes=("mel", "nv"), limit=20)
        split = Dataset(root=ds.root, layout=ds.layout, samples=sub)
        make_split(split, val_fraction=0.3, seed=0).write(tmp_path / "split.csv")
    args = {
        "attack": [
            "attack",
            "--model",
            model,
            "--data",
            data,
            "--limit",
            "2",
            "--out",
            str(out),
            *TINY_ATTACK,
        ],
        "perturb": [
            "perturb",
            "--model",
            model,
            "--data",
            data,
            "--limit",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ],
        "evaluate": [
            "evaluate",
            "--model",
            model,
            "--data",
            data,
            "--limit",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ],
        "train": [
            "train",
            "--data",
            data,
            "--split",
            str(tmp_path / "split.csv"),
            "--out",
            str(out),
            "--epochs",
            "1",
        ],
    }[command]
    with RunLock(out):  # another holder (a lock of its own conflicts in this process too)
        code, err = _main(monkeypatch, capsys, args)
    assert code == 2, err
    assert err.strip().count("\n") == 0
    assert f"{out} is in use by PID {os.getpid()} (" in err and "choose another --out" in err
    assert _contents(out) == before  # nothing written: no run.json, no predictions, no rows


# ----- the results store ----------------------------------------------------------------------
def _result(image: np.ndarray, adversarial: np.ndarray, c: float) -> dict[str, Any]:
    return {
        "image_id": "ISIC_1",
        "attack": "color",
        "outcome": "success",
        "original": image,
        "adversarial": adversarial,
        "params": {"c": [c, c, c]},
        "final_probs": [0.4, 0.6],
    }


def test_a_png_never_changes_once_its_row_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    first = np.full((8, 8, 3), 10, np.uint8)
    with ResultsStore(tmp_path / "run") as store:
        assert store.add(_result(image, first, 1.05))
        row = store.rows()[0]
        paths = (tmp_path / "run" / row["original_path"], tmp_path / "run" / row["adversarial_path"])
        saved = [p.read_bytes() for p in paths]
        assert row["adversarial_path"].startswith("images/ISIC_1__color-") and row[
            "adversarial_path"
        ].endswith(".png")
        assert not store.add(_result(image, first + 32, 0.95))  # the key is stored: nothing changes
        # the lost INSERT race: a second writer passed the check before the first committed
        monkeypatch.setattr(store, "has", lambda image_id, attack: False)
        assert not store.add(_result(image + 1, first + 32, 0.95))
        assert not store.add(_result(image, first, 1.05))  # the same bytes: the winner's files stay
        assert store.rows() == [row]
    assert [p.read_bytes() for p in paths] == saved
    np.testing.assert_array_equal(np.asarray(Image.open(paths[1])), first)
    assert sorted(p.name for p in (tmp_path / "run" / "images").iterdir()) == sorted(p.name for p in paths)
