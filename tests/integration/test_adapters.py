"""Every adapter behind one Classifier interface: the same tiny torch model as a torch module, TorchScript
and ONNX gives the same probabilities; Keras models are white-box; hostile inputs give clear errors.
Real images from ../shared/data/isic-dev."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dermadv.data.images import load_image
from dermadv.errors import ModelError, ModelOutputError, NotWhiteBoxError
from dermadv.models.base import TorchModuleClassifier
from dermadv.models.export import compare_probs, export_onnx, export_torchscript
from dermadv.models.registry import load_model, parse_model_options
from models_support import tiny_cnn

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(isic2019_dir: Path) -> list[np.ndarray]:
    paths = sorted((isic2019_dir / "images").glob("*.jpg"))[:6]
    assert len(paths) == 6
    return [load_image(p) for p in paths]


@pytest.fixture(scope="module")
def torch_model() -> TorchModuleClassifier:
    torch.set_num_threads(1)
    return TorchModuleClassifier(tiny_cnn(), ("mel", "nv"), (64, 64), name="tiny", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def ts_path(torch_model: TorchModuleClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_torchscript(torch_model, tmp_path_factory.mktemp("ts") / "tiny.ts")


@pytest.fixture(scope="module")
def onnx_path(torch_model: TorchModuleClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(torch_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


# ----- same model, three adapters -------------------------------------------------------------------
def test_torchscript_adapter_matches_torch_module(torch_model, ts_path, images):
    ts = load_model(str(ts_path))
    assert type(ts).__name__ == "TorchScriptClassifier"
    assert ts.classes == ("mel", "nv") and ts.input_size == (64, 64) and ts.white_box
    assert ts.describe()["preprocessing_from"] == "dermadv.json"
    ref = torch_model.predict_proba(images)
    np.testing.assert_allclose(ts.predict_proba(images), ref, atol=1e-5)
    assert np.ptp(ref[:, 0]) > 1e-4  # the images really give different outputs
    # white box: same gradients w.r.t. the 0..255 pixels
    x = torch.from_numpy(torch_model.prepare(images)).permute(0, 3, 1, 2).float()
    grads = []
    for model in (torch_model, ts):
        xi = x.clone().requires_grad_(True)
        model.torch_forward(xi)[:, 0].sum().backward()
        grads.append(xi.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_onnx_adapter_matches_torch_module_with_dynamic_batch(torch_model, onnx_path, images):
    onnx_model = load_model(str(onnx_path))
    assert type(onnx_model).__name__ == "OnnxClassifier"
    d = onnx_model.describe()
    assert d["layout"] == "NCHW" and d["output"] == "probs" and d["normalization"] == "none"
    assert onnx_model.classes == ("mel", "nv") and onnx_model.input_size == (64, 64)
    ref = torch_model.predict_proba(images)
    for bs in (1, 4, 6):  # dynamic batch dimension
        np.testing.assert_allclose(onnx_model.predict_proba(images, batch_size=bs), ref, atol=1e-5)
    assert not onnx_model.white_box
    with pytest.raises(NotWhiteBoxError, match="black-box"):
        onnx_model.torch_forward(torch.zeros(1, 3, 64, 64))


def test_onnx_from_torchscript_and_foreign_nhwc_graph(torch_model, ts_path, images, tmp_path):
    # TorchScript -> ONNX (converted for torch.export) keeps the probabilities
    ts = load_model(str(ts_path))
    out = export_onnx(ts, tmp_path / "from_ts.onnx")
    assert compare_probs(torch_model, load_model(str(out)), images) < 1e-5

    # A foreign graph without dermadv metadata: NHWC, ImageNet-normalised input, logits out.
    class NHWC(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch_model.module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.permute(0, 3, 1, 2))

    path = tmp_path / "foreign.onnx"
    torch.onnx.export(
        NHWC().eval(),
        (torch.zeros(2, 64, 64, 3),),
        str(path),
        dynamo=True,
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        verbose=False,
    )
    with pytest.raises(ModelError, match="class names are unknown"):
        load_model(str(path))
    foreign = load_model(str(path), classes="mel,nv")
    d = foreign.describe()
    assert d["layout"] == "NHWC" and d["normalization"] == "imagenet" and d["output"] == "logits"
    np.testing.assert_allclose(foreign.predict_proba(images), torch_model.predict_proba(images), atol=1e-5)
    with pytest.raises(ModelError, match="outputs 2 scores but 3 classes"):
        load_model(str(path), classes="mel,nv,bcc")


def test_torchscript_without_metadata_needs_options(torch_model, tmp_path, images):
    path = tmp_path / "bare.pt"
    with pytest.warns(FutureWarning):  # torch.jit is deprecated upstream, still the format users have
        torch.jit.save(torch.jit.trace(torch_model.module, torch.zeros(1, 3, 64, 64)), str(path))
    with pytest.raises(ModelError, match="--classes"):
        load_model(str(path))
    with pytest.raises(ModelError, match="input_size"):
        load_model(str(path), classes="mel,nv")
    opts = parse_model_options(["classes=mel,nv", "input-size=64"])
    model = load_model(str(path), **opts)
    assert model.describe()["preprocessing_from"] == "options"
    np.testing.assert_allclose(model.predict_proba(images), torch_model.predict_proba(images), atol=1e-5)


# ----- callable ---------------------------------------------------------------------------------
def test_callable_adapter(images):
    from models_support import mean_colour_probs

    model = load_model("models_support:mean_colour_probs")
    assert model.classes == ("mel", "nv") and model.input_size == (48, 48)  # from the function's attributes
    probs = model.predict_proba(images)
    np.testing.assert_allclose(probs, mean_colour_probs(model.prepare(images)))
    assert model.describe()["callable"] == "models_support:mean_colour_probs"
    # options override attributes; a .py path works as the module
    by_path = load_model(f"{REPO / 'tests' / 'models_support.py'}:mean_colour_probs", input_size="32,40")
    assert by_path.input_size == (32, 40)
    meta = load_model("models_support:with_metadata", classes="mel,nv")
    p = meta.predict_proba(images[:2], metadata=[{"age": 80}, {"age": 20}])
    np.testing.assert_allclose(p[:, 0], [0.8, 0.2])


# ----- keras ------------------------------------------------------------------------------------
def _keras_models(tmp_path: Path) -> tuple[Path, Path]:
    from dermadv.models.keras_adapter import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    img = keras.Input((40, 40, 3))
    x = keras.layers.Rescaling(1 / 255.0)(img)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    feat = keras.layers.GlobalAveragePooling2D()(x)
    single = keras.Model(img, keras.layers.Dense(2, activation="softmax")(feat))
    single.save(tmp_path / "single.keras")
    meta_in = keras.Input((1,))
    both = keras.layers.Concatenate()([feat, keras.layers.Dense(3)(meta_in)])
    multi = keras.Model([img, meta_in], keras.layers.Dense(3)(both))  # logits, 3 classes
    multi.save(tmp_path / "multi.keras")
    return tmp_path / "single.keras", tmp_path / "multi.keras"


def test_keras_adapter_single_and_multi_input(tmp_path, images):
    single_path, multi_path = _keras_models(tmp_path)
    with pytest.raises(ModelError, match="class names"):
        load_model(str(single_path))
    single = load_model(str(single_path), classes="mel,nv")
    assert single.white_box and single.input_size == (40, 40) and single.describe()["output"] == "probs"
    probs = single.predict_proba(images)
    ref = single.model(torch.from_numpy(single.prepare(images)).float(), training=False).detach().numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    # gradients flow through Keras-on-torch to the input pixels
    x = torch.from_numpy(single.prepare(images[:2])).permute(0, 3, 1, 2).float().requires_grad_(True)
    single.torch_forward(x)[:, 0].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    with pytest.raises(ModelError, match="non-image input"):
        load_model(str(multi_path), classes="mel,nv,bcc")
    multi = load_model(str(multi_path), classes="mel,nv,bcc", metadata_encoder="models_support:encode_age")
    assert multi.needs_metadata and multi.describe()["output"] == "logits"
    p_old = multi.predict_proba(images[:2], metadata=[{"age": 90}, {"age": 90}])
    p_young = multi.predict_proba(images[:2], metadata=[{"age": 10}, {"age": 10}])
    assert np.allclose(p_old.sum(axis=1), 1) and np.abs(p_old - p_young).max() > 1e-4  # metadata is used
    out = export_onnx(multi, tmp_path / "multi.onnx")
    onnx_multi = load_model(str(out))
    meta = [{"age": 30}, {"age": 70}, {"age": None}]
    assert compare_probs(multi, onnx_multi, images[:3], meta) < 1e-5


def test_class_groups_and_bad_outputs(images):
    with pytest.raises(ModelError, match=r"\['xyz'\] are not among the model's classes"):
        load_model("models_support:mean_colour_probs", melanoma_classes=["xyz"])
    with pytest.raises(ModelError, match="both melanoma and benign"):
        load_model("models_support:mean_colour_probs", melanoma_classes=["mel"], benign_classes=["mel"])
    # Class names spelled as in ISIC files or in words are grouped without flags; others need them.
    for names in ("MEL,NV", "Melanoma,Nevus", "naevus,melanoma"):
        model = load_model("models_support:mean_colour_probs", classes=names)
        mel_name, nv_name = sorted(model.classes, key=lambda c: c.lower()[0] != "m")
        assert model.melanoma == {mel_name} and model.benign == {nv_name}
    with pytest.raises(ModelError, match="no melanoma class among the model's classes"):
        load_model("models_support:mean_colour_probs", classes="a,b").set_groups()
    with pytest.raises(ModelOutputError, match="NaN"):
        load_model("models_support:nan_probs", classes="mel,nv").predict_proba(images)
    with pytest.raises(ModelOutputError, match=r"shape \(6, 3\), expected \(6, 2\)"):
        load_model("models_support:three_columns", classes="mel,nv").predict_proba(images)
    with pytest.raises(ModelOutputError, match="needs a softmax"):
        load_model("models_support:logits_not_probs", classes="mel,nv").predict_proba(images)
    with pytest.raises(ModelError, match="raised RuntimeError: boom"):
        load_model("models_support:raises", classes="mel,nv").predict_proba(images)


# ----- CLI --------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dermadv.cli", *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def test_cli_list_describe_and_export(ts_path, tmp_path, isic2019_dir):
    listed = json.loads(_cli("models", "list", "--json").stdout)
    assert "sklesion" in listed["named"] and ".onnx" in listed["file_types"]
    described = _cli("models", "describe", "--model", str(ts_path), "--json")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["classes"] == ["mel", "nv"]
    bad = _cli("models", "describe", "--model", str(ts_path), "--melanoma-classes", "xyz")
    assert bad.returncode == 2 and "error:" in bad.stderr and "xyz" in bad.stderr
    assert "Traceback" not in bad.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    bad = _cli("models", "export-onnx", "--model", str(ts_path), "--out", str(blocker / "m.onnx"))
    assert bad.returncode == 2 and "a_file is a file, not a directory" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    out = tmp_path / "cli.onnx"
    done = _cli(
        "models",
        "export-onnx",
        "--model",
        str(ts_path),
        "--out",
        str(out),
        "--data",
        str(isic2019_dir),
        "--n-verify",
        "3",
    )
    assert done.returncode == 0, done.stderr
    assert "verified on 3 images" in done.stdout and "max abs probability difference" in done.stdout
    record = json.loads(Path(f"{out}.json").read_text())
    assert record["verification"]["max_abs_diff"] < 1e-5
