"""Self-describing dermadv checkpoints and torchvision model construction.

A checkpoint is a ``torch.save`` dict with ``"dermadv_checkpoint": 1`` holding everything needed to
rebuild and use the model from the file alone: architecture and constructor arguments, classes,
input size, normalisation, JPEG decoder, resize method, the state dict; plus how it was made
(training settings, data split hash and path, metrics, versions). ``last.pt`` additionally holds the
optimizer / scheduler / AMP scaler / RNG state for resuming; ``best.pt`` is the one to use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermadv.errors import ModelError
from dermadv.fileio import atomic_target
from dermadv.models.accel import INFERENCE_OPTIONS, InferenceSettings, inference_settings
from dermadv.models.base import TorchModuleClassifier
from dermadv.models.formats import register_format
from dermadv.runs.provenance import versions

CHECKPOINT_KEY = "dermadv_checkpoint"
CHECKPOINT_VERSION = 1

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Architectures whose constructor takes aux heads / an explicit init flag.
_AUX_ARCHS = ("inception_v3", "googlenet")

#: Keys every checkpoint must have to be usable.
REQUIRED_KEYS = ("arch", "num_classes", "classes", "input_size", "mean", "std", "decoder", "state_dict")


def available_architectures() -> list[str]:
    """torchvision classification architectures usable with ``--arch``."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def default_input_size(arch: str) -> int:
    """Conventional input size: 299 for Inception v3, 224 otherwise."""
    return 299 if arch == "inception_v3" else 224


def arch_kwargs(arch: str, pretrained: bool) -> dict[str, Any]:
    """Constructor arguments (besides num_classes) recorded in the checkpoint to rebuild the model.

    Inception v3 keeps its auxiliary classifier; with ImageNet weights it also needs
    ``transform_input=True`` (the ported Google weights expect inputs scaled to [-1, 1]; torchvision
    converts from ImageNet normalisation inside the model, as its own pretrained builder does).
    """
    if arch == "inception_v3":
        return {"aux_logits": True, "transform_input": bool(pretrained)}
    if arch == "googlenet":
        return {"aux_logits": True, "transform_input": bool(pretrained)}
    return {}


def _construct(arch: str, num_classes: int, kwargs: Mapping[str, Any], init: bool = True) -> Any:
    import torchvision.models as tvm

    if arch not in available_architectures():
        raise ModelError(
            f"unknown architecture {arch!r}; choose a torchvision classification model, e.g. inception_v3, "
            f"resnet18, resnet50, efficientnet_b0, mobilenet_v3_small, densenet121 "
            f"(all: {', '.join(available_architectures())})"
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    extra = dict(kwargs)
    if arch in _AUX_ARCHS:
        extra["init_weights"] = init
    return tvm.get_model(arch, weights=None, num_classes=num_classes, **extra)


def head_parameter_names(module: Any, num_classes: int) -> set[str]:
    """State-dict keys of the classifier head(s): the Linear/1x1-Conv layers producing ``num_classes``.

    For Inception v3 that is ``fc`` and ``AuxLogits.fc``; for ResNet ``fc``; for MobileNet/EfficientNet
    the last Linear of ``classifier``; for DenseNet ``classifier``.
    """
    import torch.nn as nn

    names: set[str] = set()
    for name, sub in module.named_modules():
        out = (
            sub.out_features
            if isinstance(sub, nn.Linear)
            else (sub.out_channels if isinstance(sub, nn.Conv2d) and sub.kernel_size == (1, 1) else None)
        )
        if out == num_classes:
            names.update(f"{name}.{p}" for p, _ in sub.named_parameters(recurse=False))
    return names


def _unwrap_state_dict(obj: Any, source: str) -> dict[str, Any]:
    import torch

    if isinstance(obj, Mapping) and obj.get(CHECKPOINT_KEY):
        obj = obj["state_dict"]
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if hasattr(obj, "state_dict") and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{source}: does not hold a state dict (a mapping of parameter names to tensors)")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_backbone_weights(module: Any, state: Mapping[str, Any], num_classes: int, source: str) -> list[str]:
    """Load ``state`` into ``module``: strict on the backbone; head tensors whose shape differs are skipped.

    Returns the names of the parameters left at their fresh initialisation (the replaced head).
    """
    own = module.state_dict()
    heads = head_parameter_names(module, num_classes)
    mismatched = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    bad = [k for k in mismatched if k not in heads]
    if bad:
        shown = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:3])
        raise ModelError(
            f"{source}: backbone tensors have the wrong shape for this architecture ({shown}); "
            "is it a state dict of the same --arch?"
        )
    missing, unexpected = module.load_state_dict(
        {k: v for k, v in state.items() if k not in mismatched}, strict=False
    )
    missing_backbone = [k for k in missing if k not in heads and not k.endswith("num_batches_tracked")]
    if missing_backbone or unexpected:
        parts = []
        if missing_backbone:
            parts.append(f"{len(missing_backbone)} backbone tensor(s) missing (e.g. {missing_backbone[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[:3]})")
        raise ModelError(f"{source}: does not match this architecture: {'; '.join(parts)}")
    return sorted(set(mismatched) | {k for k in missing if k in heads})


