"""conv2d `init: whiten` (airbench's first layer): filters that whiten the training images' patches.

A whitening layer's filters are the eigenvectors v of the patches' second-moment matrix
Σ = E[p pᵀ] (p: a kernel-sized patch of the layer's input, flattened to C·kH·kW values; not
mean-centred, as airbench), scaled by 1/√(λ+eps), in pairs +v and −v so that a ReLU after it
keeps both signs. With out_channels = 2·C·kH·kW the layer's + half maps patches to an identity
second moment; with fewer, it keeps the out_channels/2 leading eigenvectors (the largest λ) and
whitens that subspace. The bias (if any) starts at zero. The check that out_channels fits is
static (cnnspec/layers/conv.py `check_whiten`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnspec.training.sources import Source

EPS = 5e-4  # airbench's: keeps the near-zero eigenvalues of flat patches from blowing up
MAX_IMAGES = 5000  # airbench estimates Σ from 5,000 training images


def patches(x: torch.Tensor, kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """Every kH×kW patch of `x` (N, C, H, W) at stride 1, no padding, as rows of C·kH·kW values."""
    cols = F.unfold(x.float(), kernel, dilation=dilation)  # (N, C·kH·kW, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def whitening_filters(rows: torch.Tensor, out_channels: int, kernel: tuple[int, int], eps: float = EPS) -> torch.Tensor:
    """The (out_channels, C, kH, kW) filters ±v/√(λ+eps) of the leading out_channels/2 eigenvectors."""
    second_moment = rows.T.double() @ rows.double() / rows.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(second_moment)  # ascending
    keep = out_channels // 2
    values, vectors = eigenvalues.flip(0)[:keep], eigenvectors.T.flip(0)[:keep]
    scaled = (vectors / torch.sqrt(values.clamp(min=0) + eps)[:, None]).float()
    c = rows.shape[1] // (kernel[0] * kernel[1])
    return torch.cat([scaled, -scaled]).reshape(out_channels, c, *kernel)


@torch.no_grad()
def init_whitening(
    model: nn.Module,
    convs: list[nn.Conv2d],
    source: Source,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> None:
    """Set each conv in `convs` to whiten its own input over the first MAX_IMAGES training images (in
    the order given: a later layer sees the earlier ones already whitened)."""
    images = []
    seen = 0
    for x, _ in source.batches(None, 500, device):
        images.append(prepare(x))
        seen += x.shape[0]
        if seen >= MAX_IMAGES:
            break
    sample = torch.cat(images)[:MAX_IMAGES]
    was_training = model.training
    model.eval()
    try:
        for conv in convs:
            captured: list[torch.Tensor] = []

            def grab(_: nn.Module, args: tuple[torch.Tensor, ...], store: list[torch.Tensor] = captured) -> None:
                store.append(args[0])
                raise _Captured

            handle = conv.register_forward_pre_hook(grab)
            try:
                model(sample)
            except _Captured:
                pass
            finally:
                handle.remove()
            kernel = (conv.kernel_size[0], conv.kernel_size[1])
            dilation = (conv.dilation[0], conv.dilation[1])
            filters = whitening_filters(patches(captured[0], kernel, dilation), conv.out_channels, kernel)
            conv.weight.copy_(filters.to(conv.weight.dtype))
            if conv.bias is not None:
                conv.bias.zero_()
    finally:
        model.train(was_training)


class _Captured(Exception):
    """Stops the forward pass once the whitening layer's input is captured."""
