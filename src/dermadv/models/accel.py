"""Inference at the hardware's pace: precision, memory layout, compilation and batch size by device.

:class:`InferenceSettings` says how a torch module is run; :class:`AcceleratedForward` runs it so.

- ``precision``: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (bf16 autocast on a CUDA device that
  supports it, else fp16 autocast on CUDA; fp32 on the CPU, where autocast would only lose accuracy).
- ``channels_last``: ``on``, ``off`` or ``auto`` (on for CUDA: cuDNN's fast convolutions take NHWC).
  Images arrive as uint8 N x H x W x 3, so the N x 3 x H x W view handed to the module is already
  channels-last in memory; this setting converts the module's weights to match.
- ``compile``: ``on``, ``off`` or ``auto`` (on for CUDA). ``torch.compile`` with a clean fallback: if
  compiling or the first compiled call fails (no Triton, an unsupported op), the eager module is used
  and the reason is recorded in :meth:`AcceleratedForward.describe` (and logged once).
- ``cuda_graphs``: ``on``, ``off`` or ``auto`` (on when compiling for CUDA): compile mode
  ``reduce-overhead``, which replays CUDA graphs. Graphs need static shapes, so a partial last batch
  is padded to the full batch (the padding rows are dropped from the output).

On the CPU ``auto`` leaves everything as it was (fp32, eager, the module's own layout), so CPU results
do not move. :func:`memory_batch_limit` picks the largest forward batch that fits the device's free
memory, measured from one forward pass (CUDA only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SWITCHES = ("auto", "on", "off")
#: the largest forward batch any rule here chooses
MAX_BATCH = 1024
#: adapter options (``--model-option KEY=VALUE``) of torch formats that set :class:`InferenceSettings`
INFERENCE_OPTIONS = ("precision", "compile", "channels_last", "cuda_graphs")


def mixed_precision_dtype(device: Any) -> Any:
    """The autocast dtype for mixed precision on ``device``: bfloat16 on a CUDA GPU that has it (no
    loss scaling needed), else float16 there; None off CUDA (inference and training alike)."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _switch(value: Any, what: str) -> str:
    text = ("on" if value else "off") if isinstance(value, bool) else str(value).lower()
    text = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(text, text)
    if text not in SWITCHES:
        raise ValueError(f"{what} must be one of {', '.join(SWITCHES)}, got {value!r}")
    return text


@dataclass(frozen=True)
class InferenceSettings:
    """How a torch classifier runs its forward pass (see the module docstring for each setting)."""

    precision: str = "auto"
    channels_last: str = "auto"
    compile: str = "auto"
    cuda_graphs: str = "auto"

    def __post_init__(self) -> None:
        p = str(self.precision).lower()
        if p not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "precision", p)
        for name in ("channels_last", "compile", "cuda_graphs"):
            object.__setattr__(self, name, _switch(getattr(self, name), name))

    def resolve(self, device: Any) -> ResolvedSettings:
        """The concrete choices on ``device`` (a torch.device)."""
        import torch

        cuda = device.type == "cuda"
        precision = self.precision
        if precision == "auto":
            precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
                mixed_precision_dtype(device), "fp32"
            )
        compile_ = self.compile == "on" or (self.compile == "auto" and cuda)
        return ResolvedSettings(
            precision=precision,
            channels_last=self.channels_last == "on" or (self.channels_last == "auto" and cuda),
            compile=compile_,
            cuda_graphs=compile_ and cuda and self.cuda_graphs != "off",
        )


def inference_settings(options: Any, where: str) -> InferenceSettings:
    """:class:`InferenceSettings` from adapter options (the keys of :data:`INFERENCE_OPTIONS` present
    in the mapping ``options``; the rest are ignored); ModelError naming ``where`` when one is bad."""
    from dermadv.errors import ModelError

    given = {k: options[k] for k in INFERENCE_OPTIONS if options.get(k) is not None}
    try:
        return InferenceSettings(**given)
    except ValueError as exc:
        raise ModelError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ResolvedSettings:
    precision: str
    channels_last: bool
    compile: bool
    cuda_graphs: bool

    @property
    def autocast_dtype(self) -> Any:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)


class AcceleratedForward:
    """``module`` run under ``settings`` on ``device``: call it with normalised float N x 3 x H x W.

    Holds the eager module and, when compiling, the compiled one; falls back to eager for good on the
    first failure (recorded in :attr:`fallback`).
    """

    def __init__(self, module: Any, device: Any, settings: InferenceSettings | None = None) -> None:
        import torch

        self.settings = settings or InferenceSettings()
        self.resolved = self.settings.resolve(device)
        self.device = device
        if self.resolved.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.fallback: str | None = None
        self._compiled: Any = None
        if self.resolved.compile:
            try:
                mode = "reduce-overhead" if self.resolved.cuda_graphs else "default"
                self._compiled = torch.compile(module, mode=mode)
            except Exception as exc:  # no compiler on this install: eager, said once
                self._fail(exc)

    @property
    def static_shapes(self) -> bool:
        """True when batches must keep one shape (CUDA graphs): pad the last partial batch."""
        return self._compiled is not None and self.resolved.cuda_graphs

    def _fail(self, exc: BaseException) -> None:
        self.fallback = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        self._compiled = None
        log.warning("torch.compile failed (%s); running the eager module", self.fallback)

    def autocast(self) -> Any:
        import contextlib

        import torch

        dtype = self.resolved.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def __call__(self, x: Any) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as exc:  # a compiler error surfaces on the first call: fall back
                self._fail(exc)
        return self.module(x)

    def describe(self) -> dict[str, Any]:
        r = self.resolved
        out: dict[str, Any] = {
            "precision": r.precision,
            "channels_last": r.channels_last,
            "compile": r.compile and self.fallback is None,
            "cuda_graphs": r.cuda_graphs and self.fallback is None,
        }
        if self.fallback:
            out["compile_fallback"] = self.fallback
        return out


def memory_batch_limit(
    forward: Any, input_shape: tuple[int, int, int], device: Any, probe: int = 8, headroom: float = 0.8
) -> int | None:
    """The largest power-of-two batch (<= :data:`MAX_BATCH`) whose forward pass fits ``headroom`` of
    the device's free memory, from the peak memory of one ``probe``-image forward; None off CUDA.

    ``forward`` takes uint8 N x H x W x 3 tensors on ``device``; ``input_shape`` is (H, W, 3).
    """
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.zeros((probe, *input_shape), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        forward(x)
    torch.cuda.synchronize(device)
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - base) // probe)
    free, _total = torch.cuda.mem_get_info(device)
    fits = int(headroom * free // per_image)
    batch = 1
    while batch * 2 <= min(fits, MAX_BATCH):
        batch *= 2
    return batch
