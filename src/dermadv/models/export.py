"""Export white-box models to ONNX (``torch.onnx.export(dynamo=True)``) and TorchScript.

The exported graph includes the model's preprocessing: it takes float pixels N x 3 x H x W in 0..255
(plus the encoded metadata vector for models that take metadata) and returns probabilities. The batch
dimension is dynamic. Classes, input size, decoder, resize and the source model's description are
stored in the file (ONNX metadata / TorchScript extra file ``dermadv.json``), so ``load_model`` needs
no options for it. Files are written atomically.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermadv.errors import ModelError, require
from dermadv.fileio import atomic_target
from dermadv.models.base import Classifier, Metadata, TorchModuleClassifier

if TYPE_CHECKING:
    from dermadv.models.keras_adapter import KerasClassifier

FORMAT_VERSION = 1


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dermadv")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def _probs_module(model: Classifier) -> tuple[Any, list[str]]:
    """A torch module computing probabilities from 0..255 pixels (and metadata), plus its input names."""
    import torch

    from dermadv.models.keras_adapter import KerasClassifier

    if not model.white_box:
        raise ModelError(
            f"{model.name} is a black-box model: only white-box (torch-backed) models can be "
            "exported (dermadv checkpoints, TorchScript, Keras)"
        )
    if isinstance(model, KerasClassifier):
        return _keras_probs_module(model)
    if model.needs_metadata:
        raise ModelError(f"{model.name}: export of torch models with metadata inputs is not supported")
    if isinstance(model, TorchModuleClassifier):
        return _torch_module_probs(model), ["pixels"]

    class TorchProbs(torch.nn.Module):
        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return torch.softmax(model.torch_forward(pixels), dim=1)

    return TorchProbs().eval(), ["pixels"]


def _keras_probs_module(model: KerasClassifier) -> tuple[Any, list[str]]:
    """:func:`_probs_module` of a Keras model (on the torch backend), with at most one metadata input."""
    import torch

    if model._n_extra > 1:
        raise ModelError(f"{model.name}: export supports at most one metadata input")

    class KerasProbs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model.model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            out = model.forward_tensors(pixels)
            return out if model.output == "probs" else torch.softmax(out, dim=1)

    class KerasProbsMeta(KerasProbs):
        def forward(self, pixels: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            out = model.forward_tensors(pixels, [metadata])
            return out if model.output == "probs" else torch.softmax(out, dim=1)

    if model.needs_metadata:
        return KerasProbsMeta().eval(), ["pixels", "metadata"]
    return KerasProbs().eval(), ["pixels"]


def _torch_module_probs(model: TorchModuleClassifier) -> Any:
    """:func:`_probs_module` of a torch module behind :class:`TorchModuleClassifier` (normalisation
    included; a TorchScript module is converted to an exported program first)."""
    import torch

    net = model.module
    if isinstance(net, torch.jit.ScriptModule):  # torch.export cannot trace TorchScript: convert it first
        net = _convert_script_module(model, net)

    class TorchModuleProbs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            out = self.net((pixels - model._mean_t) / model._std_t)
            if not isinstance(out, torch.Tensor):
                out = out[0]
            return out if model.output == "probs" else torch.softmax(out, dim=1)

    return TorchModuleProbs()  # net is already in eval mode (and converted ones refuse .eval())


def _convert_script_module(model: TorchModuleClassifier, net: Any) -> Any:
    """A TorchScript module as a ``torch.export`` module (ModelError naming the model if it cannot be)."""
    import torch

    try:
        from torch._export.converter import TS2EPConverter

        h, w = model.input_size
        return TS2EPConverter(net, (torch.zeros(2, 3, h, w, device=model.device),)).convert().module()
    except Exception as exc:
        raise ModelError(
            f"{model.name}: cannot convert the TorchScript module for ONNX export "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def _example_inputs(model: Classifier, n: int = 2) -> tuple[Any, ...]:
    import torch

    from dermadv.models.keras_adapter import KerasClassifier

    h, w = model.input_size
    pixels = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255
    pixels = pixels.to(getattr(model, "device", "cpu"))  # torch models on a GPU export from there
    if isinstance(model, KerasClassifier) and model.needs_metadata:
        counts = getattr(model.metadata_encoder, "counts", None)
        saved = dict(counts) if isinstance(counts, dict) else None
        meta = model._encode_metadata(None, n)[0].cpu()
        if (
            isinstance(counts, dict) and saved is not None
        ):  # example inputs are not images the model classified
            counts.clear()
            counts.update(saved)
        return pixels, meta
    return (pixels,)


def onnx_metadata(model: Classifier, inputs: list[str]) -> dict[str, Any]:
    """The ``dermadv.json`` entry stored in an exported ONNX file."""
    return {
        "format": FORMAT_VERSION,
        "name": f"{model.name}-onnx" if not model.name.endswith("onnx") else model.name,
        "classes": list(model.classes),
        "melanoma_classes": sorted(model.melanoma),
        "benign_classes": sorted(model.benign),
        "input_size": list(model.input_size),
        "layout": "NCHW",
        "inputs": inputs,
        "normalize": "none",
        "mean": None,
        "std": None,
        "output": "probs",
        "decoder": model.decoder,
        "resize": model.resize_method,
        "metadata_encoder": getattr(model, "metadata_encoder_spec", None) if model.needs_metadata else None,
        "source": model.describe(),
        "dermadv_version": _version(),
    }


def _check_target(out: Path) -> None:
    """Refuse a directory and create the file's folder (ModelError naming it)."""
    if out.is_dir():
        raise ModelError(f"{out}: is a directory; give a file name for the exported model")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ModelError(
            f"{out}: cannot create its folder ({exc.filename} is a file, not a directory)"
        ) from exc