def imagenet_state_dict(arch: str) -> dict[str, Any]:
    """torchvision's ImageNet weights for ``arch`` (``get_model_weights(arch).DEFAULT``), downloaded
    into the torch hub cache on first use. Raises ModelError naming the alternatives when that fails."""
    import torch
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ModelError(f"torchvision has no pretrained weights for {arch!r}; use --weights none") from exc
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # network errors come as URLError, OSError, RuntimeError, ...
        raise ModelError(
            f"could not download the ImageNet weights for {arch} from {weights.url} ({type(exc).__name__}: "
            f"{exc}). Alternatives: --weights none (train from scratch); --weights /path/to/file.pth (an "
            f"ImageNet state dict for {arch}); or put that file at {cache} (the torch hub cache, "
            f"$TORCH_HOME/hub/checkpoints) and run again"
        ) from exc


def build_model(arch: str = "inception_v3", num_classes: int = 2, weights: str | Path | None = "none") -> Any:
    """A torchvision ``arch`` with a fresh ``num_classes`` head (Inception v3: main and aux heads).

    ``weights``: ``"none"`` (random init), ``"imagenet"`` (torchvision's ImageNet weights) or a path
    to a local state dict (strict on the backbone; head tensors of a different shape are ignored).
    """
    spec = "none" if weights is None else str(weights)
    pretrained = spec.lower() != "none"
    module = _construct(arch, num_classes, arch_kwargs(arch, pretrained), init=True)
    if spec.lower() == "none":
        return module
    if spec.lower() == "imagenet":
        load_backbone_weights(module, imagenet_state_dict(arch), num_classes, f"ImageNet weights for {arch}")
        return module
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"--weights {spec}: no such file; use 'imagenet', 'none' or a path to a state dict")
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read as a torch state dict ({type(exc).__name__}: {exc})") from exc
    load_backbone_weights(module, _unwrap_state_dict(obj, str(path)), num_classes, str(path))
    return module


