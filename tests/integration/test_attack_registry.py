"""Attacks, searches and perturbations as registered extensions (dermadv.registry), end to end.

Checks that registry-built attacks describe themselves exactly as before (run.json settings hashes
unchanged), that every registered class lists its options explicitly, that an attack and a
perturbation registered here (a real per-channel gamma search) run through ``run_campaign`` and
``dermadv attack --attacks NAME``, that ``--attack-option NAME.KEY=VALUE`` reaches the attack (and
run.json), and that bad names and options are one-line errors. The model is a tiny CNN trained
briefly on real ISIC images (tests/campaign_support.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from attack_registry_support import GAMMA_ATTACK, Gamma
from campaign_support import train_tiny_torchscript
from cli_support import run_cli
from dermadv.attacks import (
    ATTACKS,
    AttackConfigError,
    make_attack,
    register_attack,
    study_attacks,
)
from dermadv.campaign.runner import read_run_info, resolve_attacks, run_campaign
from dermadv.campaign.store import ResultsStore
from dermadv.data import select_samples
from dermadv.errors import DataError
from dermadv.models.registry import load_model
from dermadv.perturb import PERTURBATIONS, ChannelShift

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SIZE = 48


@pytest.fixture
def plugin() -> Iterator[None]:
    """Register "gamma" as a perturbation and as an attack for one test, then remove both."""
    PERTURBATIONS.add("gamma", Gamma)
    register_attack("gamma", GAMMA_ATTACK)
    try:
        yield
    finally:
        PERTURBATIONS._entries.pop("gamma", None)
        ATTACKS._entries.pop("gamma", None)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, isic2019_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    return train_tiny_torchscript(
        isic2019_dir, out, size=SIZE, n_images=120, conv_layers=2, epochs=8, batch=40
    )


@pytest.fixture(scope="module")
def called_melanoma(tiny_model: Path, isic2019_dir: Path) -> list[str]:
    """Ids of real melanomas the tiny model calls melanoma (so every attack really searches)."""
    model = load_model(str(tiny_model))
    samples = select_samples(isic2019_dir, classes=("mel",), limit=40)
    images = np.stack([model.prepare(model.load_image(str(s.path)))[0] for s in samples])
    p_mel = model.predict_proba(images)[:, list(model.classes).index("mel")]
    ids = [s.image_id for s, p in zip(samples, p_mel, strict=True) if p > 0.5]
    assert len(ids) >= 2, f"the tiny model calls only {len(ids)} of 40 melanomas melanoma"
    return ids[:2]


def test_evolve_over_a_perturbation_equals_the_dedicated_attack(
    tiny_model: Path, isic2019_dir: Path, called_melanoma: list[str]
) -> None:
    model = load_model(str(tiny_model))
    sample = select_samples(isic2019_dir, classes=("mel",), ids=called_melanoma[:1])[0]
    image = model.prepare(model.load_image(str(sample.path)))[0]
    run = {"image_id": sample.image_id, "seed": 3}
    a = make_attack("color", delta=0.2, popsize=3, maxiter=3).run(model, image, **run)
    b = make_attack(
        "evolve", perturbation="color", perturbation_options="delta=0.2", popsize=3, maxiter=3
    ).run(model, image, **run)
    assert a.outcome in ("success", "failure")
    assert (b.outcome, b.params, b.queries, b.generations) == (a.outcome, a.params, a.queries, a.generations)
    np.testing.assert_array_equal(b.adversarial, a.adversarial)
    assert b.attack == "evolve"
    shifted = make_attack(
        "evolve", perturbation="shift", perturbation_options={"max_shift": 10}, popsize=2, maxiter=1
    ).run(model, image, **run)
    assert set(shifted.params) >= {"s_r", "s_g", "s_b"} and all(
        abs(shifted.params[k]) <= 10 for k in ("s_r", "s_g", "s_b")
    )
    diff = shifted.adversarial.astype(int) - image.astype(int)
    assert np.abs(diff).max() <= 10 and isinstance(make_attack("evolve").perturbation, ChannelShift)


# ----- a plugin attack through the campaign and the command line --------------------------------
def test_registered_attack_runs_in_a_campaign(
    plugin: None, tiny_model: Path, isic2019_dir: Path, called_melanoma: list[str], tmp_path: Path
) -> None:
    model = load_model(str(tiny_model))
    assert resolve_attacks(None, model)[0] == list(study_attacks())  # a plugin runs only when named
    samples = select_samples(isic2019_dir, classes=("mel",), ids=called_melanoma)
    out = run_campaign(
        model,
        samples,
        tmp_path / "run",
        ["gamma", "Evolve"],
        attack_options={
            "popsize": 2,
            "max_generations": 2,
            "gamma.ratio": "2",
            "evolve.perturbation": "gamma",
        },
        data_info={"path": str(isic2019_dir)},
        progress=False,
    )
    assert out.attacks == ["gamma", "evolve"] and out.ran == 4
    with ResultsStore(tmp_path / "run", create=False) as store:
        rows = store.rows()
    assert {(r["image_id"], r["attack"]) for r in rows} == {
        (i, a) for i in called_melanoma for a in ("gamma", "evolve")
    }
    for r in rows:
        assert r["outcome"] in ("success", "failure") and r["queries"] > 1
        assert set(r["params"]) >= {"g_r", "g_g", "g_b"}
    attacks = read_run_info(tmp_path / "run")["settings"]["attacks"]
    assert attacks["gamma"]["perturbation"] == {
        "name": "gamma",
        "params": ["g_r", "g_g", "g_b"],
        "ratio": 2.0,
    }
    assert attacks["evolve"]["perturbation"]["ratio"] == 1.5 and attacks["evolve"]["search"]["maxiter"] == 2
    for r in rows:  # ratio 2 for gamma, 1.5 for evolve's default Gamma
        bound = 2.0 if r["attack"] == "gamma" else 1.5
        assert all(1 / bound <= r["params"][k] <= bound for k in ("g_r", "g_g", "g_b"))


def _attack_cli(model: Path, data: Path, ids: list[str], out: Path, *extra: str) -> list[str]:
    return [
        "attack",
        "--model",
        str(model),
        "--data",
        str(data),
        "--ids",
        ",".join(ids),
        "--out",
        str(out),
        "--popsize",
        "2",
        "--max-generations",
        "1",
        "--no-progress",
        "--json",
        *extra,
    ]


def test_cli_attack_options_reach_the_attacks(
    plugin: None, tiny_model: Path, isic2019_dir: Path, called_melanoma: list[str], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = _attack_cli(
        tiny_model,
        isic2019_dir,
        called_melanoma,
        run,
        "--attacks",
        "gamma,evolve,pgd",
        "-a",
        "evolve.perturbation=shift",
        "-a",
        "evolve.perturbation_options=max_shift=20",
        "--attack-option",
        "gamma.maxiter=2",
        "-a",
        "pgd.steps=2",
        "-a",
        "gamma.ratio=1.2",
    )
    report = json.loads(run_cli(args))
    assert report["attacks_run"] == ["gamma", "evolve", "pgd"] and report["ran"] == 6
    attacks = read_run_info(run)["settings"]["attacks"]
    assert attacks["evolve"]["perturbation"] == {
        "name": "shift",
        "params": ["s_r", "s_g", "s_b"],
        "max_shift": 20.0,
    }
    assert attacks["evolve"]["perturbation_options"] == {"max_shift": 20.0}
    assert attacks["evolve"]["search"]["maxiter"] == 1  # the shared --max-generations
    assert attacks["gamma"]["search"]["maxiter"] == 2 and attacks["gamma"]["perturbation"]["ratio"] == 1.2
    assert attacks["pgd"]["steps"] == 2
    with ResultsStore(run, create=False) as store:
        rows = store.rows()
    assert {r["attack"] for r in rows} == {"gamma", "evolve", "pgd"}
    assert all(
        r["generations"] == 2 for r in rows if r["attack"] == "pgd" and r["outcome"] != "misclassified"
    )
    # the options are part of the run's settings: a resume with another value is refused
    changed = [
        a if a != "evolve.perturbation_options=max_shift=20" else "evolve.perturbation_options=max_shift=30"
        for a in args
    ]
    with pytest.raises(DataError, match=r"attacks\.evolve\.perturbation\.max_shift: 20\.0 -> 30\.0"):
        run_cli(changed)
    assert json.loads(run_cli(args))["ran"] == 0  # the same options resume


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("nope.steps=3", "unknown attack 'nope'; choose one of: fgsm, pgd, pixel, color, rotation, evolve"),
        ("pgd.steps=3", "--attack-option pgd.steps: attack 'pgd' is not in this campaign (attacks: color)"),
        (
            "color.colour=1",
            "--attack-option color.colour: attack 'color' has no option 'colour'; "
            "valid options: atol, batch_score, batch_size, chunk, criterion, delta",
        ),
        ("color=1", "--attack-option 'color=1': expected NAME.KEY=VALUE"),
        ("color.maxiter=lots", "attack 'color': option maxiter='lots' is not a valid int"),
    ],
)
def test_cli_bad_attack_options_are_one_line_errors(
    tiny_model: Path,
    isic2019_dir: Path,
    called_melanoma: list[str],
    tmp_path: Path,
    option: str,
    message: str,
) -> None:
    args = _attack_cli(
        tiny_model, isic2019_dir, called_melanoma, tmp_path / "run", "--attacks", "color", "-a", option
    )
    with pytest.raises(AttackConfigError) as err:
        run_cli(args)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "results.sqlite").exists()  # refused before anything ran


def test_cli_bad_attack_option_exits_2(
    tiny_model: Path, isic2019_dir: Path, called_melanoma: list[str], tmp_path: Path
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "dermadv.cli",
        *_attack_cli(tiny_model, isic2019_dir, called_melanoma, tmp_path / "run", "-a", "nope.x=1"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: unknown attack 'nope'; choose one of: fgsm")
    assert "Traceback" not in res.stderr
