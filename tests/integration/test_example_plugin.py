"""The example plugin package, installed for real (pip, into a temporary folder), extends dermadv through
its entry points alone: its perturbation ``vignette`` (searched by the built-in ``evolve`` attack), its
attack ``vignette``, its model format ``npz-logreg`` and its report section ``melanoma-scores`` are used
from the CLI (`dermadv evaluate / attack / report / models list`), through the Python API
(``run_campaign``) and on Ray workers; without it on the path, none of them is there.

Everything runs in subprocesses with the install folder on PYTHONPATH (``importlib.metadata`` finds its
dist-info there), so this test process never imports the plugin and its registries stay as they are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dermadv.campaign.store import ResultsStore
from plugin_support import INPUT_SIZE, PLUGIN_DIR, REPO, fit_channel_mean_logreg

SRC = REPO / "src"
#: Tiny search budgets: two images, a few candidates, one generation after the initial population.
BUDGET = ["--popsize", "2", "--max-generations", "1", "--threshold", "0.99"]
#: Row fields that differ between two runs of the same campaign.
TIMING = ("seconds", "finished_at")


def _run(
    args: list[str], pythonpath: list[Path], cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath),
        OMP_NUM_THREADS="1",
        RAY_DISABLE_USAGE_STATS="1",
        # Ray's memory monitor kills workers when the machine is nearly full, whoever uses the memory
        RAY_memory_monitor_refresh_ms="0",
    )
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def _cli(
    args: list[str], pythonpath: list[Path], cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess:
    return _run(["-m", "dermadv.cli", *args], pythonpath, cwd, timeout)


def _rows(run: Path) -> list[dict]:
    with ResultsStore(run, create=False) as store:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in store.rows()]


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin, pip-installed (no dependencies, no index) into a temporary folder, once per session."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("plugin-src") / PLUGIN_DIR.name  # the build leaves files beside it
    shutil.copytree(PLUGIN_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for module in ("npz_format", "report_section", "vignette", "vignette_attack"):
        assert (target / "dermadv_example_plugin" / f"{module}.py").is_file()
    (entry_points,) = target.glob("dermadv_example_plugin-*.dist-info/entry_points.txt")
    groups = re.findall(r"^\[(dermadv\.\w+)\]", entry_points.read_text(), re.M)
    assert sorted(groups) == [
        "dermadv.attacks",
        "dermadv.model_formats",
        "dermadv.perturbations",
        "dermadv.report_sections",
    ]
    return target


@pytest.fixture(scope="module")
def with_plugin(installed: Path) -> list[Path]:
    return [installed, SRC]


@pytest.fixture(scope="module")
def fitted(isic2019_dir: Path) -> dict:
    return fit_channel_mean_logreg(isic2019_dir)


@pytest.fixture(scope="module")
def model_file(fitted: dict, with_plugin: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real npz-logreg model (fitted on 40 ISIC images), saved with the plugin's own save_model."""
    model = tmp_path_factory.mktemp("model") / "logreg.npz"
    save = (
        "import sys, json, numpy as np\n"
        "from dermadv_example_plugin.npz_format import save_model\n"
        "m = json.loads(sys.argv[1])\n"
        "save_model(sys.argv[2], m['classes'], np.array(m['coef']), np.array(m['intercept']),\n"
        "           tuple(m['size']))\n"
    )
    spec = {k: fitted[k] for k in ("classes", "coef", "intercept")} | {"size": list(INPUT_SIZE)}
    done = _run(["-c", save, json.dumps(spec), str(model)], with_plugin, model.parent)
    assert done.returncode == 0, done.stderr
    return model


