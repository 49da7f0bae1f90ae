"""Attribution maps: occlusion for any model, Integrated Gradients and Grad-CAM (Captum) for white-box."""

from __future__ import annotations

import numpy as np
import pytest

from dermadv.explain import default_methods, explain, gradcam_map, integrated_gradients_map, occlusion_map
from dermadv.models.callable_adapter import CallableClassifier


def _top_left_darkness(images: np.ndarray) -> np.ndarray:
    """A toy model that looks only at the top-left quadrant: P(mel) = how dark that quadrant is."""
    h, w = images.shape[1] // 2, images.shape[2] // 2
    dark = 1.0 - images[:, :h, :w].reshape(len(images), -1).mean(axis=1) / 255.0
    return np.stack([dark, 1.0 - dark], axis=1)


def _textured(size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_occlusion_lights_up_the_quadrant_the_model_looks_at():
    model = CallableClassifier(_top_left_darkness, ("mel", "nv"), (48, 48), name="quadrant", batch_size=7)
    m = occlusion_map(model, _textured(), patch=8, stride=8)  # patches aligned with the quadrant
    assert m.shape == (48, 48)
    q = np.abs(m)
    assert (q[:24, :24] > 0).all()  # every patch inside the quadrant changes the score
    assert q[:, 24:].max() == 0 and q[24:, :].max() == 0  # nothing else matters to this model
    # overlapping patches: only patches reaching into the quadrant count
    o = np.abs(occlusion_map(model, _textured(), patch=8, stride=4))
    assert o[:, 28:].max() == 0 and o[28:, :].max() == 0
    assert (o[:24, :24] > 0).mean() > 0.9
    # batching does not change the map
    again = occlusion_map(
        CallableClassifier(_top_left_darkness, ("mel", "nv"), (48, 48), batch_size=100), _textured(), 8, 8
    )
    np.testing.assert_allclose(m, again)


def test_occlusion_sign_follows_melanoma_evidence():
    """A dark quadrant occluded by the lighter mean colour lowers P(mel): positive map there."""
    img = np.full((48, 48, 3), 220, np.uint8)
    img[:24, :24] = 20
    model = CallableClassifier(_top_left_darkness, ("mel", "nv"), (48, 48))
    m = occlusion_map(model, img, patch=12, stride=12)
    assert (m[:24, :24] > 0).all() and np.abs(m[24:, 24:]).max() == 0


def _quadrant_cnn():
    """A white-box torch model whose melanoma logit is the darkness of the top-left quadrant only."""
    import torch

    from dermadv.models.base import TorchModuleClassifier

    class Quadrant(torch.nn.Module):
        """Zero outside the top-left quadrant."""

        def forward(self, f: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros_like(f)
            mask[..., : f.shape[2] // 2, : f.shape[3] // 2] = 1
            return f * mask

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[0].fill_(-1.0)  # channel 0: darkness; channel 1: brightness
                self.conv.weight[1].fill_(1.0)
                self.conv.bias.zero_()
            self.quadrant = Quadrant()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.quadrant(self.conv(x))  # N x 2 x H x W, nothing outside the quadrant
            mel = f[:, 0].mean(dim=(1, 2)) * 4
            return torch.stack([mel, -mel], dim=1)

    return TorchModuleClassifier(
        Net(), ("mel", "nv"), (32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu"
    )


def test_integrated_gradients_and_gradcam_find_the_quadrant():
    pytest.importorskip("captum")
    model = _quadrant_cnn()
    img = _textured(32, 3)
    ig = integrated_gradients_map(model, img, steps=16)
    assert ig.shape == (32, 32)
    assert np.abs(ig[16:, :]).max() < 1e-6 and np.abs(ig[:, 16:]).max() < 1e-6
    assert np.abs(ig[:16, :16]).mean() > 1e-4
    cam = gradcam_map(model, img, layer=model.module.quadrant)
    assert cam.shape == (32, 32) and cam.min() >= 0
    assert cam[:16, :16].max() > 0 and cam[16:, :].max() == 0 and cam[:, 16:].max() == 0
    assert gradcam_map(model, img).shape == (32, 32)  # default layer: the last convolution
    assert default_methods(model) == ["occlusion", "integrated_gradients", "gradcam"]


def test_black_box_models_get_occlusion_only():
    from dermadv.errors import DermadvError, NotWhiteBoxError

    model = CallableClassifier(_top_left_darkness, ("mel", "nv"), (16, 16))
    assert default_methods(model) == ["occlusion"]
    with pytest.raises(NotWhiteBoxError, match="black-box"):
        explain(model, _textured(16), "integrated_gradients")
    with pytest.raises(DermadvError, match="unknown explanation method"):
        explain(model, _textured(16), "saliency")


def test_explain_dataset_writes_pngs(tmp_path):
    from PIL import Image

    from dermadv.explain.run import explain_dataset, read_explain
    from dermadv.synthetic import generate_dataset

    ds = generate_dataset(tmp_path / "d", 2, 1, size=32, seed=0)
    ids = sorted(p.stem for p in (ds.root / "images").glob("*.jpg"))[:2]
    model = CallableClassifier(_top_left_darkness, ("mel", "nv"), (32, 32))
    out = explain_dataset(model, ds.root, ids, tmp_path / "maps")
    doc = read_explain(out)
    assert [e["image_id"] for e in doc["entries"]] == ids and doc["methods"] == ["occlusion"]
    for e in doc["entries"]:
        with Image.open(out / e["files"]["occlusion"]["png"]) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
        assert np.load(out / e["files"]["occlusion"]["npy"]).shape == (32, 32)


def test_cli_explain_and_transfer(tmp_path):
    """`dermadv explain --data D --ids` writes PNG maps; `dermadv transfer RUN --models` writes the matrix."""
    import json

    from cli_support import run_cli
    from dermadv.campaign.runner import run_campaign
    from dermadv.data import load_dataset
    from dermadv.models.registry import load_model
    from dermadv.synthetic import generate_dataset

    ds = generate_dataset(tmp_path / "d", 3, 1, size=48, seed=2)
    ids = sorted(s.image_id for s in load_dataset(ds.root, progress=False).samples)[:2]
    model = "models_support:mean_colour_probs"
    out = run_cli(
        [
            "explain",
            "--model",
            model,
            "--data",
            str(ds.root),
            "--ids",
            ",".join(ids),
            "--out",
            str(tmp_path / "e"),
        ]
    )
    assert "(2 PNGs;" in out  # one occlusion map per image (a black-box model); its .npy beside it
    assert sorted(p.name for p in (tmp_path / "e").glob("*.png")) == sorted(
        f"{i}__occlusion.png" for i in ids
    )
    mels = [s for s in load_dataset(ds.root, progress=False).samples if s.diagnosis == "mel"]
    run_campaign(
        load_model(model),
        mels,
        tmp_path / "run",
        ["color"],
        attack_options={"popsize": 1, "max_generations": 1},
        progress=False,
    )
    res = json.loads(
        run_cli(
            ["transfer", str(tmp_path / "run"), "--models", model, "--out", str(tmp_path / "t"), "--json"]
        )
    )
    assert res["matrix"] and res["matrix"][0]["attack"] == "color"
    assert (tmp_path / "t" / "transfer.csv").exists()
