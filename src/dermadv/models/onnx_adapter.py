"""ONNX models run by onnxruntime (``*.onnx``) as black-box classifiers.

Input layout (NCHW or NHWC), size and dtype come from the graph. Classes and preprocessing come
from a ``dermadv.json`` metadata entry when the file was written by ``dermadv models export-onnx``
(then pixels go in as 0..255 floats and probabilities come out), otherwise from options. Extra
non-image inputs (clinical metadata) are filled by a ``metadata_encoder`` (``module:function``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import ModelError, require
from dermadv.models.base import Classifier, Metadata
from dermadv.models.formats import option_values, register_format
from dermadv.models.registry import as_floats, as_size, classes_or_meta

#: Key of the model-metadata entry holding classes and preprocessing (written by dermadv export).
META_KEY = "dermadv.json"

#: Pixel normalisations: name -> (mean, std) in 0..1 units; "none" feeds 0..255 floats unchanged.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "none": None,
}

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
}


def resolve_normalization(
    normalize: str | None, mean: Any, std: Any, default: str, where: str
) -> tuple[str, tuple[float, ...] | None, tuple[float, ...] | None]:
    """(label, mean, std) for an adapter: explicit mean/std win, else a named normalisation."""
    m, s = as_floats(mean, 3, "mean"), as_floats(std, 3, "std")
    if (m is None) != (s is None):
        raise ModelError(f"{where}: give both mean and std (0..1 units), or neither")
    if m is not None and s is not None:
        if min(s) <= 0:
            raise ModelError(f"{where}: std must be > 0, got {s}")
        return "custom", m, s
    name = normalize or default
    if name not in NORMALIZATIONS:
        raise ModelError(f"{where}: normalize must be one of {sorted(NORMALIZATIONS)}, got {name!r}")
    pair = NORMALIZATIONS[name]
    return (name, None, None) if pair is None else (name, pair[0], pair[1])


def load_metadata_encoder(spec: str | Callable[..., Any] | None, where: str) -> Callable[..., Any] | None:
    """A metadata encoder ``f(metadata, n) -> N x M`` from ``"module:function"`` or a callable.

    A class (e.g. ``dermadv.models.sklesion:SklesionMetadata``) is instantiated with no arguments,
    so that each model gets its own encoder (which may count the defaults it used).
    """
    import inspect

    if spec is None:
        return None
    obj: Any
    if not isinstance(spec, str):
        obj = spec
    else:
        from dermadv.models.callable_adapter import resolve_callable

        obj = resolve_callable(spec, what=f"{where}: metadata_encoder")
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise ModelError(f"{where}: metadata_encoder {spec!r} is not callable")
    if isinstance(spec, str) and not hasattr(obj, "spec"):
        try:
            obj.spec = spec
        except AttributeError:  # builtins
            pass
    return obj


def default_threads() -> int:
    """CPU threads for one inference session: the cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


