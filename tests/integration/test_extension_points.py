"""Extension points through the one Registry: a model format, a report section and a command
registered in a test are used by load_model and the real CLI; a missing extra is one line; `--help`
imports no framework."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dermadv.models.registry as model_registry
from cli_support import run_cli
from dermadv.errors import ModelError
from dermadv.models.formats import MODEL_FORMATS
from dermadv.models.registry import load_model
from dermadv.registry import RegistryError
from dermadv.report.html import REPORT_SECTIONS, SECTIONS
from plugin_support import INPUT_SIZE, fit_channel_mean_logreg

BUILTIN_SECTIONS = [
    "summary",
    "overview",
    "metrics",
    "roc",
    "training",
    "perturbation",
    "robustness",
    "attacks",
    "heatmap",
    "transfer",
    "examples",
    "explanations",
    "provenance",
]


@pytest.fixture(scope="module")
def fitted(isic2019_dir: Path) -> dict:
    return fit_channel_mean_logreg(isic2019_dir)


@pytest.fixture
def npz_model(registries: None, fitted: dict, tmp_path: Path) -> Path:
    """The example plugin's npz-logreg format, registered by importing its one file, and a model in it."""
    from dermadv_example_plugin.npz_format import save_model

    return save_model(
        tmp_path / "logreg.npz",
        fitted["classes"],
        np.array(fitted["coef"]),
        np.array(fitted["intercept"]),
        INPUT_SIZE,
    )


def test_registered_format_loads_through_load_model(npz_model: Path, fitted: dict, tmp_path: Path) -> None:
    from dermadv.data.images import load_image

    model = load_model(str(npz_model))
    assert type(model).__name__ == "ChannelMeanClassifier" and model.classes == ("nv", "mel")
    assert model.melanoma == {"mel"} and model.benign == {"nv"} and model.white_box
    images = [load_image(s.path) for s in fitted["samples"]]
    np.testing.assert_allclose(model.predict_proba(images), fitted["probs"], atol=1e-9)
    # options: listed truthfully, typed ones converted from command-line text, unknown ones refused
    assert MODEL_FORMATS.options("npz-logreg") == {"classes": None, "batch_size": 64}
    assert load_model(str(npz_model), batch_size="7").batch_size == 7
    assert load_model(str(npz_model), classes="naevus,melanoma").classes == ("naevus", "melanoma")
    with pytest.raises(
        ModelError,
        match=r"unknown option\(s\) \['colour'\] for a channel-mean logistic "
        r"regression model; known: classes, batch_size",
    ):
        load_model(str(npz_model), colour="red")
    with pytest.raises(RegistryError, match="batch_size='many' is not a valid int"):
        load_model(str(npz_model), batch_size="many")
    # the sniff check: another .npz is not claimed; the format then says what is wrong with it
    other = tmp_path / "weights.npz"
    np.savez(other, w=np.zeros(3))
    with pytest.raises(ModelError, match=r"weights.npz: not an npz-logreg model file \(no dermadv_format"):
        load_model(str(other))
    # derived texts know the new format; a missing .npz is "not found", as for built-in suffixes
    assert "channel-mean logistic regression (.npz)" in model_registry.SUFFIX_HINT  # derived when read
    assert "options classes, batch_size; white-box" in model_registry.FILE_TYPES[".npz"]
    with pytest.raises(ModelError, match="absent.npz: model file not found"):
        load_model(str(tmp_path / "absent.npz"))


def test_registered_format_in_the_cli(npz_model: Path, fitted: dict, isic2019_dir: Path) -> None:
    listed = run_cli(["models", "list"])
    assert ".npz" in listed and "npz-logreg: logistic regression on the mean RGB colour" in listed
    assert "[from dermadv_example_plugin]" in listed
    info = json.loads(run_cli(["models", "list", "--json"]))["formats"]["npz-logreg"]
    assert info["suffixes"] == [".npz"] and info["options"] == ["classes", "batch_size"]
    assert info["white_box"] is True and info["source"] == "dermadv_example_plugin"
    ids = ",".join(s.image_id for s in fitted["samples"][:12])
    out = json.loads(
        run_cli(
            [
                "evaluate",
                "--model",
                str(npz_model),
                "--data",
                str(isic2019_dir),
                "--ids",
                ids,
                "--no-progress",
                "--json",
            ]
        )
    )
    y = np.array([s.diagnosis == "mel" for s in fitted["samples"][:12]])
    predicted = fitted["probs"][:12, 1] >= 0.5
    assert out["n"] == 12
    assert out["accuracy"]["value"] == pytest.approx(float(np.mean(predicted == y)))


def test_registered_section_is_in_the_report(
    npz_model: Path, fitted: dict, isic2019_dir: Path, tmp_path: Path
) -> None:
    import dermadv_example_plugin.report_section  # noqa: F401 - registers "melanoma-scores"

    @REPORT_SECTIONS.register("run-count", title="Runs <counted>", order=15)
    def run_count(runs: list, context: object) -> str:
        evaluations = getattr(context, "evaluations")  # noqa: B009
        return f"<p>{len(runs)} run(s), {len(evaluations)} evaluation(s): {runs[0].path.name}</p>"

    @REPORT_SECTIONS.register("never-shown", title="Nothing", order=16)
    def nothing(runs: list, context: object) -> None:
        return None

    ids = ",".join(s.image_id for s in fitted["samples"][:12])
    ev = tmp_path / "ev"
    run_cli(
        [
            "evaluate",
            "--model",
            str(npz_model),
            "--data",
            str(isic2019_dir),
            "--ids",
            ids,
            "--out",
            str(ev),
            "--no-progress",
        ]
    )
    out = tmp_path / "report.html"
    listed = json.loads(run_cli(["report", str(ev), "--out", str(out), "--json"]))
    assert listed["sections"][:4] == ["summary", "overview", "run-count", "never-shown"]
    html = out.read_text(encoding="utf-8")
    shown = [k for k, _ in SECTIONS if f'<section id="{k}">' in html]
    assert [k for k, _ in SECTIONS if k in BUILTIN_SECTIONS] == BUILTIN_SECTIONS  # the built-ins, in order
    # an evaluation run only: the sections with nothing to show (training, attacks...) are left out
    assert shown == ["summary", "overview", "run-count", "metrics", "roc", "melanoma-scores", "provenance"]
    assert "<h2>Runs &lt;counted&gt;</h2>" in html and "<p>1 run(s), 1 evaluation(s): ev</p>" in html
    assert '<a href="#run-count">' in html and "never-shown" not in html
    scores = fitted["probs"][:12, 1]
    mel = np.array([s.diagnosis == "mel" for s in fitted["samples"][:12]])
    assert f"{np.median(scores[mel]):.3f}" in html and f"{np.median(scores[~mel]):.3f}" in html
