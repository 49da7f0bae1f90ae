"""One writer per run folder (issue 16, item 1): the lock on ``RUN/.lock`` and the results store.

The lock refuses a second holder with one line naming the first; holds within a process share it; a
SIGKILLed holder (and its forked worker, still running) leaves a folder the next process locks and
resumes; a campaign PNG never changes once its row exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dermadv.campaign.store import ResultsStore
from dermadv.errors import DataError
from dermadv.runs.lock import LOCK_FILE, RunInUseError, RunLock, hold_run, holding_run, is_held, read_holder
from dermadv.runs.record import RunDir, read_run
from lock_support import subprocess_env, wait_for_holder


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
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        child = int(proc.stdout.readline())  # type: ignore[union-attr]
        holder = wait_for_holder(run, proc)
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
