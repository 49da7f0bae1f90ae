"""A tiny white-box CNN trained briefly on real ISIC images, saved as TorchScript, for campaign tests."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np

from dermadv.data import select_samples


def train_tiny_torchscript(
    isic2019_dir: Path,
    out: Path,
    *,
    size: int,
    n_images: int,
    conv_layers: int,
    epochs: int,
    batch: int,
) -> Path:
    """Train a ``conv_layers``-deep CNN (seed 0, Adam 3e-3) on ``n_images`` real mel/nv images; save it."""
    import torch

    from dermadv.data.images import load_image, resize_uint8
    from dermadv.models.base import TorchModuleClassifier
    from dermadv.models.export import export_torchscript

    torch.manual_seed(0)
    samples = select_samples(isic2019_dir, limit=n_images)
    x = torch.from_numpy(np.stack([resize_uint8(load_image(s.path), (size, size)) for s in samples]))
    x = x.permute(0, 3, 1, 2).float()
    y = torch.tensor([0 if s.diagnosis == "mel" else 1 for s in samples])
    layers: list[torch.nn.Module] = []
    channels = [3, 8, 16, 16][: conv_layers + 1]
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        layers += [torch.nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), torch.nn.ReLU()]
    net = torch.nn.Sequential(
        *layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels[-1], 2)
    )
    clf = TorchModuleClassifier(
        net, ("mel", "nv"), (size, size), mean=(0.5,) * 3, std=(0.25,) * 3, name="tiny-cnn", device="cpu"
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(epochs):
        for b in range(0, len(x), batch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(
                clf.torch_forward(x[b : b + batch]), y[b : b + batch]
            ).backward()
            opt.step()
    net.eval()
    return export_torchscript(clf, out)


def kill_after_rows(proc: subprocess.Popen, db: Path, rows: int = 2, timeout: float = 60.0) -> None:
    """SIGKILL ``proc`` once its results store ``db`` holds ``rows`` committed rows; assert it was killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    n = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:  # table not created yet
                n = 0
            if n >= rows:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, f"campaign ended before it was killed: {proc.stderr.read()}"