class OnnxClassifier(Classifier):
    """An onnxruntime session behind the Classifier interface (black-box)."""

    white_box = False
    #: The source model's description, for a file written by ``dermadv models export-onnx``.
    export_info: Any = None
    #: Extra description: a dict, or a function of the description returning one (see sklesion).
    notes: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]] | None = None

    def __init__(
        self,
        session: Any,
        classes: tuple[str, ...],
        input_size: tuple[int, int],
        *,
        name: str,
        source: str,
        layout: str,
        image_input: str,
        image_dtype: Any,
        extra_inputs: list[tuple[str, Any]],
        normalization: tuple[str, tuple[float, ...] | None, tuple[float, ...] | None],
        output: str,
        decoder: str,
        resize_method: str,
        metadata_encoder: Callable[..., Any] | None,
        batch_size: int,
        threads: int,
    ) -> None:
        super().__init__()
        self.session = session
        self.classes = classes
        self.input_size = input_size
        self.name = name
        self.source = source
        self.layout = layout
        self.image_input = image_input
        self.image_dtype = image_dtype
        self.extra_inputs = extra_inputs
        self.normalization = normalization
        self.output = output
        self.decoder = decoder
        self.resize_method = resize_method
        self.metadata_encoder = metadata_encoder
        self.needs_metadata = bool(extra_inputs)
        self.batch_size = batch_size
        self.threads = threads
        self.set_groups()

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        device: str | None = None,
        classes: str | list[str] | None = None,
        input_size: int | str | tuple[int, int] | None = None,
        normalize: str | None = None,
        mean: str | list[float] | None = None,
        std: str | list[float] | None = None,
        output: str | None = None,
        layout: str | None = None,
        decoder: str | None = None,
        resize: str | None = None,
        metadata_encoder: str | Callable[..., Any] | None = None,
        threads: int | str | None = None,
        batch_size: int | str | None = None,
        name: str | None = None,
        **unknown: Any,
    ) -> OnnxClassifier:
        """Open ``path`` with onnxruntime (CUDA provider when available and ``device`` allows)."""
        ort = require("onnxruntime", "onnx", "Running ONNX models")
        path = Path(path)
        if unknown:
            raise ModelError(
                f"{path}: unknown ONNX option(s) {sorted(unknown)}; known: classes, input_size, normalize, "
                "mean, std, output, layout, decoder, resize, metadata_encoder, threads, batch_size"
            )
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        n_threads = int(threads) if threads is not None else default_threads()
        session = _open_session(ort, path, device, n_threads)
        meta = _file_metadata(session, path)
        inputs = session.get_inputs()
        img = _image_input(inputs, path)
        dims = list(img.shape)
        lay = _layout(dims, layout or meta.get("layout"), path)
        size = _input_size(dims, lay, input_size, meta, path)

        extra = [(i.name, _DTYPES.get(i.type, np.float32)) for i in inputs if i is not img]
        encoder = load_metadata_encoder(metadata_encoder or meta.get("metadata_encoder"), str(path))
        if extra and encoder is None:
            raise ModelError(
                f"{path}: the model has non-image inputs {[n for n, _ in extra]}; pass "
                "metadata_encoder=module:function returning one N x M array per extra input"
            )
        names = classes_or_meta(classes, meta, f"{path}: ONNX file ({META_KEY} entry missing)")
        outs = session.get_outputs()
        k = outs[0].shape[-1] if outs[0].shape else None
        if isinstance(k, int) and k != len(names):
            raise ModelError(
                f"{path}: the model outputs {k} scores but {len(names)} classes were given {list(names)}"
            )
        # dermadv exports take 0..255 pixels ("none"); other float graphs default to ImageNet statistics.
        default = "none" if meta or img.type == "tensor(uint8)" else "imagenet"
        norm = resolve_normalization(
            normalize if normalize is not None else meta.get("normalize"),
            mean if mean is not None else meta.get("mean"),
            std if std is not None else meta.get("std"),
            default,
            str(path),
        )
        out_kind = output or meta.get("output") or _guess_output(path)
        if out_kind not in ("logits", "probs"):
            raise ModelError(f"{path}: output must be 'logits' or 'probs', got {out_kind!r}")
        model = cls(
            session,
            names,
            size,
            name=name or meta.get("name") or path.stem,
            source=str(path),
            layout=lay,
            image_input=img.name,
            image_dtype=_DTYPES[img.type],
            extra_inputs=extra,
            normalization=norm,
            output=out_kind,
            decoder=decoder or meta.get("decoder", "pil"),
            resize_method=resize or meta.get("resize", "bilinear"),
            metadata_encoder=encoder,
            batch_size=int(batch_size or meta.get("batch_size", 32)),
            threads=n_threads,
        )
        if meta.get("melanoma_classes") or meta.get("benign_classes"):
            model.set_groups(meta.get("melanoma_classes") or None, meta.get("benign_classes") or None)
        model.export_info = meta.get("source")
        return model

    # ----- inference ----------------------------------------------------------------------------
    def _pixels(self, images: np.ndarray) -> np.ndarray:
        x = images
        if self.image_dtype != np.uint8:
            x = x.astype(np.float32)
            _, mean, std = self.normalization
            if mean is not None and std is not None:
                x = (x / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
            x = x.astype(self.image_dtype)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def _predict(self, images: np.ndarray, metadata: list[Metadata] | None) -> np.ndarray:
        feed = {self.image_input: self._pixels(images)}
        if self.extra_inputs:
            assert self.metadata_encoder is not None
            encoded = self.metadata_encoder(metadata, len(images))
            arrays = encoded if isinstance(encoded, (list, tuple)) else [encoded]
            if len(arrays) != len(self.extra_inputs):
                raise ModelError(
                    f"{self.name}: metadata encoder gave {len(arrays)} arrays for "
                    f"{len(self.extra_inputs)} extra inputs"
                )
            for (input_name, dtype), arr in zip(self.extra_inputs, arrays, strict=True):
                feed[input_name] = np.ascontiguousarray(np.asarray(arr, dtype=dtype))
        try:
            out = np.asarray(self.session.run(None, feed)[0], dtype=np.float64)
        except Exception as exc:  # onnxruntime errors (shape or type mismatch)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{self.name}: onnxruntime failed ({first[:300]})") from exc
        if self.output == "logits" and out.ndim == 2:
            out = out - out.max(axis=1, keepdims=True)
            out = np.exp(out)
            out /= out.sum(axis=1, keepdims=True)
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        label, mean, std = self.normalization
        d.update(
            {
                "file": self.source,
                "layout": self.layout,
                "input_dtype": np.dtype(self.image_dtype).name,
                "normalization": label,
                "mean": list(mean) if mean else None,
                "std": list(std) if std else None,
                "output": self.output,
                "providers": list(self.session.get_providers()),
                "threads": self.threads,
                "exported_from": getattr(self, "export_info", None),
            }
        )
        notes = getattr(self, "notes", None)  # extra description: a dict, or a function of the description
        if notes is not None:
            d.update(notes(d) if callable(notes) else notes)
        if self.metadata_encoder is not None and hasattr(self.metadata_encoder, "describe"):
            d["metadata"] = self.metadata_encoder.describe()
        return d


def _open_session(ort: Any, path: Path, device: str | None, threads: int) -> Any:
    """An onnxruntime InferenceSession on ``path`` (CUDA first when available and ``device`` allows)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    available = ort.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: not a loadable ONNX model ({first[:300]})") from exc


def _file_metadata(session: Any, path: Path) -> dict[str, Any]:
    """The file's ``dermadv.json`` metadata entry (``{}`` when there is none)."""
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if not raw:
        return {}
    try:
        meta: dict[str, Any] = json.loads(raw)
    except ValueError as exc:
        raise ModelError(f"{path}: its {META_KEY} metadata is not valid JSON ({exc})") from exc
    return meta


def _image_input(inputs: Sequence[Any], path: Path) -> Any:
    """The graph's one 4-D image input (ModelError when there is not exactly one, of a known type)."""
    images = [i for i in inputs if len(i.shape) == 4]
    if len(images) != 1:
        raise ModelError(
            f"{path}: expected exactly one 4-D image input, found {[(i.name, i.shape) for i in inputs]}"
        )
    img = images[0]
    if img.type not in _DTYPES:
        raise ModelError(f"{path}: image input {img.name!r} has unsupported type {img.type}")
    return img


def _layout(dims: list[Any], layout: Any, path: Path) -> str:
    """``NCHW`` or ``NHWC``: as given, else told from where the 3 channels are in the input shape."""
    if layout is None:
        if dims[1] == 3 and dims[3] != 3:
            layout = "NCHW"
        elif dims[3] == 3 and dims[1] != 3:
            layout = "NHWC"
        else:
            raise ModelError(f"{path}: cannot tell NCHW from NHWC for input shape {dims}; pass layout=NCHW")
    lay = str(layout).upper()
    if lay not in ("NCHW", "NHWC"):
        raise ModelError(f"{path}: layout must be NCHW or NHWC, got {lay!r}")
    return lay


def _input_size(
    dims: list[Any],
    layout: str,
    input_size: int | str | tuple[int, int] | None,
    meta: Mapping[str, Any],
    path: Path,
) -> tuple[int, int]:
    """(height, width): the option, else the graph's fixed size, else the file's metadata."""
    hw = dims[2:4] if layout == "NCHW" else dims[1:3]
    graph_size = tuple(hw) if all(isinstance(d, int) and d > 0 for d in hw) else None
    size = as_size(input_size) or graph_size or as_size(meta.get("input_size"))
    if size is None:
        raise ModelError(f"{path}: the graph's image size is dynamic {dims}; pass input_size=H,W")
    if graph_size is not None and tuple(size) != graph_size:
        raise ModelError(f"{path}: input_size {size} contradicts the graph's fixed size {graph_size}")
    return (int(size[0]), int(size[1]))


def _guess_output(path: Path) -> str:
    """'probs' when the graph's output comes straight from a Softmax node, else 'logits'."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx not installed or unreadable: onnxruntime already read it
        return "logits"
    out_name = model.graph.output[0].name
    for node in model.graph.node:
        if out_name in node.output:
            return "probs" if node.op_type == "Softmax" else "logits"
    return "logits"


@register_format(
    "onnx",
    suffixes=(".onnx",),
    description="ONNX model run by onnxruntime; layout and size from the graph",
    label="ONNX",
    white_box=False,
    extra="onnx",
    requires=("onnxruntime",),
)
@dataclass(frozen=True)
class OnnxFormat:
    """Options override the file's ``dermadv.json`` metadata; without it ``classes`` is required."""

    classes: str | None = None
    input_size: int | str | None = None
    normalize: str | None = None
    mean: str | None = None
    std: str | None = None
    output: str | None = None
    layout: str | None = None
    decoder: str | None = None
    resize: str | None = None
    metadata_encoder: str | None = None
    threads: int | str | None = None
    batch_size: int | str | None = None
    name: str | None = None

    def load(self, source: Path, device: str | None = None) -> OnnxClassifier:
        return OnnxClassifier.from_file(source, device=device, **option_values(self))