def export_onnx(model: Classifier, out: str | Path, opset: int | None = None) -> Path:
    """Export a white-box classifier to ONNX with a dynamic batch dimension (single file, atomic)."""
    import torch

    require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export (torch.onnx dynamo exporter)")
    out = Path(out)
    module, names = _probs_module(model)
    if model.needs_metadata and not getattr(model, "metadata_encoder_spec", None):
        raise ModelError(
            f"{model.name}: its metadata encoder has no 'module:function' name to record in the "
            "ONNX file; pass metadata_encoder as a string"
        )
    example = _example_inputs(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = {name: {0: batch} for name in names}
    meta = onnx_metadata(model, names)
    _check_target(out)
    try:
        with atomic_target(out, suffix=out.suffix) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                input_names=names,
                output_names=["probs"],
                dynamic_shapes=dynamic,
                opset_version=opset,
                verbose=False,
            )
            if program is None:  # pragma: no cover - older torch
                raise ModelError("torch.onnx.export(dynamo=True) returned no program; torch >= 2.5 is needed")
            program.model.metadata_props["dermadv.json"] = json.dumps(meta)
            program.save(str(tmp), external_data=False)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"{model.name}: ONNX export failed ({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    return out


def export_torchscript(model: TorchModuleClassifier, out: str | Path) -> Path:
    """Trace a torch-module classifier's network to TorchScript with a ``dermadv.json`` extra file."""
    import torch

    if not isinstance(model, TorchModuleClassifier):
        raise ModelError(
            f"{model.name}: TorchScript export needs a torch-module model, not {type(model).__name__}"
        )
    out = Path(out)
    meta = {
        "format": FORMAT_VERSION,
        "name": model.name,
        "classes": list(model.classes),
        "melanoma_classes": sorted(model.melanoma),
        "benign_classes": sorted(model.benign),
        "input_size": list(model.input_size),
        "mean": list(model.mean),
        "std": list(model.std),
        "output": model.output,
        "decoder": model.decoder,
        "resize": model.resize_method,
        "dermadv_version": _version(),
    }
    h, w = model.input_size
    example = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(model.device)
    _check_target(out)
    with atomic_target(out, suffix=out.suffix) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.module.eval(), example)
        torch.jit.save(traced, str(tmp), _extra_files={"dermadv.json": json.dumps(meta)})
    return out


def compare_probs(
    a: Classifier,
    b: Classifier,
    images: Sequence[np.ndarray] | np.ndarray,
    metadata: Sequence[Metadata] | None = None,
) -> float:
    """Max absolute difference between two models' probabilities on the same images (a's resize)."""
    batch = a.prepare(images)
    pa = a.predict_proba(batch, metadata)
    pb = b.predict_proba(batch, metadata)
    if pa.shape != pb.shape:
        raise ModelError(f"output shapes differ: {pa.shape} vs {pb.shape}")
    return float(np.abs(pa - pb).max()) if pa.size else 0.0
