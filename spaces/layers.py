"""Dimension-agnostic building blocks: the same spec builds Conv1d nets for sequences and Conv2d
nets for images. ``dims`` is 1 or 2 (``TaskInfo.spatial_dims``)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["conv", "batch_norm", "avg_pool", "max_pool", "global_pool", "Zero", "scaled",
           "norm_layer", "SqueezeExcite", "CBAM"]


def conv(dims: int, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
         bias: bool = False) -> nn.Module:
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    return cls(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)


def batch_norm(dims: int, channels: int) -> nn.Module:
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels)


def norm_layer(kind: str, dims: int, channels: int) -> nn.Module:
    """``batchnorm``; ``layernorm`` = GroupNorm(1, C) (normalises over channels and positions, the
    usual conv equivalent of LayerNorm); ``groupnorm`` = GroupNorm(gcd(32, C), C)."""
    if kind == "batchnorm":
        return batch_norm(dims, channels)
    if kind == "layernorm":
        return nn.GroupNorm(1, channels)
    if kind == "groupnorm":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise ValueError(f"unknown norm {kind!r}")


def avg_pool(dims: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    cls = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
    return cls(kernel, stride=stride, padding=kernel // 2, count_include_pad=False,
               ceil_mode=stride > 1)


def max_pool(dims: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    cls = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    return cls(kernel, stride=stride, padding=kernel // 2, ceil_mode=stride > 1)


def global_pool(dims: int) -> nn.Module:
    return (nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d)(1)


class Zero(nn.Module):
    """The ``none`` op: outputs zeros of the input's shape (with stride, of the strided shape)."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        index = (slice(None), slice(None)) + (slice(None, None, self.stride),) * (x.dim() - 2)
        return x[index].mul(0.0)


def scaled(channels: int, width_mult: float) -> int:
    """Channel count after a width multiplier: rounded, at least 1."""
    return max(1, int(round(channels * width_mult)))


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: x scaled per channel by a bottleneck (C/4) of its global mean."""

    def __init__(self, dims: int, c: int):
        super().__init__()
        hidden = max(1, c // 4)
        self.pool = global_pool(dims)
        self.fc = nn.Sequential(conv(dims, c, hidden, 1, bias=True), nn.ReLU(),
                                conv(dims, hidden, c, 1, bias=True), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.pool(x))


class CBAM(nn.Module):
    """CBAM: squeeze-excitation, then x scaled per position by a 7-wide conv of its channel
    mean and max."""

    def __init__(self, dims: int, c: int):
        super().__init__()
        self.channel = SqueezeExcite(dims, c)
        self.spatial = nn.Sequential(conv(dims, 2, 1, 7, bias=True), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel(x)
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * self.spatial(pooled)
