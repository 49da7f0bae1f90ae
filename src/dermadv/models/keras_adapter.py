"""Keras 3 models (``*.keras``) run by Keras on the PyTorch backend, as white-box classifiers.

Keras picks its backend once, at import: :func:`import_keras` sets ``KERAS_BACKEND=torch`` first and
refuses a Keras already imported with another backend. On the torch backend a Keras model is a
``torch.nn.Module`` whose call runs torch ops, so :meth:`KerasClassifier.torch_forward` is
differentiable with respect to the input pixels (gradient attacks work on Keras models).

The image input size and layout come from the model's input shape. Pixels go in as 0..255 floats
unless ``normalize``/``mean``/``std`` say otherwise (Keras models usually carry their own
Rescaling/Normalization layers). Extra inputs (e.g. clinical metadata) are filled by a
``metadata_encoder(metadata, n) -> N x M array`` (one array, or a list in input order).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import ModelError, require
from dermadv.models.base import Classifier, Metadata
from dermadv.models.formats import option_values, register_format
from dermadv.models.registry import as_classes, as_size


def import_keras() -> Any:
    """Import Keras 3 on the PyTorch backend, or raise a clear error."""
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = "torch"
        keras = require("keras", "keras", "Loading Keras models")
    try:
        backend = keras.backend.backend()
    except AttributeError as exc:
        raise ModelError(
            "the installed 'keras' is not Keras 3; install it with: pip install 'dermadv[keras]'"
        ) from exc
    if backend != "torch":
        raise ModelError(
            f"Keras was already imported with the {backend!r} backend in this process; dermadv runs Keras "
            "models on the PyTorch backend. Set KERAS_BACKEND=torch before anything imports keras."
        )
    return keras


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


class KerasClassifier(Classifier):
    """A Keras 3 model (PyTorch backend) behind the Classifier interface (white-box)."""

    white_box = True

    def __init__(
        self,
        model: Any,
        classes: Sequence[str],
        *,
        name: str = "keras-model",
        source: str = "",
        input_size: tuple[int, int] | None = None,
        normalization: tuple[str, tuple[float, ...] | None, tuple[float, ...] | None] = ("none", None, None),
        output: str = "auto",
        decoder: str = "pil",
        resize_method: str = "bilinear",
        metadata_encoder: Callable[..., Any] | None = None,
        batch_size: int = 8,  # best measured on CPU (benchmarks/adapters.py)
        metadata_encoder_spec: str | None = None,
    ) -> None:
        super().__init__()
        import torch

        self.model = model
        self.name = name
        self.source = source
        self.classes = tuple(classes)
        self.decoder = decoder
        self.resize_method = resize_method
        self.batch_size = batch_size
        self.normalization = normalization
        self.metadata_encoder = metadata_encoder
        self.metadata_encoder_spec = metadata_encoder_spec or getattr(metadata_encoder, "spec", None)

        try:
            inputs = list(model.inputs)
        except (AttributeError, ValueError) as exc:
            raise ModelError(
                f"{name}: the Keras model has no defined inputs (subclassed or never built); save a "
                "functional or Sequential model with an Input layer"
            ) from exc
        images = [i for i, t in enumerate(inputs) if len(t.shape) == 4]
        if len(images) != 1:
            raise ModelError(
                f"{name}: expected exactly one 4-D image input, found shapes "
                f"{[tuple(t.shape) for t in inputs]}"
            )
        self._image_index = images[0]
        shape = tuple(inputs[self._image_index].shape)
        if shape[3] == 3:
            self.layout, hw = "NHWC", shape[1:3]
        elif shape[1] == 3:
            self.layout, hw = "NCHW", shape[2:4]
        else:
            raise ModelError(f"{name}: image input shape {shape} has no 3-channel axis")
        model_size = tuple(int(d) for d in hw) if all(d is not None for d in hw) else None
        size = input_size or model_size
        if size is None:
            raise ModelError(f"{name}: the model's image size is dynamic {shape}; pass input_size=H,W")
        if model_size is not None and tuple(size) != model_size:
            raise ModelError(f"{name}: input_size {tuple(size)} contradicts the model's input shape {shape}")
        self.input_size = (int(size[0]), int(size[1]))
        self._n_extra = len(inputs) - 1
        self.needs_metadata = self._n_extra > 0
        if self.needs_metadata and metadata_encoder is None:
            raise ModelError(
                f"{name}: the model has {self._n_extra} non-image input(s) "
                f"{[tuple(t.shape) for i, t in enumerate(inputs) if i != self._image_index]}; pass "
                "metadata_encoder=module:function returning one N x M array per extra input"
            )
        if len(model.outputs) != 1:
            raise ModelError(f"{name}: expected one output, the model has {len(model.outputs)}")
        k = model.outputs[0].shape[-1]
        if k is not None and int(k) != len(self.classes):
            raise ModelError(
                f"{name}: the model outputs {k} scores but {len(self.classes)} classes were "
                f"given {list(self.classes)}"
            )
        self.output = _guess_output(model) if output == "auto" else output
        if self.output not in ("logits", "probs"):
            raise ModelError(f"{name}: output must be 'logits', 'probs' or 'auto', got {output!r}")
        _, mean, std = normalization
        self._mean_t = None if mean is None else torch.tensor(mean).view(1, 3, 1, 1) * 255.0
        self._std_t = None if std is None else torch.tensor(std).view(1, 3, 1, 1) * 255.0
        self.set_groups()

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        classes: str | list[str] | None = None,
        input_size: int | str | tuple[int, int] | None = None,
        normalize: str | None = None,
        mean: str | list[float] | None = None,
        std: str | list[float] | None = None,
        output: str = "auto",
        decoder: str | None = None,
        resize: str | None = None,
        metadata_encoder: str | Callable[..., Any] | None = None,
        batch_size: int | str | None = None,
        name: str | None = None,
        device: str | None = None,
        **unknown: Any,
    ) -> KerasClassifier:
        """``keras.saving.load_model(path, compile=False)`` on the torch backend."""
        path = Path(path)
        if unknown:
            raise ModelError(
                f"{path}: unknown Keras option(s) {sorted(unknown)}; known: classes, input_size, "
                "normalize, mean, std, output, decoder, resize, metadata_encoder, batch_size"
            )
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        names = as_classes(classes)
        if names is None:
            raise ModelError(
                f"{path}: pass the model's class names in output order, e.g. --model-option classes=mel,nv"
            )
        from dermadv.models.onnx_adapter import load_metadata_encoder, resolve_normalization

        model = load_keras_file(path)
        return cls(
            model,
            names,
            name=name or path.stem,
            source=str(path),
            input_size=as_size(input_size),
            normalization=resolve_normalization(normalize, mean, std, "none", str(path)),
            output=output,
            decoder=decoder or "pil",
            resize_method=resize or "bilinear",
            metadata_encoder=load_metadata_encoder(metadata_encoder, str(path)),
            metadata_encoder_spec=metadata_encoder if isinstance(metadata_encoder, str) else None,
            batch_size=int(batch_size or 8),
        )

    # ----- forward ------------------------------------------------------------------------------
    def _device(self) -> Any:
        from keras.src.backend.torch.core import get_device

        return get_device()

    def _encode_metadata(self, metadata: Sequence[Metadata] | None, n: int) -> list[Any]:
        import torch

        if not self.needs_metadata:
            return []
        assert self.metadata_encoder is not None
        encoded = self.metadata_encoder(None if metadata is None else list(metadata), n)
        arrays = list(encoded) if isinstance(encoded, (list, tuple)) else [encoded]
        if len(arrays) != self._n_extra:
            raise ModelError(
                f"{self.name}: metadata encoder gave {len(arrays)} arrays for {self._n_extra} inputs"
            )
        return [torch.as_tensor(np.asarray(a, dtype=np.float32), device=self._device()) for a in arrays]

    def raw_forward(self, x: Any, metadata: Sequence[Metadata] | None = None) -> Any:
        """The model's own output (probabilities or logits) for float pixels N x 3 x H x W in 0..255."""
        return self.forward_tensors(x, self._encode_metadata(metadata, x.shape[0]))

    def forward_tensors(self, x: Any, extra: Sequence[Any] = ()) -> Any:
        """The model's own output from pixels N x 3 x H x W (0..255) and already encoded extra inputs."""
        import torch

        x = x.to(self._device(), torch.float32)
        if self._mean_t is not None and self._std_t is not None:
            x = (x - self._mean_t.to(x.device)) / self._std_t.to(x.device)
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        if extra:
            inputs = [e.to(x.device, torch.float32) for e in extra]
            inputs.insert(self._image_index, x)
            out = self.model(inputs, training=False)
        else:
            out = self.model(x, training=False)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out

    def torch_forward(self, x: Any, metadata: Sequence[Metadata] | None = None) -> Any:
        import torch

        out = self.raw_forward(x, metadata)
        return torch.log(out.clamp_min(1e-12)) if self.output == "probs" else out

    def _predict(self, images: np.ndarray, metadata: list[Metadata] | None) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        with torch.no_grad():
            out = self.raw_forward(x.float(), metadata).float()
            if self.output == "logits":
                out = torch.softmax(out, dim=1)
        return out.cpu().numpy()

    def describe(self) -> dict[str, Any]:
        import keras

        d = super().describe()
        label, mean, std = self.normalization
        d.update(
            {
                "file": self.source,
                "framework": f"keras {keras.__version__} (backend {keras.backend.backend()})",
                "layout": self.layout,
                "normalization": label,
                "mean": list(mean) if mean else None,
                "std": list(std) if std else None,
                "output": self.output,
            }
        )
        if self.metadata_encoder is not None and hasattr(self.metadata_encoder, "describe"):
            d["metadata"] = self.metadata_encoder.describe()
        return d


