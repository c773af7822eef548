"""Mixed precision for the training loop: bf16 autocast on CUDA devices that have it, otherwise
fp16 with a gradient scaler; full fp32 (autocast off) on CPU and MPS, so CPU results stay exact.
Also the CUDA library switches a training run sets once (cuDNN autotuning, TF32)."""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

_SCALERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Precision:
    """Where the loop computes and in which autocast dtype (None: fp32, autocast off)."""

    device: torch.device
    dtype: torch.dtype | None = None

    def autocast(self) -> AbstractContextManager:
        """The forward pass's autocast context; for fp32 none at all (a disabled torch.autocast
        costs tens of microseconds per step, which shows on small CPU models)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range."""
        return self.dtype == torch.float16

    def scaler(self, optimizer: torch.optim.Optimizer) -> torch.amp.GradScaler | None:
        """The optimizer's gradient scaler (kept across epochs, so its scale does not restart each
        epoch), or None when this precision needs none."""
        if not self.needs_scaler:
            return None
        scaler = _SCALERS.get(optimizer)
        if scaler is None:
            scaler = _SCALERS[optimizer] = torch.amp.GradScaler(self.device.type)
        return scaler


def precision(device: torch.device) -> Precision:
    """bf16 on CUDA where the GPU supports it natively (Ampere and newer), fp16 on older CUDA
    GPUs, fp32 elsewhere (CPU bf16 is slower for small convs and would change CPU results)."""
    if device.type != "cuda":
        return Precision(device)
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return Precision(device, torch.bfloat16 if bf16 else torch.float16)


def configure_cuda(device: torch.device) -> None:
    """cuDNN autotuning (fixed input shapes per run) and TF32 for what stays fp32; CUDA only."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
