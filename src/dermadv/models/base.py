"""The one classifier interface every command uses, whatever framework the model lives in.

Conventions (see DESIGN.md): images cross this boundary as uint8 RGB arrays; probabilities, never
logits, come back. Each adapter owns its preprocessing (decoder, resize, normalisation, metadata)
and records it in :meth:`Classifier.describe`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.data.images import as_batch, load_image, resize_uint8
from dermadv.errors import ModelError, ModelOutputError, NotWhiteBoxError
from dermadv.labels import DEFAULT_BENIGN_CLASSES, DEFAULT_MELANOMA_CLASSES, canonical_diagnosis
from dermadv.models.accel import AcceleratedForward, InferenceSettings, memory_batch_limit
from dermadv.vocab import Group

if TYPE_CHECKING:
    import torch

#: Per-image clinical metadata some models take (age in years, sex, anatomical site), or None.
Metadata = Mapping[str, Any] | None


class Classifier(ABC):
    """A skin-lesion classifier: uint8 RGB images in, probabilities over its own classes out.

    Subclasses set ``classes``, ``input_size`` and ``decoder`` and implement :meth:`_predict`, which
    receives images already resized to ``input_size``. White-box adapters also implement
    :meth:`torch_forward` and set ``white_box = True``.
    """

    name: str = "model"
    classes: tuple[str, ...] = ()
    input_size: tuple[int, int] = (299, 299)  # (height, width) the model sees
    decoder: str = "pil"  # JPEG decoder for files (see dermadv.data.images.DECODERS)
    resize_method: str = "bilinear"
    batch_size: int = 32  # preferred inference batch size on this runtime
    white_box: bool = False
    needs_metadata: bool = False

    def __init__(self) -> None:
        self._melanoma: frozenset[str] = frozenset()
        self._benign: frozenset[str] = frozenset()

    # ----- class groups -------------------------------------------------------------------------
    def set_groups(
        self, melanoma: Iterable[str] | None = None, benign: Iterable[str] | None = None
    ) -> Classifier:
        """Declare which classes count as melanoma and which as benign naevus (user-overridable)."""
        # Defaults: classes named like melanoma / naevus in any spelling the data loaders accept
        # ("mel", "MEL", "melanoma"; "nv", "NV", "nevus", "naevus").
        mel = frozenset(melanoma) if melanoma is not None else self._default_group(DEFAULT_MELANOMA_CLASSES)
        ben = frozenset(benign) if benign is not None else self._default_group(DEFAULT_BENIGN_CLASSES)
        for label, group in ((Group.MELANOMA, mel), (Group.BENIGN, ben)):
            unknown = sorted(group - set(self.classes))
            if unknown:
                raise ModelError(
                    f"{self.name}: {label} class(es) {unknown} are not among the model's classes "
                    f"{list(self.classes)}; pass --{label}-classes with names from that list"
                )
            if not group:
                raise ModelError(
                    f"{self.name}: no {label} class among the model's classes {list(self.classes)}; "
                    f"pass --{label}-classes"
                )
        if mel & ben:
            raise ModelError(f"{self.name}: classes {sorted(mel & ben)} are both melanoma and benign")
        self._melanoma, self._benign = mel, ben
        return self

    def _default_group(self, codes: frozenset[str]) -> frozenset[str]:
        return frozenset(c for c in self.classes if c in codes or canonical_diagnosis(c) in codes)

    @property
    def melanoma(self) -> frozenset[str]:
        if not self._melanoma:
            self.set_groups()
        return self._melanoma

    @property
    def benign(self) -> frozenset[str]:
        if not self._benign:
            self.set_groups()
        return self._benign

    @property
    def melanoma_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c in self.melanoma]

    @property
    def benign_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c in self.benign]

    def group_probs(
        self, probs: NDArray[np.floating[Any]]
    ) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
        """P(melanoma group) and P(benign group) for each row of an N x K probability array."""
        probs = np.asarray(probs)
        return probs[:, self.melanoma_indices].sum(axis=1), probs[:, self.benign_indices].sum(axis=1)

    # ----- images -------------------------------------------------------------------------------
    def load_image(self, path: str) -> NDArray[np.uint8]:
        """Decode a file with this model's decoder (uint8 RGB, original size)."""
        return load_image(path, decoder=self.decoder)

    def prepare(self, images: NDArray[np.uint8] | Sequence[NDArray[np.uint8]]) -> NDArray[np.uint8]:
        """Resize images to the model's input size: the uint8 N x H x W x 3 batch the model is given.

        Attacks perturb exactly this array, so adversarial images are saved at this size.
        """
        items = as_batch(images)
        return np.stack([resize_uint8(im, self.input_size, self.resize_method) for im in items])

    # ----- inference ----------------------------------------------------------------------------
    def predict_proba(
        self,
        images: NDArray[np.uint8] | Sequence[NDArray[np.uint8]],
        metadata: Sequence[Metadata] | None = None,
        batch_size: int | None = None,
    ) -> NDArray[np.float64]:
        """Probabilities N x K over ``classes`` for uint8 RGB images of any size."""
        batch = self.prepare(images)
        n = len(batch)
        if metadata is not None and len(metadata) != n:
            raise ValueError(f"metadata has {len(metadata)} entries for {n} images")
        bs = batch_size or self.batch_size
        out = []
        for start in range(0, n, bs):
            meta = None if metadata is None else list(metadata[start : start + bs])
            out.append(self._checked(self._predict(batch[start : start + bs], meta), min(bs, n - start)))
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        return np.concatenate(out)

    def _checked(self, output: Any, n: int) -> NDArray[np.float64]:
        probs = np.asarray(output, dtype=np.float64)
        k = len(self.classes)
        if probs.ndim != 2 or probs.shape != (n, k):
            raise ModelOutputError(
                f"{self.name}: output has shape {probs.shape}, expected ({n}, {k}) for classes "
                f"{list(self.classes)}"
            )
        if not np.isfinite(probs).all():
            raise ModelOutputError(f"{self.name}: output contains NaN or infinite values")
        if (probs < -1e-6).any() or np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
            raise ModelOutputError(
                f"{self.name}: outputs are not probabilities (rows must be >= 0 and sum to 1; got sums "
                f"{probs.sum(axis=1)[:3].round(4).tolist()}...); a model returning logits needs a softmax"
            )
        return probs

    @abstractmethod
    def _predict(
        self, images: NDArray[np.uint8], metadata: list[Metadata] | None
    ) -> NDArray[np.floating[Any]]:
        """Probabilities for a uint8 batch already at ``input_size`` (at most ``batch_size`` images)."""

    # ----- white box ----------------------------------------------------------------------------
    def torch_forward(self, x: torch.Tensor, metadata: Sequence[Metadata] | None = None) -> torch.Tensor:
        """Differentiable logits (N x K torch tensor) from float pixels N x 3 x H x W in 0..255.

        Log-probabilities are acceptable logits: softmax of the output gives the probabilities.
        """
        raise NotWhiteBoxError(
            f"{self.name} is a black-box model (no differentiable torch forward): gradient attacks "
            "(fgsm, pgd) need a white-box model; use the black-box attacks (pixel, color, rotation)"
        )

    # ----- description --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What produced the numbers: recorded beside every result."""
        return {
            "name": self.name,
            "adapter": type(self).__name__,
            "classes": list(self.classes),
            "melanoma_classes": sorted(self.melanoma),
            "benign_classes": sorted(self.benign),
            "input_size": list(self.input_size),
            "decoder": self.decoder,
            "resize": self.resize_method,
            "white_box": self.white_box,
            "needs_metadata": self.needs_metadata,
        }