@pytest.fixture(scope="module")
def evaluation_run(
    fitted: dict,
    model_file: Path,
    with_plugin: list[Path],
    isic2019_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """`dermadv evaluate` of the npz-logreg model on 12 real images: the plugin's format loads it."""
    ids = ",".join(s.image_id for s in fitted["samples"][:12])
    ev = tmp_path_factory.mktemp("runs") / "ev"
    args = ["evaluate", "--model", str(model_file), "--data", str(isic2019_dir), "--ids", ids]
    done = _cli([*args, "--out", str(ev), "--no-progress", "--json"], with_plugin, ev.parent)
    assert done.returncode == 0, done.stderr
    y = np.array([s.diagnosis == "mel" for s in fitted["samples"][:12]])
    accuracy = json.loads(done.stdout)["accuracy"]["value"]
    assert accuracy == pytest.approx(float(np.mean((fitted["probs"][:12, 1] >= 0.5) == y)))
    # without the plugin the same file is an unknown model file type, said in one line
    done = _cli([*args, "--no-progress"], [SRC], ev.parent)
    assert done.returncode == 2 and "unknown model file type '.npz'" in done.stderr
    assert "Traceback" not in done.stderr
    return ev


@pytest.fixture(scope="module")
def melanoma_ids(fitted: dict) -> str:
    """Two real melanomas the model calls melanoma (so each attack searches, not skips, them)."""
    called = [
        s.image_id
        for s, p in zip(fitted["samples"], fitted["probs"], strict=True)
        if s.diagnosis == "mel" and p[1] > 0.5
    ]
    assert len(called) >= 2, "the fitted model calls fewer than two melanomas melanoma"
    return ",".join(called[:2])


def _attack_args(model: Path, data: Path, ids: str, attacks: str, out: Path) -> list[str]:
    return [
        "attack",
        "--model",
        str(model),
        "--data",
        str(data),
        "--ids",
        ids,
        "--attacks",
        attacks,
        "--out",
        str(out),
        *BUDGET,
        "--no-progress",
        "--json",
    ]


@pytest.fixture(scope="module")
def attack_run(
    model_file: Path,
    melanoma_ids: str,
    with_plugin: list[Path],
    isic2019_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """`dermadv attack` on the plugin's model with colour, the plugin's attack, and ``evolve`` searching
    the plugin's perturbation."""
    run = tmp_path_factory.mktemp("runs") / "attack"
    args = _attack_args(model_file, isic2019_dir, melanoma_ids, "color,vignette,evolve", run)
    done = _cli(
        [*args, "-a", "evolve.perturbation=vignette", "-a", "vignette.max_strength=0.4"],
        with_plugin,
        run.parent,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["attacks_run"] == ["color", "vignette", "evolve"] and report["ran"] == 6
    return run


def test_installed_plugin_format_and_section(
    evaluation_run: Path, with_plugin: list[Path], tmp_path: Path
) -> None:
    listed = _cli(["models", "list", "--json"], with_plugin, tmp_path)
    assert listed.returncode == 0, listed.stderr
    info = json.loads(listed.stdout)["formats"]["npz-logreg"]
    assert info["suffixes"] == [".npz"] and info["source"] == "dermadv_example_plugin"
    plain = _cli(["models", "list", "--json"], [SRC], tmp_path)
    assert plain.returncode == 0 and "npz-logreg" not in json.loads(plain.stdout)["formats"]

    # its report section is in the report, between the ROC curves and training (order 35)
    sections = []
    for name, path in (("with", with_plugin), ("without", [SRC])):
        out = tmp_path / f"report-{name}.html"
        done = _cli(["report", str(evaluation_run), "--out", str(out)], path, tmp_path)
        assert done.returncode == 0, done.stderr
        html = out.read_text(encoding="utf-8")
        sections.append(re.findall(r'<section id="([^"]+)">', html))
    with_ids, without_ids = sections
    assert "melanoma-scores" not in without_ids
    at = without_ids.index("roc") + 1  # the plugin's order 35 puts it right after the ROC curves (30)
    assert with_ids == [*without_ids[:at], "melanoma-scores", *without_ids[at:]]
    html = (tmp_path / "report-with.html").read_text(encoding="utf-8")
    assert "<h2>Melanoma score distribution</h2>" in html and "dermadv-example-plugin" in html


def test_cli_attack_runs_the_plugin_attack_and_perturbation(
    attack_run: Path,
    melanoma_ids: str,
    model_file: Path,
    isic2019_dir: Path,
    with_plugin: list[Path],
    tmp_path: Path,
) -> None:
    rows = _rows(attack_run)
    assert {(r["image_id"], r["attack"]) for r in rows} == {
        (i, a) for i in melanoma_ids.split(",") for a in ("color", "vignette", "evolve")
    }
    assert all(r["outcome"] in ("success", "failure") for r in rows), [r["outcome"] for r in rows]
    for r in rows:
        if r["attack"] == "color":
            continue
        # the plugin's perturbation, within the bounds the plugin attack's option set
        high = 0.4 if r["attack"] == "vignette" else 0.5
        assert 0.0 <= r["params"]["strength"] <= high and 0.3 <= r["params"]["radius"] <= 0.95, r["params"]
        assert r["queries"] > 1
    settings = json.loads((attack_run / "run.json").read_text())["settings"]["attacks"]
    assert settings["vignette"]["perturbation"] == {
        "name": "vignette",
        "params": ["strength", "radius"],
        "max_strength": 0.4,
        "min_radius": 0.3,
    }
    assert settings["evolve"]["perturbation_name"] == "vignette"

    # the stored adversarial image is exactly the plugin's perturbation of the stored original (the
    # image the model saw) with the recorded parameters
    check = (
        "import sys, json, numpy as np\n"
        "from dermadv.data.images import load_image\n"
        "from dermadv_example_plugin.vignette import Vignette\n"
        "original, adversarial, strength, radius = sys.argv[1:5]\n"
        "out = Vignette(0.4).apply(load_image(original), np.array([[float(strength), float(radius)]]))[0]\n"
        "print(json.dumps(bool((out == load_image(adversarial)).all())))\n"
    )
    (row,) = [r for r in rows if r["attack"] == "vignette"][:1]
    paths = [str(attack_run / row[k]) for k in ("original_path", "adversarial_path")]
    params = [repr(row["params"][k]) for k in ("strength", "radius")]
    done = _run(["-c", check, *paths, *params], with_plugin, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) is True

    # the registries list them (from the plugin's distribution) only where the plugin is installed
    names = (
        "import json\n"
        "from dermadv.attacks import ATTACKS, available_attacks\n"
        "from dermadv.perturb import PERTURBATIONS\n"
        "print(json.dumps([available_attacks(), PERTURBATIONS.names(),\n"
        "    [r.entry('vignette').source for r in (ATTACKS, PERTURBATIONS) if 'vignette' in r]]))\n"
    )
    listed = [_run(["-c", names], path, tmp_path) for path in (with_plugin, [SRC])]
    assert [d.returncode for d in listed] == [0, 0], [d.stderr for d in listed]
    (attacks, perturbations, sources), (attacks0, perturbations0, sources0) = [
        json.loads(d.stdout) for d in listed
    ]
    assert attacks == [*attacks0, "vignette"] and perturbations == [*perturbations0, "vignette"]
    assert sources == ["dermadv_example_plugin"] * 2 and sources0 == []


def test_vignette_is_exact_and_batched(with_plugin: list[Path], tmp_path: Path) -> None:
    """The plugin's perturbation is its documented formula, pixel by pixel, for a whole population at once."""
    script = (
        "import json, math, numpy as np\n"
        "from dermadv.perturb import PERTURBATIONS\n"
        "from dermadv.registry import RegistryError\n"
        "v = PERTURBATIONS.create('vignette', max_strength='0.8', min_radius='0.1')\n"
        "image = np.random.default_rng(1).integers(0, 256, (9, 14, 3), dtype=np.uint8)\n"
        "params = np.array([[0.8, 0.1], [0.0, 0.5], [0.35, 0.6], [0.5, 0.95]])\n"
        "out = v.apply(image, params)\n"
        "h, w = image.shape[:2]\n"
        "want = np.empty_like(out)\n"
        "for p, (s, rho) in enumerate(params):\n"
        "    for i in range(h):\n"
        "        for j in range(w):\n"
        "            r = math.hypot(i + 0.5 - h / 2, j + 0.5 - w / 2) / math.hypot(h / 2, w / 2)\n"
        "            gain = 1 - s * min(max((r - rho) / (1 - rho), 0.0), 1.0) ** 2\n"
        "            want[p, i, j] = [min(max(round(int(x) * gain), 0), 255) for x in image[i, j]]\n"
        "one_by_one = np.stack([v.apply(image, row)[0] for row in params])\n"
        "try:\n"
        "    PERTURBATIONS.create('vignette', max_strength='1.5')\n"
        "    error = None\n"
        "except RegistryError as exc:\n"
        "    error = str(exc)\n"
        "print(json.dumps({'dtype': str(out.dtype), 'shape': out.shape, 'exact': bool((out == want).all()),\n"
        "    'identity': bool((out[1] == image).all()),\n"
        "    'batched': bool((one_by_one == out).all()), 'bounds': v.bounds(image.shape), 'error': error,\n"
        "    'darker': bool((out[0].astype(int) <= image).all() and (out[0] < image).any())}))\n"
    )
    done = _run(["-c", script], with_plugin, tmp_path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["dtype"] == "uint8" and got["shape"] == [4, 9, 14, 3]
    assert got["exact"] and got["identity"] and got["batched"] and got["darker"]
    assert got["bounds"] == [[0.0, 0.8], [0.1, 0.95]]
    assert got["error"] == "perturbation 'vignette': Vignette: max_strength must be in (0, 1], got 1.5"


def test_report_of_the_campaign_includes_the_plugin(
    attack_run: Path, evaluation_run: Path, with_plugin: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    done = _cli(["report", str(evaluation_run), str(attack_run), "--out", str(out)], with_plugin, tmp_path)
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert "melanoma-scores" in ids and "attacks" in ids
    attacks = html[html.index('<section id="attacks">') :]
    assert "vignette" in attacks[: attacks.index("</section>")]


def test_campaign_api_runs_the_plugin(
    attack_run: Path,
    melanoma_ids: str,
    model_file: Path,
    isic2019_dir: Path,
    with_plugin: list[Path],
    tmp_path: Path,
) -> None:
    """``run_campaign`` in a fresh process: the plugin's model and attack, the rows of the CLI run."""
    script = (
        "import sys, json\n"
        "from dermadv.campaign.runner import run_campaign\n"
        "from dermadv.data import select_samples\n"
        "from dermadv.models.registry import load_model\n"
        "model, data, ids, out = sys.argv[1:5]\n"
        "samples = select_samples(data, classes=('mel',), ids=ids.split(','))\n"
        "done = run_campaign(load_model(model), samples, out, ['color', 'vignette'],\n"
        "    attack_options={'popsize': 2, 'max_generations': 1, 'threshold': 0.99,\n"
        "                    'vignette.max_strength': 0.4},\n"
        "    data_info={'path': data, 'split': None, 'subset': None}, progress=False)\n"
        "print(json.dumps(done.attacks))\n"
    )
    run = tmp_path / "api"
    done = _run(
        ["-c", script, str(model_file), str(isic2019_dir), melanoma_ids, str(run)], with_plugin, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["color", "vignette"]
    assert _rows(run) == [r for r in _rows(attack_run) if r["attack"] in ("color", "vignette")]


def test_ray_workers_load_the_plugin(
    attack_run: Path,
    melanoma_ids: str,
    model_file: Path,
    isic2019_dir: Path,
    with_plugin: list[Path],
    tmp_path: Path,
) -> None:
    """`--executor ray`: the workers (started by this CLI process, so with its PYTHONPATH) load the
    plugin's model format and build the plugin's attack; the rows are the local run's. (~20 s on 2
    shared cores, most of it starting Ray.)"""
    pytest.importorskip("ray", reason="dermadv[ray] not installed")
    run = tmp_path / "ray"
    args = _attack_args(model_file, isic2019_dir, melanoma_ids, "color,vignette", run)
    done = _cli(
        [*args, "-a", "vignette.max_strength=0.4", "--executor", "ray", "--workers", "1"],
        with_plugin,
        tmp_path,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["executor"]["executor"] == "ray" and report["executor"]["jobs"] == 4
    assert _rows(run) == [r for r in _rows(attack_run) if r["attack"] in ("color", "vignette")]
