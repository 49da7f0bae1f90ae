"""Model construction and checkpoints without data. Augmentation, the image cache and resumable
training on real images (and the full-size inception v3 pass): tests/integration/test_train.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dermadv.data.images import resize_uint8
from dermadv.errors import ModelError
from dermadv.models.checkpoint import (
    CHECKPOINT_KEY,
    arch_kwargs,
    build_model,
    load_checkpoint_classifier,
    make_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

torch.set_num_threads(1)  # the shared test machine is oversubscribed: 1 thread is fastest


def test_imagenet_download_failure_names_alternatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No network here: torchvision's real weight loading fails and the error says what to do instead.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelError) as err:
        build_model("resnet18", 2, "imagenet")
    msg = str(err.value)
    assert "--weights none" in msg and "--weights /path/to/file.pth" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-") in msg


def test_weights_from_local_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    imagenet_like = build_model("resnet18", 1000, "none")  # a 1000-class state dict, like ImageNet's
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet_like.state_dict(), path)
    model = build_model("resnet18", 2, str(path))
    assert torch.equal(model.conv1.weight, imagenet_like.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_mean, imagenet_like.layer4[1].bn2.running_mean)
    assert model.fc.weight.shape == (2, 512)  # head replaced, not loaded
    # Wrapped in {"state_dict": ...} with DataParallel prefixes also works.
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet_like.state_dict().items()}}, path)
    assert torch.equal(build_model("resnet18", 2, str(path)).conv1.weight, imagenet_like.conv1.weight)
    # Strict on the backbone: a missing backbone tensor or another architecture is an error.
    sd = imagenet_like.state_dict()
    del sd["layer1.0.conv1.weight"]
    torch.save(sd, path)
    with pytest.raises(ModelError, match="backbone tensor.*missing.*layer1.0.conv1.weight"):
        build_model("resnet18", 2, str(path))
    torch.save(build_model("resnet50", 1000, "none").state_dict(), path)
    with pytest.raises(ModelError, match="wrong shape|does not match"):
        build_model("resnet18", 2, str(path))
    with pytest.raises(ModelError, match="no such file"):
        build_model("resnet18", 2, str(tmp_path / "nope.pth"))


def test_unknown_architecture() -> None:
    with pytest.raises(ModelError, match="unknown architecture 'resnet19'.*resnet18"):
        build_model("resnet19", 2)


def test_inception_imagenet_needs_transform_input() -> None:
    assert arch_kwargs("inception_v3", pretrained=True) == {"aux_logits": True, "transform_input": True}
    assert arch_kwargs("resnet18", pretrained=True) == {}


# ----- checkpoint files ---------------------------------------------------------------------------
def test_checkpoint_roundtrip_and_bad_files(tmp_path: Path) -> None:
    torch.manual_seed(2)
    module = build_model("mobilenet_v3_small", 2, "none").eval()
    ckpt = make_checkpoint(
        module,
        arch="mobilenet_v3_small",
        classes=("nv", "mel"),
        input_size=(64, 64),
        model_kwargs={},
        training={"lr": 0.01},
        data={"train_hash": "abc"},
        metrics={"auc": {"value": 0.7}},
        epoch=3,
    )
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    raw = torch.load(path, weights_only=True)
    assert (
        raw[CHECKPOINT_KEY] == 1 and raw["decoder"] == "pil" and raw["versions"]["torch"] == torch.__version__
    )
    clf = load_checkpoint_classifier(path, device="cpu")
    assert clf.classes == ("nv", "mel") and clf.input_size == (64, 64) and clf.white_box
    assert clf.melanoma_indices == [1] and clf.benign_indices == [0]
    d = clf.describe()
    assert d["checkpoint"]["epoch"] == 3 and d["checkpoint"]["training"]["lr"] == 0.01
    images = np.random.default_rng(0).integers(0, 256, (3, 80, 90, 3), dtype=np.uint8)
    with torch.no_grad():
        x = (
            torch.from_numpy(np.stack([resize_uint8(im, (64, 64)) for im in images]))
            .permute(0, 3, 1, 2)
            .float()
        )
        mean = torch.tensor(clf.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(clf.std).view(1, 3, 1, 1) * 255
        expected = torch.softmax(module((x - mean) / std), 1).numpy()
    np.testing.assert_allclose(clf.predict_proba(images), expected, atol=1e-5)

    # The registry dispatches .pt files to the checkpoint loader.
    from dermadv.models.registry import load_model

    assert load_model(str(path)).classes == ("nv", "mel")
    # Options a checkpoint cannot honour are refused, not silently ignored; batch_size is applied.
    with pytest.raises(ModelError, match=r"m.pt: unknown option\(s\) \['classes'\] for a dermadv checkpoint"):
        load_model(str(path), classes="mel,nv")
    assert load_model(str(path), batch_size="5").batch_size == 5
    with pytest.raises(ModelError, match="batch_size must be a positive integer"):
        load_model(str(path), batch_size="zero")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelError, match="truncated.pt: not a readable torch checkpoint"):
        load_checkpoint_classifier(truncated)
    foreign = tmp_path / "plain.pt"
    torch.save(module.state_dict(), foreign)
    with pytest.raises(ModelError, match="plain.pt: not a dermadv checkpoint"):
        load_checkpoint_classifier(foreign)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="text.pt"):
        load_checkpoint_classifier(text)
    ckpt["arch"] = "resnet18"
    save_checkpoint(ckpt, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="wrong.pt: weights do not fit architecture resnet18"):
        load_checkpoint_classifier(tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
