"""What in the image drives the call: attribution maps for any model.

Every map is an H x W float array at the model's input size, signed the same way: positive where the
pixels push the call towards *melanoma*, negative towards benign.

- ``occlusion`` (any model, black-box): a patch of the image is replaced by the image's mean colour,
  sliding with ``stride``; every occluded copy is scored in batches through
  :meth:`Classifier.predict_proba`. A pixel's value is the mean, over the patches covering it, of
  (melanoma score of the image) - (melanoma score with the patch occluded).
- ``integrated_gradients`` (white-box models): Captum's
  :class:`captum.attr.IntegratedGradients` of the melanoma log-odds
  log P(melanoma group) - log P(benign group) through :meth:`Classifier.torch_forward`, from a black
  image, summed over the colour channels.
- ``gradcam`` (white-box torch modules): Captum's :class:`captum.attr.LayerGradCam` on the last
  convolution of the module, of the same log-odds, upsampled to the input size (ReLU applied, as in
  Grad-CAM: only evidence *for* melanoma is shown).

Captum is the ``explain`` extra (``pip install dermadv[explain]``); occlusion needs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import DermadvError, NotWhiteBoxError, require

if TYPE_CHECKING:
    import torch

#: Attribution methods, by name, with what they need.
METHODS: dict[str, str] = {
    "occlusion": "any model (black-box): sliding patches scored in batches",
    "integrated_gradients": "white-box models (Captum IntegratedGradients)",
    "gradcam": "white-box torch modules with a convolution (Captum LayerGradCam)",
}


def _prepared(model: Any, image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The uint8 image at the model's input size (as the model sees it)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 image, got {arr.dtype} {arr.shape}")
    return np.asarray(model.prepare(arr[None])[0])


def _melanoma(
    model: Any, images: NDArray[np.uint8], metadata: Any = None, batch_size: int | None = None
) -> NDArray[np.float64]:
    from dermadv.metrics import melanoma_score

    meta = None if metadata is None else [metadata] * len(images)
    probs = model.predict_proba(images, metadata=meta, batch_size=batch_size)
    return np.asarray(melanoma_score(model, probs), dtype=np.float64)


def occlusion_map(
    model: Any,
    image: NDArray[np.uint8],
    patch: int | None = None,
    stride: int | None = None,
    metadata: Any = None,
    batch_size: int | None = None,
) -> NDArray[np.float64]:
    """Occlusion sensitivity (see the module docstring). ``patch`` defaults to 1/6 of the shorter
    side, ``stride`` to half the patch."""
    x = _prepared(model, image)
    h, w = x.shape[:2]
    patch = int(patch or max(2, min(h, w) // 6))
    stride = int(stride or max(1, patch // 2))
    if patch < 1 or stride < 1:
        raise ValueError(f"occlusion: patch and stride must be >= 1, got {patch}, {stride}")
    fill = x.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    ys = list(range(0, max(h - patch, 0) + 1, stride))
    xs = list(range(0, max(w - patch, 0) + 1, stride))
    if ys[-1] + patch < h:
        ys.append(h - patch)
    if xs[-1] + patch < w:
        xs.append(w - patch)
    boxes = [(y, xx) for y in ys for xx in xs]
    base = float(_melanoma(model, x[None], metadata)[0])
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    chunk = int(batch_size or getattr(model, "batch_size", 32) or 32)
    for start in range(0, len(boxes), chunk):
        part = boxes[start : start + chunk]
        batch = np.repeat(x[None], len(part), axis=0)
        for k, (y, xx) in enumerate(part):
            batch[k, y : y + patch, xx : xx + patch] = fill
        scores = _melanoma(model, batch, metadata, batch_size=chunk)
        for (y, xx), s in zip(part, scores, strict=True):
            total[y : y + patch, xx : xx + patch] += base - s
            count[y : y + patch, xx : xx + patch] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _log_odds(model: Any, metadata: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (N x 3 x H x W floats 0..255) -> melanoma log-odds (N), through the model's torch forward."""
    import torch

    mel, ben = model.melanoma_indices, model.benign_indices

    def forward(x: torch.Tensor) -> torch.Tensor:
        meta = None if metadata is None else [metadata] * x.shape[0]
        logp = torch.log_softmax(model.torch_forward(x, meta).float(), dim=1)
        return torch.logsumexp(logp[:, mel], dim=1) - torch.logsumexp(logp[:, ben], dim=1)

    return forward


