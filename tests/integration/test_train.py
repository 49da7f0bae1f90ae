"""Model construction, checkpoints, augmentation, the image cache and resumable training on real images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_support import run_cli
from dermadv.data.cache import ImageCache, shorter_side_size
from dermadv.data.images import load_image, resize_uint8
from dermadv.errors import DermadvError
from dermadv.models.augment import Augmentation, augment, crop_box
from dermadv.models.checkpoint import build_model, head_parameter_names
from train_support import assert_same_weights, train_args

torch.set_num_threads(1)  # the shared test machine is oversubscribed: 1 thread is fastest


# ----- augmentation and cache ---------------------------------------------------------------------
def test_augmentation_is_deterministic_and_shaped(isic2019_dir: Path) -> None:
    img = load_image(next((isic2019_dir / "images").glob("*.jpg")))
    aug = Augmentation(size=64, color_jitter=0.1)
    a = augment(img, aug, np.random.default_rng([0, 1, 2]))
    b = augment(img, aug, np.random.default_rng([0, 1, 2]))
    c = augment(img, aug, np.random.default_rng([0, 1, 3]))
    assert a.dtype == torch.uint8 and a.shape == (3, 64, 64)
    assert torch.equal(a, b) and not torch.equal(a, c)
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = crop_box(rng, 100, 150, (0.5, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 150
        assert 0.5 * 15000 * 0.98 <= h * w <= 15000
    # Colour-balance gains only: a grey image stays within [0.9, 1.1] x grey per channel.
    grey = np.full((80, 80, 3), 100, np.uint8)
    plain = Augmentation(
        size=32, rotation=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), color_jitter=0.1
    )
    out = augment(grey, plain, np.random.default_rng(5)).float()
    per_channel = out.mean(dim=(1, 2))
    assert ((per_channel >= 89.5) & (per_channel <= 110.5)).all() and per_channel.std() > 0


def test_image_cache(tmp_path: Path, isic2019_dir: Path) -> None:
    src = next((isic2019_dir / "images").glob("*.jpg"))
    local = tmp_path / "img.jpg"
    local.write_bytes(src.read_bytes())
    cache = ImageCache(tmp_path / "cache")
    a = cache.get(local, 100)
    assert min(a.shape[:2]) == 100 and a.shape[:2] == shorter_side_size(load_image(local).shape, 100)
    assert cache.contains(local, 100) and not cache.contains(local, (64, 64))
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(cache.get(local, 100), a)
    exact = cache.get(local, (64, 48))
    np.testing.assert_array_equal(exact, resize_uint8(load_image(local), (64, 48)))
    # A changed file is a different entry; a different decoder too.
    time.sleep(0.01)
    local.write_bytes(np.asarray(src.read_bytes()[:-1]).tobytes() + src.read_bytes()[-1:])
    os.utime(local, ns=(time.time_ns(), time.time_ns()))
    assert not cache.contains(local, 100)
    assert ImageCache(tmp_path / "cache", decoder="tf").key(local, 100) != cache.key(local, 100)
    # A damaged entry is recomputed.
    cache.get(local, 100)
    for f in (tmp_path / "cache").rglob("*.npy"):
        f.write_bytes(b"garbage")
    np.testing.assert_array_equal(cache.get(local, 100), a)


# ----- training on real images through the CLI -----------------------------------------------------
def test_train_resume_and_kill(tmp_path: Path, isic2019_dir: Path, split40: Path) -> None:
    # A straight 2-epoch run is the reference.
    ref = tmp_path / "ref"
    out = json.loads(run_cli(train_args(isic2019_dir, split40, ref, 2, "--json")))
    assert out["epochs_run"] == 2 and out["resumed_from"] is None
    history = json.loads((ref / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    csv_lines = (ref / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss,val_loss,val_accuracy") and len(csv_lines) == 3
    last = torch.load(ref / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["batch"] == 0 and last["optimizer"]["state"]
    info = json.loads((ref / "train.json").read_text())
    assert info["data"]["n_train"] == 28 and info["data"]["n_val"] == 12
    assert info["settings"]["color_jitter"] == 0.1 and info["settings"]["lr"] == 0.001

    # 1 epoch, then the same command with --epochs 2 continues at epoch 2 and ends where ref ended.
    run = tmp_path / "resumed"
    run_cli(train_args(isic2019_dir, split40, run, 1))
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    out = json.loads(run_cli(train_args(isic2019_dir, split40, run, 2, "--json")))
    assert out["resumed_from"] == {"epoch": 1, "batch": 0} and out["epochs_run"] == 2
    assert_same_weights(run / "last.pt", ref / "last.pt")
    assert json.loads((run / "history.json").read_text())[1]["val"]["auc"]["value"] == pytest.approx(
        history[1]["val"]["auc"]["value"]
    )

    # Nothing left to do at --epochs 2; different settings are refused.
    assert json.loads(run_cli(train_args(isic2019_dir, split40, run, 2, "--json")))["epochs_run"] == 2
    with pytest.raises(DermadvError, match=r"cannot resume.*lr: 0.001 -> 0.01"):
        run_cli(train_args(isic2019_dir, split40, run, 3, "--lr", "0.01"))

    # Killed (SIGKILL) right after the first mid-epoch checkpoint: rerunning continues from that batch.
    killed = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "dermadv.cli",
        *train_args(isic2019_dir, split40, killed, 2),
        "--checkpoint-every",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 120
    while not (killed / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    state = torch.load(killed / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == (0, 1), (state["epoch"], state["batch"])
    assert not (killed / "history.json").exists()
    out = json.loads(
        run_cli(train_args(isic2019_dir, split40, killed, 2, "--checkpoint-every", "1", "--json"))
    )
    assert out["resumed_from"] == {"epoch": 0, "batch": 1}
    assert_same_weights(killed / "last.pt", ref / "last.pt")


def test_train_refuses_bad_inputs(tmp_path: Path, isic2019_dir: Path, split40: Path) -> None:
    with pytest.raises(DermadvError, match="split file not found"):
        run_cli(train_args(isic2019_dir, tmp_path / "none.csv", tmp_path / "r", 1))
    with pytest.raises(DermadvError, match=r"inception_v3 \(its auxiliary head\) needs --image-size >= 299"):
        run_cli(
            train_args(
                isic2019_dir, split40, tmp_path / "r", 1, "--arch", "inception_v3", "--image-size", "64"
            )
        )
    with pytest.raises(DermadvError, match="no training images of class.*bcc"):
        run_cli(train_args(isic2019_dir, split40, tmp_path / "r", 1, "--classes", "mel,nv,bcc"))
    with pytest.raises(DermadvError, match="--threads must be 0"):
        run_cli(train_args(isic2019_dir, split40, tmp_path / "r", 1, "--threads", "-2"))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(DermadvError, match="a_file: exists and is not a directory"):
        run_cli(train_args(isic2019_dir, split40, a_file, 1))


# ----- a full-size network: inception v3 at 299 px, forward and backward (~5 s on a 2-core CPU) ---------
def test_inception_v3_forward_backward_with_aux_logits() -> None:
    torch.manual_seed(0)
    model = build_model("inception_v3", 2, "none")
    assert model.aux_logits and model.AuxLogits is not None and not model.transform_input
    assert head_parameter_names(model, 2) == {
        "fc.weight",
        "fc.bias",
        "AuxLogits.fc.weight",
        "AuxLogits.fc.bias",
    }
    model.train()
    x = torch.randn(2, 3, 299, 299)
    out = model(x)
    assert out.logits.shape == (2, 2) and out.aux_logits.shape == (2, 2)
    from dermadv.models.train import _loss

    y = torch.tensor([0, 1])
    loss = _loss(out, y, 0.4)
    expected = torch.nn.functional.cross_entropy(out.logits, y) + 0.4 * torch.nn.functional.cross_entropy(
        out.aux_logits, y
    )
    assert torch.allclose(loss, expected)
    loss.backward()
    assert model.fc.weight.grad is not None and model.AuxLogits.fc.weight.grad is not None
    assert model.Conv2d_1a_3x3.conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 2)  # plain logits in eval mode
