# mypy: allow-untyped-defs
"""The numpy reference (seed §2) as an oracle: torch and cnnspec's shape formula both agree with it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnspec import reference
from cnnspec.layers.conv import conv_size

RNG = np.random.default_rng(0)


def conv2d_naive(x, w, b=None, stride=1, padding=0):
    """The seed's §2 loop, verbatim: the slowest, most obvious definition."""
    N, C_in, H, W = x.shape  # noqa: RUF059 (verbatim)
    C_out, _, kH, kW = w.shape
    s = stride
    p = padding

    # pad
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="constant")
    H_out = (H + 2 * p - kH) // s + 1
    W_out = (W + 2 * p - kW) // s + 1

    y = np.zeros((N, C_out, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for co in range(C_out):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * s, j * s
                    patch = x_pad[n, :, hs : hs + kH, ws : ws + kW]  # (C_in,kH,kW)
                    y[n, co, i, j] = np.sum(patch * w[co])
            if b is not None:
                y[n, co] += b[co]
    return y


def _arrays(
    c_in: int, c_out: int, groups: int, k: tuple[int, int], hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = RNG.standard_normal((2, c_in, *hw)).astype(np.float32)
    w = RNG.standard_normal((c_out, c_in // groups, *k)).astype(np.float32)
    b = RNG.standard_normal(c_out).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_vectorised_conv_equals_the_seeds_loop(stride: int, padding: int) -> None:
    x, w, b = _arrays(3, 4, 1, (3, 3), (9, 8))
    expected = conv2d_naive(x, w, b, stride, padding)
    got = reference.conv2d(x, w, b, stride, padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)


GRID = list(itertools.product([1, 2, 3], [0, 1, 2], [1, 2, 3], [1, 2, 3, 6]))  # stride, padding, dilation, groups


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), GRID)
def test_conv_matches_torch_and_the_shape_formula(stride: int, padding: int, dilation: int, groups: int) -> None:
    k, hw = (3, 2), (13, 10)
    x, w, b = _arrays(6, 12, groups, k, hw)
    got = reference.conv2d(x, w, b, stride, padding, dilation, groups)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, padding, dilation, groups)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)
    h_out, _ = conv_size(hw[0], k[0], stride, padding, dilation, "H")
    w_out, _ = conv_size(hw[1], k[1], stride, padding, dilation, "W")
    assert got.shape == (2, 12, h_out, w_out)


def test_conv_with_per_axis_stride_padding_dilation() -> None:
    x, w, b = _arrays(4, 2, 2, (3, 5), (12, 15))
    got = reference.conv2d(x, w, b, stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    want = F.conv2d(xt, wt, bt, stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_too_small_input_fails_like_torch_and_the_formula(size: int) -> None:
    """Where the formula gives H_out < 1, the reference and torch both refuse."""
    k, d, p = 3, 2, 0  # effective kernel 5
    x, w, _ = _arrays(1, 1, 1, (k, k), (size, size))
    out, _ = conv_size(size, k, 1, p, d, "H")
    if out >= 1:
        assert reference.conv2d(x, w, dilation=d).shape[2] == out
        assert F.conv2d(torch.from_numpy(x), torch.from_numpy(w), dilation=d).shape[2] == out
    else:
        with pytest.raises(ValueError):
            reference.conv2d(x, w, dilation=d)
        with pytest.raises(RuntimeError):
            F.conv2d(torch.from_numpy(x), torch.from_numpy(w), dilation=d)


POOL_GRID = [
    (k, s, p, d, ceil)
    for k, s, p, d, ceil in itertools.product([1, 2, 3, 4], [1, 2, 3], [0, 1, 2], [1, 2], [False, True])
    if 2 * p <= k
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "ceil_mode"), POOL_GRID)
def test_max_pool_matches_torch_and_the_shape_formula(
    kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> None:
    x = RNG.standard_normal((2, 3, 10, 7)).astype(np.float32)
    got = reference.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    want = F.max_pool2d(torch.from_numpy(x), kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got, want.numpy())
    h_out, _ = conv_size(10, kernel, stride, padding, dilation, "H", ceil=ceil_mode)
    w_out, _ = conv_size(7, kernel, stride, padding, dilation, "W", ceil=ceil_mode)
    assert got.shape[2:] == (h_out, w_out)


AVG_GRID = [(k, s, p, c) for k, s, p, d, c in POOL_GRID if d == 1]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize(("kernel", "stride", "padding", "ceil_mode"), AVG_GRID)
def test_avg_pool_matches_torch_and_the_shape_formula(
    kernel: int, stride: int, padding: int, ceil_mode: bool, count_include_pad: bool
) -> None:
    x = RNG.standard_normal((2, 3, 9, 11)).astype(np.float32)
    got = reference.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
    want = F.avg_pool2d(torch.from_numpy(x), kernel, stride, padding, ceil_mode, count_include_pad)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-6)
    h_out, _ = conv_size(9, kernel, stride, padding, 1, "H", ceil=ceil_mode)
    w_out, _ = conv_size(11, kernel, stride, padding, 1, "W", ceil=ceil_mode)
    assert got.shape[2:] == (h_out, w_out)


def test_ceil_mode_never_starts_a_window_in_the_right_padding() -> None:
    """5 wide, k=2, s=2, p=1, ceil: ⌈(5+2−2)/2⌉+1 = 4 windows, but the 4th would start in the padding."""
    x = RNG.standard_normal((1, 1, 5, 5)).astype(np.float32)
    got = reference.max_pool2d(x, 2, 2, 1, ceil_mode=True)
    want = F.max_pool2d(torch.from_numpy(x), 2, 2, 1, ceil_mode=True)
    assert got.shape == tuple(want.shape) == (1, 1, 3, 3)
    assert conv_size(5, 2, 2, 1, 1, "H", ceil=True)[0] == 3
