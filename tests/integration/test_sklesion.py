"""The real third-party model: PyPI ``sklesion`` (Keras 3 Xception) run by Keras on PyTorch, on real
HAM10000 images from ../shared/data/isic-dev/ham10000 with their metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dermadv.data import Sample, load_dataset
from dermadv.models.registry import load_model
from models_support import SKLESION_CLASSES


def _meta(sample: Sample) -> dict:
    return sample.metadata()  # {"age", "sex", "site"} from HAM10000_metadata.csv


@pytest.fixture(scope="module")
def subset(ham10000_dir: Path) -> list[Sample]:
    """Stratified: the first 8 melanomas and the first 8 naevi by image id."""
    samples = sorted(load_dataset(ham10000_dir, progress=False).samples, key=lambda s: s.image_id)
    return [s for s in samples if s.diagnosis == "mel"][:8] + [s for s in samples if s.diagnosis == "nv"][:8]


@pytest.fixture(scope="module")
def subset_probs(sklesion, subset) -> np.ndarray:
    images = [sklesion.load_image(s.path) for s in subset]
    return sklesion.predict_proba(images, [s.metadata() for s in subset])


#: a few images of each class (indices into ``subset``) for the slower comparisons
FEW = [0, 1, 8, 9]


def test_sklesion_separates_melanoma_from_naevi(sklesion, subset, subset_probs):
    probs = subset_probs
    assert probs.shape == (16, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    p_mel, p_nv = sklesion.group_probs(probs)
    y = np.array([s.diagnosis == "mel" for s in subset])
    auc = roc_auc_score(y, p_mel / (p_mel + p_nv))
    # Whole folder, 200 images: AUC 0.9995 (these HAM10000 images were in sklesion's training data, so
    # this checks the pipeline, it is not an independent estimate). A wrong class order, decoder or
    # metadata vector drops it sharply.
    assert auc > 0.9, auc
    assert (probs.argmax(axis=1)[y] == 4).mean() >= 0.7  # melanomas called "mel"
    used = sklesion.describe()["metadata"]["defaults_used"]
    assert used["images"] >= 16 and used["no_metadata"] == 0


def test_defaults_are_reported_and_change_nothing_silently(sklesion, subset, ham10000_dir):
    image = sklesion.load_image(subset[0].path)
    before = dict(sklesion.metadata_encoder.counts)
    with_meta = sklesion.predict_proba([image], [_meta(subset[0])])
    without = sklesion.predict_proba([image])
    d = sklesion.describe()
    assert d["metadata"]["defaults_used"]["no_metadata"] == before["no_metadata"] + 1
    assert "had no metadata" in d["metadata_defaults_note"]
    assert np.abs(with_meta - without).max() > 1e-6  # metadata reaches the model


def test_gradient_flows_to_input_pixels(sklesion, subset, ham10000_dir):
    image = sklesion.load_image(subset[0].path)
    x = torch.from_numpy(sklesion.prepare([image])).permute(0, 3, 1, 2).float().requires_grad_(True)
    log_probs = sklesion.torch_forward(x, [_meta(subset[0])])
    p_mel = torch.softmax(log_probs, dim=1)[0, sklesion.melanoma_indices[0]]
    p_mel.backward()
    p_mel = float(p_mel.detach())
    assert x.grad is not None and x.grad.shape == (1, 3, 254, 254)
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    ref = sklesion.predict_proba([image], [_meta(subset[0])])[0, 4]
    assert abs(p_mel - ref) < 1e-5


def test_decoder_is_part_of_preprocessing(sklesion, subset, subset_probs, ham10000_dir):
    from dermadv.data.images import load_image

    paths = [subset[i].path for i in FEW]
    pil_images = [load_image(p, decoder="pil") for p in paths]
    tf_images = [sklesion.load_image(p) for p in paths]
    assert any(not np.array_equal(a, b) for a, b in zip(tf_images, pil_images, strict=True))
    pil_probs = sklesion.predict_proba(pil_images, [_meta(subset[i]) for i in FEW])
    diff = np.abs(subset_probs[FEW] - pil_probs).max()
    print(f"max |P_tf - P_pil| over {len(paths)} images: {diff:.4f}")
    assert diff > 1e-3  # the decoder alone moves the probabilities: it must be recorded
    assert sklesion.describe()["decoder"] == "tf"


@pytest.mark.slow
def test_sklesion_onnx_export_matches_keras(sklesion, subset, subset_probs, ham10000_dir, tmp_path):
    from dermadv.models.export import export_onnx

    out = export_onnx(sklesion, tmp_path / "sklesion.onnx")
    onnx_model = load_model(str(out))
    assert onnx_model.classes == SKLESION_CLASSES and onnx_model.needs_metadata
    assert onnx_model.decoder == "tf" and onnx_model.resize_method == "bilinear-noaa"
    images = [onnx_model.load_image(subset[i].path) for i in FEW]
    probs = onnx_model.predict_proba(images, [_meta(subset[i]) for i in FEW], batch_size=3)
    assert np.abs(probs - subset_probs[FEW]).max() < 1e-4
    no_meta = onnx_model.predict_proba(images[:1])
    assert onnx_model.describe()["metadata"]["defaults_used"]["no_metadata"] == 1
    assert np.abs(no_meta - sklesion.predict_proba(images[:1])).max() < 1e-4


@pytest.mark.slow
def test_cli_evaluate_sklesion(ham10000_dir, subset):
    ids = ",".join(s.image_id for s in subset[:3] + subset[8:11])
    from typer.testing import CliRunner

    from dermadv.cli import app

    done = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "sklesion",
            "--data",
            str(ham10000_dir),
            "--ids",
            ids,
            "--json",
            "--no-progress",
        ],
    )
    assert done.exit_code == 0, (done.output[-2000:], done.exception)
    result = json.loads(done.stdout)
    metrics = result.get("metrics", result)
    for key in ("auc", "accuracy", "sensitivity", "specificity"):
        m = metrics[key]
        assert m["ci_low"] <= m["value"] <= m["ci_high"], (key, m)
    assert metrics["auc"]["value"] > 0.8
    # The output states how often metadata defaults were used (HAM10000 rows carry age/sex/site).
    assert result["metadata_note"].startswith("0 of 6 images had no metadata"), result.get("metadata_note")