def _white_box(model: Any, method: str) -> None:
    if not getattr(model, "white_box", False):
        raise NotWhiteBoxError(
            f"{model.name} is a black-box model: {method} needs gradients; use --method occlusion"
        )


def _tensor(model: Any, x: NDArray[np.uint8]) -> torch.Tensor:
    import torch

    device = getattr(model, "device", "cpu")
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float().to(device)


def integrated_gradients_map(
    model: Any, image: NDArray[np.uint8], steps: int = 32, metadata: Any = None
) -> NDArray[np.float64]:
    """Integrated Gradients (Captum) of the melanoma log-odds, from a black image, summed over channels."""
    _white_box(model, "integrated_gradients")
    require("captum", "explain", "Integrated Gradients")
    from captum.attr import IntegratedGradients

    t = _tensor(model, _prepared(model, image))
    ig = IntegratedGradients(_log_odds(model, metadata))
    attr = ig.attribute(t, baselines=t * 0, n_steps=int(steps), internal_batch_size=int(steps))
    return np.asarray(attr.detach().sum(dim=1)[0].cpu().numpy(), dtype=np.float64)


def last_conv(module: Any) -> Any:
    """The last ``torch.nn.Conv2d`` of a module (DermadvError when there is none)."""
    import torch

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise DermadvError("gradcam: the model has no 2-D convolution to take Grad-CAM at")
    return convs[-1]


def gradcam_map(
    model: Any, image: NDArray[np.uint8], metadata: Any = None, layer: Any = None
) -> NDArray[np.float64]:
    """Grad-CAM (Captum LayerGradCam) at ``layer`` (default: the last convolution), upsampled, ReLU."""
    _white_box(model, "gradcam")
    module = getattr(model, "module", None)
    if module is None or not hasattr(module, "modules"):
        raise NotWhiteBoxError(f"{model.name}: gradcam needs a torch nn.Module (this adapter has none)")
    require("captum", "explain", "Grad-CAM")
    from captum.attr import LayerAttribution, LayerGradCam

    x = _prepared(model, image)
    t = _tensor(model, x)
    cam = LayerGradCam(_log_odds(model, metadata), layer if layer is not None else last_conv(module))
    attr = cam.attribute(t, relu_attributions=True)
    up = LayerAttribution.interpolate(attr, x.shape[:2], interpolate_mode="bilinear")
    return np.asarray(up.detach()[0, 0].cpu().numpy(), dtype=np.float64)


def explain(
    model: Any, image: NDArray[np.uint8], method: str, metadata: Any = None, **options: Any
) -> NDArray[np.float64]:
    """One attribution map of ``image`` by ``method`` (one of :data:`METHODS`)."""
    if method == "occlusion":
        return occlusion_map(model, image, metadata=metadata, **options)
    if method == "integrated_gradients":
        return integrated_gradients_map(model, image, metadata=metadata, **options)
    if method == "gradcam":
        return gradcam_map(model, image, metadata=metadata, **options)
    raise DermadvError(f"unknown explanation method {method!r}; one of {', '.join(METHODS)}")


def default_methods(model: Any) -> list[str]:
    """Occlusion for every model; Integrated Gradients and Grad-CAM too for white-box torch modules."""
    methods = ["occlusion"]
    if getattr(model, "white_box", False):
        methods.append("integrated_gradients")
        if getattr(model, "module", None) is not None and hasattr(model.module, "modules"):
            methods.append("gradcam")
    return methods


def map_to_rgb(values: NDArray[np.floating[Any]], scale: float | None = None) -> NDArray[np.uint8]:
    """A signed map as a diverging colour image (red = towards melanoma, blue = towards benign, white = 0),
    scaled by ``scale`` (default: the map's largest absolute value)."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    s = float(scale if scale is not None else np.abs(v).max()) or 1.0
    rgba = colormaps["bwr"](np.clip(0.5 + 0.5 * v / s, 0, 1))
    return np.asarray((rgba[..., :3] * 255).round(), dtype=np.uint8)


def explain_pair(
    model: Any,
    original: NDArray[np.uint8],
    adversarial: NDArray[np.uint8],
    methods: Sequence[str],
    metadata: Any = None,
) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """method -> (map of the original, map of the adversarial image)."""
    return {
        m: (explain(model, original, m, metadata), explain(model, adversarial, m, metadata)) for m in methods
    }
