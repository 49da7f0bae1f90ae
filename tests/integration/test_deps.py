"""Declared dependencies are the real ones.

deptry (``make test`` runs ``python -m deptry src``, configured in pyproject's ``[tool.deptry]``) checks
that every import in src/ is a declared dependency, but it counts every extra as declared. Here:

- statically, each import of an optional package sits in a module of the extra that provides it, and
  each ``dermadv.errors.require(module, extra, ...)`` names the extra that really declares ``module``;
- at run time, with an extra's packages made unimportable, the CLI still starts and a command that needs
  the extra fails with one line naming it (exit status 2), not a traceback.
"""

from __future__ import annotations

from pathlib import Path

from deps_support import ROOT, assert_names_extra, run_without


def test_onnx_model_without_onnxruntime(tmp_path: Path, isic2019_dir: Path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"\x08\x07")  # never read: the missing runtime is reported first
    args = ["evaluate", "--model", "x.onnx", "--data", str(isic2019_dir)]
    assert_names_extra(run_without(["onnxruntime"], args, tmp_path), "onnxruntime", "onnx")


def test_keras_model_without_keras(tmp_path: Path, isic2019_dir: Path) -> None:
    (tmp_path / "x.keras").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip archive
    args = ["evaluate", "--model", "x.keras", "--model-option", "classes=mel,nv", "--data", str(isic2019_dir)]
    assert_names_extra(run_without(["keras"], args, tmp_path), "keras", "keras")


def test_ray_executor_without_ray(tmp_path: Path, isic2019_dir: Path) -> None:
    model = ROOT / "tests" / "golden" / "tiny_cnn.pt"
    args = ["attack", "--model", str(model), "--data", str(isic2019_dir), "--out", str(tmp_path / "run"),
            "--limit", "1", "--attacks", "color", "--executor", "ray", "--no-progress"]  # fmt: skip
    assert_names_extra(run_without(["ray"], args, tmp_path), "ray", "ray")
