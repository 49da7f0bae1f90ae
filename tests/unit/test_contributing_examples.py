"""The worked examples in CONTRIBUTING.md run as written: an attack and a perturbation added in one
file each are registered, found by name, and attack an image under the study's criterion."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _block(heading: str) -> str:
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split(f"### {heading}", 1)[1].split("\n### ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python example under {heading!r}"
    return match.group(1)


def test_attack_and_perturbation_examples_run(tmp_path: Path) -> None:
    script = "\n".join(
        [
            _block("Adding a perturbation (one file)"),
            _block("Adding an attack (one file)"),
            textwrap.dedent(
                """
                import numpy as np
                from dermadv.attacks import available_attacks, make_attack
                from dermadv.models.callable_adapter import CallableClassifier
                from dermadv.perturb import PERTURBATIONS

                def brightness_model(images, metadata=None):
                    # melanoma when dark: P(mel) falls as the mean intensity rises
                    m = images.reshape(len(images), -1).mean(axis=1) / 255.0
                    p_mel = 1.0 / (1.0 + np.exp(-(0.5 - m) * 40.0))
                    return np.stack([p_mel, 1.0 - p_mel], axis=1)

                model = CallableClassifier(brightness_model, ("mel", "nv"), (32, 32))
                image = np.full((32, 32, 3), 110, np.uint8)  # mean 0.43: called melanoma
                assert "brightness" in available_attacks()
                gains = PERTURBATIONS.create("my-brightness", delta="0.5").apply(image, [[1.0], [1.5]])
                assert gains.dtype == np.uint8 and gains.shape == (2, 32, 32, 3)
                assert (gains[0] == 110).all() and (gains[1] == 165).all()
                res = make_attack("brightness", delta="0.5", popsize="5", maxiter="5").run(
                    model, image, image_id="dark", seed=0)
                assert res.outcome == "success", res
                assert res.adversarial.mean() > 0.5 * 255
                print("ok", res.queries)
                """
            ),
        ]
    )
    path = tmp_path / "example.py"
    path.write_text(script, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
