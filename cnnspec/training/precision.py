"""Device and mixed-precision choices: `train.device` and `train.amp` resolved once."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from cnnspec.errors import TrainingError
from cnnspec.spec.model import TrainSpec


@dataclass(frozen=True)
class Precision:
    """Where and in which precision a run computes."""

    device: torch.device
    amp: str  # "fp16", "bf16" or "off"

    @property
    def dtype(self) -> torch.dtype | None:
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.amp)

    @property
    def scaled(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
        return self.amp == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.scaled)


def resolve(spec: TrainSpec) -> Precision:
    """`auto` device → CUDA when present; `auto` AMP → fp16 on CUDA, fp32 on a CPU."""
    cuda = torch.cuda.is_available()
    if spec.device == "cuda" and not cuda:
        raise TrainingError(
            "train.device is cuda but torch sees no CUDA device", hint="use --set train.device=auto (or cpu)"
        )
    device = torch.device("cuda" if spec.device == "cuda" or (spec.device == "auto" and cuda) else "cpu")
    amp = spec.amp
    if amp == "auto":
        amp = "fp16" if device.type == "cuda" else "off"
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainingError("train.amp is bf16 but this GPU does not support bfloat16", hint="use train.amp: fp16")
    return Precision(device, amp)


def use_channels_last(spec: TrainSpec, precision: Precision, plugin_layers: bool) -> bool:
    """train.channels_last, `auto` resolved: on a CPU (1.07–1.27× the images/s of the default layout in
    every measurement on idle cores, docs/benchmarks.md) and on CUDA under AMP (tensor cores read
    channels-last), unless a plugin layer is in the model (its code may `view` the default layout)."""
    if spec.channels_last != "auto":
        return spec.channels_last
    return not plugin_layers and (precision.device.type == "cpu" or precision.amp != "off")
