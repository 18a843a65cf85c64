"""Forward precision of the torch trainer: float32, or bf16 autocast with the frozen base linears stored in bf16.

`TrainConfig.precision`: auto (the default: bf16 only where the hardware computes it natively, else
fp32), fp32 or bf16. LoRA weights, the optimizer and the loss stay float32 either way; only forwards
run in bf16.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: only type checkers see it here
    import torch


def forward_dtype(device: str, precision: str) -> torch.dtype | None:
    """The autocast dtype of forwards on `device` for `TrainConfig.precision`; None means float32.

    auto picks bf16 only where it is native (CUDA with bf16, a CPU whose oneDNN has bf16 kernels):
    emulated bf16 is slower than float32. MPS stays float32.
    """
    import torch

    if precision == "fp32" or device == "mps":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """The context for forwards (never backwards) at `precision`."""
    import torch

    dtype = forward_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=dtype)


def cast_frozen_linears(model, dtype: torch.dtype) -> int:
    """Store the frozen base weights of the decoder's linear layers in `dtype`, once; returns how many.

    Autocast rounds every such weight to `dtype` at each forward anyway, so the values computed are the
    same, without the per-forward copy (measured: copies were a sixth of a bf16 step on the CPU). The
    LoRA weights, the norms and the tied embedding / LM head stay float32; those frozen ones are copied
    out of the checkpoint's file mapping, so the mapping, whose pages the cast read in, is released
    (measured peak RSS of a bf16 step: 2.50 GB without the copies, 2.13 GB with them).
    """
    import torch

    n = 0
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and ".layers." in name and not weight.requires_grad:
            module.weight.data = weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
            n += 1
    for param in model.parameters():
        if not param.requires_grad and param.dtype == torch.float32:
            param.data = param.data.clone()
    return n
