"""Attacks, searches and perturbations as registered extensions (dermadv.registry), end to end.

Checks that registry-built attacks describe themselves exactly as before (run.json settings hashes
unchanged), that every registered class lists its options explicitly, that an attack and a
perturbation registered here (a real per-channel gamma search) run through ``run_campaign`` and
``dermadv attack --attacks NAME``, that ``--attack-option NAME.KEY=VALUE`` reaches the attack (and
run.json), and that bad names and options are one-line errors. The model is a tiny CNN trained
briefly on real ISIC images (tests/campaign_support.py).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from campaign_support import train_tiny_torchscript
from cli_support import run_cli
from dermadv.attacks import (
    ATTACKS,
    SEARCHES,
    Attack,
    AttackConfigError,
    ColorAttack,
    DEOptions,
    DESearch,
    EvolutionaryAttack,
    attack_class,
    attack_options,
    available_attacks,
    make_attack,
    parse_attack_options,
    register_attack,
    study_attacks,
)
from dermadv.campaign.runner import build_attacks, read_run_info, resolve_attacks, run_campaign
from dermadv.campaign.store import ResultsStore
from dermadv.data import select_samples
from dermadv.errors import DataError
from dermadv.models.registry import load_model
from dermadv.perturb import PERTURBATIONS, ChannelShift, ColorBalance, Perturbation
from dermadv.perturb.base import apply_tables, check_image
from dermadv.registry import RegistryError

SIZE = 48
SEARCH_OPTIONS = (
    "popsize",
    "maxiter",
    "mutation",
    "recombination",
    "init",
    "tol",
    "atol",
    "threshold",
    "fitness",
    "batch_score",
    "batch_size",
)
DE_SEARCH = {
    "popsize": 20,
    "maxiter": 20,
    "mutation": [0.5, 1.0],
    "recombination": 1.0,
    "init": "latinhypercube",
    "tol": 0.0,
    "atol": -1.0,
    "strategy": "best1bin",
    "updating": "deferred",
    "polish": False,
}


# ----- a real plugin: per-channel gamma, searched by DE -----------------------------------------
class Gamma(Perturbation):
    """Params (g_r, g_g, g_b) in [1/ratio, ratio]: x -> round(255 * (x / 255) ** g) per channel."""

    name = "gamma"
    param_names = ("g_r", "g_g", "g_b")

    def __init__(self, ratio: float = 1.5) -> None:
        if not float(ratio) > 1:
            raise ValueError(f"Gamma: ratio must be > 1, got {ratio!r}")
        self.ratio = float(ratio)

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        return [(1 / self.ratio, self.ratio)] * 3

    def apply(self, image: np.ndarray, params: np.ndarray, device: Any = None) -> np.ndarray:
        g = self.check_params(params)[:, :, None]
        v = np.arange(256, dtype=np.float64) / 255
        tables = np.clip(np.round(255 * v[None, None, :] ** g), 0, 255).astype(np.uint8)
        return apply_tables(check_image(image)[None], tables)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": list(self.param_names), "ratio": self.ratio}


class GammaAttack(EvolutionaryAttack):
    """A plugin attack: DE over :class:`Gamma`, its options explicit."""

    name = "gamma"

    def __init__(
        self, ratio: float = 1.5, *, popsize: int = 20, maxiter: int = 20, threshold: float = 0.9
    ) -> None:
        super().__init__(Gamma(ratio), popsize=popsize, maxiter=maxiter, threshold=threshold)


@pytest.fixture
def plugin() -> Iterator[None]:
    """Register "gamma" as a perturbation and as an attack for one test, then remove both."""
    PERTURBATIONS.add("gamma", Gamma)
    register_attack("gamma", f"{__name__}:GammaAttack")
    try:
        yield
    finally:
        PERTURBATIONS._entries.pop("gamma", None)
        ATTACKS._entries.pop("gamma", None)


# ----- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# ----- the registry itself ----------------------------------------------------------------------
def test_registry_built_attacks_describe_as_before() -> None:
    """The describe() of the classes that used to pass **options (values recorded before the change)."""
    assert make_attack("color").describe() == {
        "attack": "color",
        "white_box_only": False,
        "threshold": 0.9,
        "fitness": "auto",
        "batch_size": None,
        "perturbation": {
            "name": "color",
            "params": ["c_r", "c_g", "c_b"],
            "delta": 0.1,
            "arithmetic": "float64 multiply, clip to [0, 255], truncate (numpy astype(uint8))",
        },
        "search": DE_SEARCH,
        "batch_score": True,
    }
    assert make_attack("fgsm", eps="4,1", batch_size=8).describe() == {
        "attack": "fgsm",
        "white_box_only": True,
        "batch_size": 8,
        "eps": [1.0, 4.0],
    }
    assert make_attack("pgd", steps="3").describe() == {
        "attack": "pgd",
        "white_box_only": True,
        "batch_size": None,
        "eps": 8.0,
        "step_size": 2.0,
        "steps": 3,
        "random_start": True,
    }
    rot = make_attack("rotation", max_shift=10, fitness="margin", batch_score="no", maxiter="4").describe()
    assert rot["perturbation"] == {
        "name": "rotation",
        "params": ["angle_deg", "dx", "dy"],
        "max_shift": 10.0,
        "reference_size": 299.0,
        "interpolation": "bilinear, black fill, round half to even",
    }
    assert (rot["fitness"], rot["batch_score"], rot["search"]["maxiter"]) == ("margin", False, 4)
    pixel = make_attack("pixel", d=1, popsize=2).describe()
    assert pixel["perturbation"]["d"] == 1 and pixel["search"]["popsize"] == 2
    # the class built directly, by keyword, equals the registry's (same defaults, same order)
    assert ColorAttack(0.2, popsize=5).describe() == make_attack("color", delta="0.2", popsize="5").describe()


def test_every_registered_class_lists_its_options() -> None:
    for registry in (ATTACKS, SEARCHES, PERTURBATIONS):
        for entry in registry.entries():
            target = entry.obj.__init__ if isinstance(entry.obj, type) else entry.obj
            kinds = [p.kind for p in inspect.signature(target).parameters.values()]
            assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{registry.kind} {entry.name} takes **kwargs"
            assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"{registry.kind} {entry.name} takes *args"
    for name in ("pixel", "color", "rotation", "evolve"):
        assert set(SEARCH_OPTIONS) <= set(attack_options(name)), name
    assert list(attack_options("fgsm")) == ["eps", "batch_size"]
    assert list(attack_options("pgd")) == ["eps", "step_size", "steps", "random_start", "batch_size"]


def test_metadata_gives_the_study_default_set() -> None:
    study = ("fgsm", "pgd", "pixel", "color", "rotation")
    assert study_attacks() == study and available_attacks()[:5] == study and "evolve" in available_attacks()
    import dermadv.attacks

    assert dermadv.attacks.ATTACK_NAMES == study  # the old name, now read from the registry
    for name in available_attacks():
        cls = attack_class(name)
        assert ATTACKS.meta(name)["builtin"] is True and cls.name == name
        assert ATTACKS.meta(name).get("white_box_only", False) == cls.white_box_only
        assert make_attack(name).describe()["attack"] == name
    assert set(PERTURBATIONS.names()) >= {"color", "rotation", "pixel", "shift"}
    for name in PERTURBATIONS.names():
        assert PERTURBATIONS.get(name).name == name  # registered name = the name in describe()
    assert PERTURBATIONS.create("shift", max_shift="20").bounds((8, 8, 3)) == [(-20.0, 20.0)] * 3
    assert isinstance(PERTURBATIONS.create("color", delta="0.05"), ColorBalance)


def test_de_search_is_registered_and_creatable() -> None:
    bounds = [(0.0, 1.0), (-2.0, 2.0)]
    search = SEARCHES.create("de", bounds=bounds, popsize="3", mutation="0.7", seed=5)
    ref = DESearch(bounds, DEOptions(popsize=3, mutation=0.7), 5)
    assert search.size == ref.size == 6 and search.options == ref.options
    np.testing.assert_array_equal(search.ask(), ref.ask())
    assert "popsize" in SEARCHES.options("de") and SEARCHES.meta("de")["builtin"] is True


def test_errors_are_attack_config_errors_naming_what_is_valid() -> None:
    with pytest.raises(AttackConfigError, match="unknown attack 'deepfool'; choose one of: fgsm, pgd") as err:
        make_attack("deepfool")
    assert isinstance(err.value, RegistryError) and "\n" not in str(err.value)
    with pytest.raises(
        AttackConfigError, match=r"unknown option\(s\) popsiz; valid options: atol, batch_score"
    ):
        make_attack("color", popsiz=3)
    with pytest.raises(AttackConfigError, match="option maxiter='many' is not a valid int"):
        make_attack("color", maxiter="many")
    with pytest.raises(AttackConfigError, match=r"delta must be in \(0, 1\)"):
        make_attack("color", delta="2")
    with pytest.raises(AttackConfigError, match="batch_size must be a positive integer"):
        make_attack("pgd", batch_size="abc")
    with pytest.raises(AttackConfigError, match="unknown perturbation 'nope'; choose one of: .*shift"):
        make_attack("evolve", perturbation="nope")
    with pytest.raises(AttackConfigError, match=r"unknown option\(s\) delta; valid options: max_shift"):
        make_attack("evolve", perturbation="shift", perturbation_options="delta=0.1")
    with pytest.raises(AttackConfigError, match="evolve: perturbation 'shift': option max_shift='big'"):
        make_attack("evolve", perturbation_options="max_shift=big")
    with pytest.raises(AttackConfigError, match="cannot import 'no_such_module_xyz:Cls'"):
        register_attack("x", "no_such_module_xyz:Cls")
    with pytest.raises(AttackConfigError, match="not an Attack subclass"):
        register_attack("x", ColorBalance)  # type: ignore[arg-type]
    with pytest.raises(AttackConfigError, match="registered twice"):
        register_attack("color", f"{__name__}:GammaAttack")

    class Loose(Attack):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)

        def _attack(self, model, jobs, t0):  # type: ignore[no-untyped-def]
            return []

    with pytest.raises(AttackConfigError, match="explicit keyword argument"):
        register_attack("loose", Loose)
    assert "loose" not in ATTACKS and "x" not in ATTACKS


def test_build_attacks_applies_shared_and_per_attack_options() -> None:
    built = build_attacks(
        ["color", "pgd", "evolve"],
        {
            "popsize": 3,
            "max_generations": 2,
            "eps": [2, 8],
            "threshold": None,
            "color.maxiter": "5",
            "color.delta": "0.05",
            "evolve.perturbation": "color",
            "fgsm.eps": "1",
        },
    )
    color = built["color"].describe()
    assert color["search"]["maxiter"] == 5 and color["search"]["popsize"] == 3  # own beats shared
    assert color["perturbation"]["delta"] == 0.05 and color["threshold"] == 0.9
    assert built["pgd"].eps == 8.0  # one-eps attack: the largest of the shared list
    assert built["evolve"].describe()["perturbation_name"] == "color"
    assert built["evolve"].options.maxiter == 2  # max_generations -> maxiter
    assert set(built) == {"color", "pgd", "evolve"}  # fgsm.eps is checked, but fgsm is not built
    with pytest.raises(
        AttackConfigError, match="attack 'fgsm' has no option 'steps'; valid options: batch_size"
    ):
        build_attacks(["color"], {"fgsm.steps": "3"})
    with pytest.raises(AttackConfigError, match="unknown attack 'nope'"):
        build_attacks(["color"], {"nope.x": "3"})


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
            "valid options: atol, batch_score, batch_size, delta",
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


def test_parse_attack_options() -> None:
    assert parse_attack_options(
        ["color.delta=0.05", "pgd.random-start=no", "evolve.perturbation_options=a=1,b=2"]
    ) == {"color.delta": "0.05", "pgd.random_start": "no", "evolve.perturbation_options": "a=1,b=2"}
    assert parse_attack_options(None) == {}