# ----- checkpoint files ---------------------------------------------------------------------------
def make_checkpoint(
    module: Any,
    *,
    arch: str,
    classes: Sequence[str],
    input_size: tuple[int, int],
    model_kwargs: Mapping[str, Any],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    decoder: str = "pil",
    resize: str = "bilinear",
    training: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    kind: str = "best",
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint dict (see module docstring); ``extra`` adds resume state (optimizer, RNG...)."""
    ckpt: dict[str, Any] = {
        CHECKPOINT_KEY: CHECKPOINT_VERSION,
        "kind": kind,
        "arch": arch,
        "num_classes": len(classes),
        "classes": list(classes),
        "model_kwargs": dict(model_kwargs),
        "input_size": [int(input_size[0]), int(input_size[1])],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "decoder": decoder,
        "resize": resize,
        "preprocessing": f"decode ({decoder}), resize whole image to {input_size[0]}x{input_size[1]} "
        f"({resize}), scale to 0..1, normalise with mean/std",
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "training": dict(training or {}),
        "data": dict(data or {}),
        "metrics": dict(metrics or {}),
        "epoch": epoch,
        "versions": versions(),
    }
    ckpt.update(extra)
    return ckpt


def save_checkpoint(ckpt: Mapping[str, Any], path: str | Path) -> Path:
    """Write atomically (:func:`dermadv.fileio.atomic_target`: a temporary file beside it, then a rename)."""
    import torch

    path = Path(path)
    with atomic_target(path) as tmp:
        torch.save(dict(ckpt), tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a dermadv checkpoint dict (CPU tensors); ModelError naming the file otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"{path}: not a readable torch checkpoint (corrupt or truncated? "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(ckpt, Mapping) or CHECKPOINT_KEY not in ckpt:
        raise ModelError(
            f"{path}: not a dermadv checkpoint (no {CHECKPOINT_KEY!r} key). A bare state dict does not say "
            "how to preprocess images; train with `dermadv train --weights THIS_FILE` or wrap it as "
            "TorchScript or a 'module:function' model"
        )
    if ckpt[CHECKPOINT_KEY] != CHECKPOINT_VERSION:
        raise ModelError(
            f"{path}: checkpoint format version {ckpt[CHECKPOINT_KEY]!r} is not supported "
            f"(this dermadv reads version {CHECKPOINT_VERSION})"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ModelError(f"{path}: dermadv checkpoint lacks {missing}")
    if len(ckpt["classes"]) != ckpt["num_classes"]:
        raise ModelError(
            f"{path}: lists {len(ckpt['classes'])} classes but num_classes={ckpt['num_classes']}"
        )
    return dict(ckpt)


def module_from_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint") -> Any:
    """Rebuild the torch module and load its weights (strict)."""
    module = _construct(ckpt["arch"], int(ckpt["num_classes"]), ckpt.get("model_kwargs", {}), init=False)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{source}: weights do not fit architecture {ckpt['arch']} ({str(exc)[:300]})"
        ) from exc
    return module


class CheckpointClassifier(TorchModuleClassifier):
    """A :class:`TorchModuleClassifier` rebuilt from a dermadv checkpoint; describes its provenance."""

    def __init__(
        self,
        module: Any,
        ckpt: Mapping[str, Any],
        path: Path,
        device: str | None = None,
        inference: InferenceSettings | None = None,
    ) -> None:
        h, w = ckpt["input_size"]
        super().__init__(
            module,
            ckpt["classes"],
            (h, w),
            mean=ckpt["mean"],
            std=ckpt["std"],
            name=f"{ckpt['arch']}:{path.name}",
            decoder=ckpt["decoder"],
            device=device,
            batch_size=int(ckpt.get("training", {}).get("batch_size", 32)),
            inference=inference,
        )
        self.resize_method = ckpt.get("resize", "bilinear")
        self.path = path
        self.checkpoint_info = {
            "path": str(path),
            "arch": ckpt["arch"],
            "model_kwargs": dict(ckpt.get("model_kwargs", {})),
            "kind": ckpt.get("kind"),
            "epoch": ckpt.get("epoch"),
            "training": dict(ckpt.get("training", {})),
            "data": dict(ckpt.get("data", {})),
            "metrics": dict(ckpt.get("metrics", {})),
            "versions": dict(ckpt.get("versions", {})),
        }

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["checkpoint"] = self.checkpoint_info
        return d


#: Adapter options a dermadv checkpoint accepts; everything else is in the file itself.
#: ``precision``, ``compile``, ``channels_last``, ``cuda_graphs``: how inference runs
#: (:mod:`dermadv.models.accel`); ``batch_size``: a positive integer or "auto" (fit to GPU memory).
CHECKPOINT_OPTIONS = ("batch_size", *INFERENCE_OPTIONS)


def load_checkpoint_classifier(
    path: str | Path, device: str | None = None, **options: Any
) -> TorchModuleClassifier:
    """Rebuild a white-box classifier from a dermadv checkpoint file alone.

    The checkpoint records classes, input size and preprocessing, so the options are only how it runs
    (``batch_size`` and the inference settings); any other option is an error rather than silently
    ignored.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    unknown = sorted(set(options) - set(CHECKPOINT_OPTIONS))
    if unknown:
        raise ModelError(
            f"{path}: unknown option(s) {unknown} for a dermadv checkpoint; "
            f"known: {list(CHECKPOINT_OPTIONS)} "
            "(classes, input size and preprocessing come from the checkpoint itself; use "
            "--melanoma-classes/--benign-classes to regroup classes)"
        )
    inference = inference_settings(options, str(path))
    module = module_from_checkpoint(ckpt, str(path))
    model = CheckpointClassifier(module, ckpt, path, device=device, inference=inference)
    if options.get("batch_size") is not None:
        if options["batch_size"] == "auto":
            model.batch_size = model._batch_size("auto")
            return model
        try:
            batch_size = int(options["batch_size"])
        except (TypeError, ValueError):
            batch_size = 0
        if batch_size < 1:
            raise ModelError(
                f"{path}: batch_size must be a positive integer or 'auto', got {options['batch_size']!r}"
            )
        model.batch_size = batch_size
    return model


@register_format(
    "checkpoint",
    suffixes=(".pt", ".pth"),
    description="dermadv checkpoint (torch.save dict written by `dermadv train`)",
    label="dermadv checkpoint",
    white_box=True,
    options_note="(classes, input size and preprocessing come from the checkpoint itself; use "
    "--melanoma-classes/--benign-classes to regroup classes)",
)
@dataclass(frozen=True)
class CheckpointFormat:
    """A ``.pt``/``.pth`` file not claimed by another format (TorchScript sniffs its archives)."""

    batch_size: int | str | None = None
    precision: str | None = None
    compile: str | None = None
    channels_last: str | None = None
    cuda_graphs: str | None = None

    def load(self, source: Path, device: str | None = None) -> TorchModuleClassifier:
        given = {k: getattr(self, k) for k in INFERENCE_OPTIONS if getattr(self, k) is not None}
        return load_checkpoint_classifier(source, device=device, batch_size=self.batch_size, **given)
