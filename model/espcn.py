"""ESPCN: efficient sub-pixel CNN (Shi et al., CVPR 2016). Only the network lives here.

All convolutions run in low-resolution space; the last one emits scale² maps per output channel and
`PixelShuffle` rearranges them into the high-resolution image. The seed config reproduces the study:
conv 5x5·64, 3x3·64, 3x3·32, 3x3·16, 3x3·(3·16), ReLU, pixel shuffle x4 — 71,840 parameters for RGB.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ESPCNConfig:
    """Architecture of one ESPCN-family network; saved beside the weights so they can be rebuilt."""

    scale: int = 4
    channels: int = 3  # 3 = RGB in and out; 1 = luma (Y) only, chroma upscaled bicubically
    widths: tuple[int, ...] = (64, 64, 32, 16)  # feature maps of the hidden convolutions
    first_kernel: int = 5  # kernel of the first conv; the rest are 3x3
    residual: bool = False  # predict the difference to a bicubic upscale of the input
    # Residual blocks (conv3x3-ReLU-conv3x3 + skip, at widths[0]) after the first conv: the compact
    # LR-space design of FSRCNN/SRVGG-style nets. 0 = the plain ESPCN stack.
    blocks: int = 0
    extra: dict = field(default_factory=dict, compare=False)  # free-form notes (not used by forward)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ESPCNConfig":
        d = dict(d)
        d["widths"] = tuple(d.get("widths", cls.widths))
        known = {k: d[k] for k in ("scale", "channels", "widths", "first_kernel", "residual", "blocks", "extra")
                 if k in d}
        return cls(**known)

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each output pixel sees on one side (drives tile overlap)."""
        radius = self.first_kernel // 2 + len(self.widths) + 2 * self.blocks  # every later conv is 3x3
        return radius + (2 if self.residual else 0)  # bicubic reads 2 px either side


SEED = ESPCNConfig()


class ESPCN(nn.Module):
    """x in [0, 1], shape (N, C, H, W) → (N, C, scale·H, scale·W)."""

    def __init__(self, config: ESPCNConfig = SEED):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_ch, kernel = config.channels, config.first_kernel
        for i, width in enumerate(config.widths):
            layers += [nn.Conv2d(in_ch, width, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
            in_ch, kernel = width, 3
            if i == 0:
                layers += [ResidualBlock(width) for _ in range(config.blocks)]
        layers.append(nn.Conv2d(in_ch, config.channels * config.scale**2, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(config.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.shuffle(self.body(x))
        if self.config.residual:
            y = y + F.interpolate(x, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        return y


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), then ReLU: two 3x3 convs that learn a correction of their input."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