def load_keras_file(path: Path) -> Any:
    """Load a ``.keras`` file without compiling; any failure becomes a ModelError naming the file."""
    import zipfile

    keras = import_keras()
    if not zipfile.is_zipfile(path):
        # Keras itself reports "File not found" here, which misleads: the file exists but is no archive.
        raise ModelError(
            f"{path}: not a Keras 3 model file (a .keras file is a zip archive holding config.json and "
            "model.weights.h5; this file is not a zip archive)"
        )
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, TypeError...
        raise ModelError(
            f"{path}: not a loadable Keras 3 model ({type(exc).__name__}: {_short(exc)})"
        ) from exc


def _guess_output(model: Any) -> str:
    """'probs' when the output layer ends in a softmax activation, else 'logits'."""
    try:
        layer = model.outputs[0]._keras_history[0]
    except (AttributeError, IndexError):
        layer = model.layers[-1] if getattr(model, "layers", None) else None
    if layer is None:
        return "logits"
    config = layer.get_config() if hasattr(layer, "get_config") else {}
    activation = config.get("activation")
    if isinstance(activation, dict):
        activation = activation.get("config", {}).get("name") or activation.get("class_name")
    if activation == "softmax" or type(layer).__name__ == "Softmax":
        return "probs"
    return "logits"


@register_format(
    "keras",
    suffixes=(".keras",),
    description="Keras 3 model, run by Keras on the PyTorch backend; input size from the model",
    label="Keras",
    white_box=True,
    extra="keras",
    requires=("keras",),
)
@dataclass(frozen=True)
class KerasFormat:
    """``classes`` is required (a .keras file does not name its outputs)."""

    classes: str | None = None
    input_size: int | str | None = None
    normalize: str | None = None
    mean: str | None = None
    std: str | None = None
    output: str = "auto"
    decoder: str | None = None
    resize: str | None = None
    metadata_encoder: str | None = None
    batch_size: int | str | None = None
    name: str | None = None

    def load(self, source: Path, device: str | None = None) -> KerasClassifier:
        return KerasClassifier.from_file(source, device=device, **option_values(self))
