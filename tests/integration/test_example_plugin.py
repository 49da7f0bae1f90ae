"""The example plugin package, installed for real (pip, into a temporary folder), extends dermadv through
its entry points alone: its model format loads a model in `dermadv evaluate` and its report section is
in `dermadv report`; without it on the path, neither is there."""

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

from plugin_support import INPUT_SIZE, PLUGIN_DIR, REPO, fit_channel_mean_logreg


def _run(args: list[str], pythonpath: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    assert (target / "dermadv_example_plugin" / "npz_format.py").is_file()
    assert list(target.glob("dermadv_example_plugin-*.dist-info/entry_points.txt"))
    return target


def test_installed_plugin_format_and_section(installed: Path, isic2019_dir: Path, tmp_path: Path) -> None:
    src = REPO / "src"
    with_plugin, without_plugin = [installed, src], [src]
    fitted = fit_channel_mean_logreg(isic2019_dir)
    model = tmp_path / "logreg.npz"
    save = (
        "import sys, json, numpy as np\n"
        "from dermadv_example_plugin.npz_format import save_model\n"
        "m = json.loads(sys.argv[1])\n"
        "save_model(sys.argv[2], m['classes'], np.array(m['coef']), np.array(m['intercept']),\n"
        "           tuple(m['size']))\n"
    )
    spec = {k: fitted[k] for k in ("classes", "coef", "intercept")} | {"size": list(INPUT_SIZE)}
    done = _run(["-c", save, json.dumps(spec), str(model)], with_plugin, tmp_path)
    assert done.returncode == 0, done.stderr

    listed = _run(["-m", "dermadv.cli", "models", "list", "--json"], with_plugin, tmp_path)
    assert listed.returncode == 0, listed.stderr
    info = json.loads(listed.stdout)["formats"]["npz-logreg"]
    assert info["suffixes"] == [".npz"] and info["source"] == "dermadv_example_plugin"

    # the plugin's format loads the model: `dermadv evaluate` on 12 real images, same predictions
    ids = ",".join(s.image_id for s in fitted["samples"][:12])
    ev = tmp_path / "ev"
    done = _run(
        [
            "-m",
            "dermadv.cli",
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(isic2019_dir),
            "--ids",
            ids,
            "--out",
            str(ev),
            "--no-progress",
            "--json",
        ],
        with_plugin,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    y = np.array([s.diagnosis == "mel" for s in fitted["samples"][:12]])
    accuracy = json.loads(done.stdout)["accuracy"]["value"]
    assert accuracy == pytest.approx(float(np.mean((fitted["probs"][:12, 1] >= 0.5) == y)))
    # without the plugin the same file is an unknown model file type, said in one line
    done = _run(
        [
            "-m",
            "dermadv.cli",
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(isic2019_dir),
            "--ids",
            ids,
            "--no-progress",
        ],
        without_plugin,
        tmp_path,
    )
    assert done.returncode == 2 and "unknown model file type '.npz'" in done.stderr
    assert "Traceback" not in done.stderr

    # its report section is in the report, between the ROC curves and training (order 35)
    sections = []
    for name, path in (("with", with_plugin), ("without", without_plugin)):
        out = tmp_path / f"report-{name}.html"
        done = _run(["-m", "dermadv.cli", "report", str(ev), "--out", str(out)], path, tmp_path)
        assert done.returncode == 0, done.stderr
        html = out.read_text(encoding="utf-8")
        sections.append(re.findall(r'<section id="([^"]+)">', html))
    with_ids, without_ids = sections
    assert "melanoma-scores" not in without_ids
    assert with_ids == [*without_ids[:3], "melanoma-scores", *without_ids[3:]]
    html = (tmp_path / "report-with.html").read_text(encoding="utf-8")
    assert "<h2>Melanoma score distribution</h2>" in html and "dermadv-example-plugin" in html
