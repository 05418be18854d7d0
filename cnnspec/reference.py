"""A numpy reference for convolution and pooling, vectorised, used as a test oracle.

The textbook definition loops over every output pixel. These functions compute the same
sums with no Python loop over positions: `sliding_window_view` gives every window of
the padded input as a view, slicing it with `::stride` and `::dilation` keeps the taps
that exist, and one `einsum` (an im2col matrix product) multiplies them by the filters.

Output sizes come out of the window construction itself, never from the formula
`⌊(H + 2p − d·(k−1) − 1)/s⌋ + 1`, so tests can check cnnspec's shape rule against it.
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

Pair = int | Sequence[int]
Array = NDArray[np.floating]


def _pair(v: Pair) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return (int(v), int(v))
    a, b = v
    return (int(a), int(b))


def _windows(xp: Array, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> Array:
    """Every (dilated, strided) window of a padded (N, C, H, W) array: (N, C, H_out, W_out, kH, kW), a view."""
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)  # effective kernel
    if xp.shape[2] < span[0] or xp.shape[3] < span[1]:
        raise ValueError(
            f"the window spans {span[0]}×{span[1]} but the padded input is only {xp.shape[2]}×{xp.shape[3]}: "
            "the output would be empty"
        )
    view = sliding_window_view(xp, span, axis=(2, 3))  # (N, C, Hp−spanH+1, Wp−spanW+1, spanH, spanW)
    return view[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]


def conv2d(
    x: Array,
    w: Array,
    b: Array | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> Array:
    """2-D cross-correlation like torch.nn.functional.conv2d.

    x: (N, C_in, H, W); w: (C_out, C_in/groups, kH, kW); b: (C_out,) or None.
    Returns (N, C_out, H_out, W_out). Zero padding.
    """
    n, c_in, _, _ = x.shape
    c_out, c_group, kh, kw = w.shape
    if c_in != c_group * groups or c_out % groups:
        raise ValueError(
            f"groups={groups} needs C_in = {c_group}·{groups} and C_out divisible by {groups}; "
            f"got C_in={c_in}, C_out={c_out}"
        )
    ph, pw = _pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = _windows(xp, (kh, kw), _pair(stride), _pair(dilation))  # (N, C_in, Ho, Wo, kH, kW)
    h_out, w_out = cols.shape[2], cols.shape[3]
    cols = cols.reshape(n, groups, c_group, h_out, w_out, kh, kw)
    wg = w.reshape(groups, c_out // groups, c_group, kh, kw)
    # Per group: sum over input channels and taps — the im2col product.
    y = np.einsum("ngchwij,gocij->ngohw", cols, wg, optimize=True).reshape(n, c_out, h_out, w_out)
    if b is not None:
        y = y + b.reshape(1, c_out, 1, 1)
    return y.astype(x.dtype, copy=False)


def _pool_pad(
    x: Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
    fill: float,
) -> tuple[Array, tuple[int, int]]:
    """Pad for pooling; ceil mode adds stride−1 cells on the right so one more, partial window fits.

    Returns the padded array and, per axis, how many output positions to keep: PyTorch drops
    a window that would start in the right padding (it must start inside the input or its
    left padding).
    """
    _, _, h, w = x.shape
    extra = (stride[0] - 1, stride[1] - 1) if ceil_mode else (0, 0)
    xp = np.pad(
        x,
        ((0, 0), (0, 0), (padding[0], padding[0] + extra[0]), (padding[1], padding[1] + extra[1])),
        constant_values=fill,
    )
    keep = []
    for axis, size in ((0, h), (1, w)):
        span = dilation[axis] * (kernel[axis] - 1) + 1
        starts = range(0, xp.shape[2 + axis] - span + 1, stride[axis])
        keep.append(sum(1 for s in starts if not ceil_mode or s < size + padding[axis]))
    return xp, (keep[0], keep[1])


def max_pool2d(
    x: Array,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    dilation: Pair = 1,
    ceil_mode: bool = False,
) -> Array:
    """Max pooling like torch.nn.functional.max_pool2d; padding never wins the max."""
    k = _pair(kernel_size)
    s = _pair(stride) if stride is not None else k
    p, d = _pair(padding), _pair(dilation)
    xp, (ho, wo) = _pool_pad(x, k, s, p, d, ceil_mode, -np.inf)
    win = _windows(xp, k, s, d)[:, :, :ho, :wo]
    return win.max(axis=(4, 5)).astype(x.dtype, copy=False)


def avg_pool2d(
    x: Array,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Array:
    """Average pooling like torch.nn.functional.avg_pool2d.

    The divisor counts the input cells of each window, plus its zero-padding cells when
    `count_include_pad` (never the extra cells ceil mode adds past the padding).
    """
    k = _pair(kernel_size)
    s = _pair(stride) if stride is not None else k
    p, one = _pair(padding), (1, 1)
    xp, (ho, wo) = _pool_pad(x, k, s, p, one, ceil_mode, 0.0)
    # Which padded cells count towards the divisor: the input, and the explicit padding when asked.
    mask = np.zeros((1, 1, *xp.shape[2:]), dtype=x.dtype)
    h, w = x.shape[2:]
    if count_include_pad:
        mask[:, :, : h + 2 * p[0], : w + 2 * p[1]] = 1
    else:
        mask[:, :, p[0] : p[0] + h, p[1] : p[1] + w] = 1
    total = _windows(xp, k, s, one)[:, :, :ho, :wo].sum(axis=(4, 5))
    count = _windows(mask, k, s, one)[:, :, :ho, :wo].sum(axis=(4, 5))
    return (total / count).astype(x.dtype, copy=False)