class TorchModuleClassifier(Classifier):
    """A torch ``nn.Module`` taking normalised N x 3 x H x W floats and returning logits.

    ``mean``/``std`` are in 0..1 units (torchvision convention). ``output`` says whether the module
    returns ``"logits"`` or ``"probs"`` (then log is taken for :meth:`torch_forward`).
    """

    white_box = True

    def __init__(
        self,
        module: Any,
        classes: Sequence[str],
        input_size: tuple[int, int],
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        name: str = "torch-model",
        decoder: str = "pil",
        output: str = "logits",
        device: str | None = None,
        batch_size: int | str = 32,
        inference: InferenceSettings | None = None,
    ) -> None:
        super().__init__()
        import torch

        if output not in ("logits", "probs"):
            raise ValueError("output must be 'logits' or 'probs'")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module = module.to(self.device).eval()
        self.classes = tuple(classes)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.name = name
        self.decoder = decoder
        self.output = output
        self._mean_t = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std_t = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.accel = AcceleratedForward(self.module, self.device, inference)
        self.module = self.accel.module  # channels-last weights when chosen (gradients use it too)
        self.batch_size = self._batch_size(batch_size)
        self.set_groups()

    def _batch_size(self, batch_size: int | str) -> int:
        """A positive int, or "auto": the largest power of two fitting the GPU's free memory (measured
        with one forward pass; 32 off CUDA, where :mod:`dermadv.attacks.throughput` measures speed)."""
        if batch_size == "auto":
            limit = memory_batch_limit(self._eager_probs, (*self.input_size, 3), self.device)
            return limit or 32
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or int(batch_size) < 1:
            raise ModelError(
                f"{self.name}: batch_size must be a positive integer or 'auto', got {batch_size!r}"
            )
        return int(batch_size)

    def torch_forward(self, x: torch.Tensor, metadata: Sequence[Metadata] | None = None) -> torch.Tensor:
        import torch

        return self._head(self.module, x.to(self.device, torch.float32))

    def _head(self, forward: Any, x: torch.Tensor) -> torch.Tensor:
        """Logits of float pixels N x 3 x H x W (0..255, on the device) through ``forward`` (the
        module, or its accelerated form): normalise, take the main output, log of probabilities."""
        import torch

        raw = forward((x - self._mean_t) / self._std_t)
        # not a tensor: e.g. torchvision InceptionOutputs in train mode
        out: torch.Tensor = raw if isinstance(raw, torch.Tensor) else raw[0]
        if self.output == "probs":
            out = torch.log(out.float().clamp_min(1e-12))
        return out

    def _logits(self, forward: Any, x_u8: torch.Tensor) -> torch.Tensor:
        """Float32 logits from uint8 N x H x W x 3 on the model's device, under the chosen autocast.

        The N x 3 x H x W view of NHWC memory is channels-last already; the arithmetic is that of
        :meth:`torch_forward`, so CPU results are unchanged.
        """
        with self.accel.autocast():
            out = self._head(forward, x_u8.permute(0, 3, 1, 2).float())
        return out.float()

    def _eager_probs(self, x_u8: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.softmax(self._logits(self.accel.module, x_u8), dim=1)

    def _probs(self, x_u8: torch.Tensor) -> torch.Tensor:
        """Probabilities for one forward batch; padded to ``batch_size`` when CUDA graphs need static
        shapes (the padding rows are dropped)."""
        import torch

        n = x_u8.shape[0]
        if self.accel.static_shapes and n < self.batch_size:
            pad = x_u8[-1:].expand(self.batch_size - n, -1, -1, -1)
            x_u8 = torch.cat([x_u8, pad])
        # softmax makes a new tensor: never the CUDA graph's output memory, so no copy is needed
        return torch.softmax(self._logits(self.accel, x_u8), dim=1)[:n]

    def _predict(self, images: NDArray[np.uint8], metadata: list[Metadata] | None) -> NDArray[np.float32]:
        import torch

        host = torch.from_numpy(np.ascontiguousarray(images))
        if self.device.type == "cuda":  # page-locked memory: the copy overlaps with compute
            x = host.pin_memory().to(self.device, non_blocking=True)
        else:
            x = host.to(self.device)
        with torch.inference_mode():
            return self._probs(x).cpu().numpy()

    def predict_tensor(
        self, images: torch.Tensor, metadata: Sequence[Metadata] | None = None, batch_size: int | None = None
    ) -> NDArray[np.float64]:
        """Probabilities N x K for a uint8 N x H x W x 3 tensor already at ``input_size``, wherever it
        lives (the device path: candidates perturbed on the GPU are scored without leaving it; only the
        N x K probabilities come back)."""
        import torch

        h, w = self.input_size
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (h, w, 3):
            raise ModelError(
                f"{self.name}: predict_tensor needs a uint8 N x {h} x {w} x 3 tensor, got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        x = images.to(self.device, non_blocking=True)
        bs = int(batch_size or self.batch_size)
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), bs):
                out.append(self._probs(x[start : start + bs]))
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        return self._checked(torch.cat(out).cpu().numpy(), len(x))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            {
                "mean": list(self.mean),
                "std": list(self.std),
                "output": self.output,
                "device": str(self.device),
                "inference": self.accel.describe(),
            }
        )
        return d
