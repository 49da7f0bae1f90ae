"""One writer per run folder (issue 16, item 1), with real commands on real images.

Two ``dermadv attack`` processes on one ``--out`` with different settings: the second is refused with
one line naming the first's PID, and every row and PNG is the first's (each colour-attack PNG is the
perturbation re-applied with its row's parameters). A SIGKILLed attack is resumed by the next
process. attack, perturb, evaluate and train refuse a folder another lock holds, writing nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from campaign_support import kill_after_rows
from cli_support import run_cli
from dermadv.campaign.store import ResultsStore
from dermadv.runs.lock import LOCK_FILE, RunLock, read_holder
from dermadv.runs.record import read_run
from lock_support import subprocess_env, wait_for_holder

GOLDEN_MODEL = Path(__file__).resolve().parents[1] / "golden" / "tiny_cnn.pt"
TINY_ATTACK = ["--attacks", "color,pixel", "--max-generations", "3", "--seed", "0", "--no-progress"]
pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_two_attack_processes_on_one_out(tmp_path: Path, isic2019_dir: Path) -> None:
    """The second is refused (exit 2, one line naming the first's PID); the rows and PNGs are the first's."""
    run = tmp_path / "run"
    ids = _melanoma_ids(isic2019_dir, 3)
    first = subprocess.Popen(
        _attack_cmd(isic2019_dir, run, 5, ids),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        holder = wait_for_holder(run, first)
        first.send_signal(signal.SIGSTOP)  # holding the lock mid-run while the second one starts
        try:
            second = subprocess.run(
                _attack_cmd(isic2019_dir, run, 9, ids),
                env=subprocess_env(),
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
        _attack_cmd(isic2019_dir, run, 9, ids),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2 and "different settings" in again.stderr and "9" in again.stderr
    _assert_consistent(run, 5)


def test_sigkilled_attack_is_resumed_by_the_next_process(tmp_path: Path, isic2019_dir: Path) -> None:
    run = tmp_path / "run"
    ids = _melanoma_ids(isic2019_dir, 4)
    cmd = _attack_cmd(isic2019_dir, run, 5, ids)
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
