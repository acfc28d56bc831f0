"""Observation encoder: a small ResNet-style image encoder with GroupNorm and a spatial-softmax head,
concatenated with the (normalised) joint state. One feature vector per observation step."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import EncoderConfig


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.GroupNorm(groups, c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Expected (x, y) image coordinates of `num_keypoints` learned heat maps: keeps *where* things are,
    which global pooling would throw away."""

    def __init__(self, c_in: int, num_keypoints: int):
        super().__init__()
        self.to_keypoints = nn.Conv2d(c_in, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        heat = self.to_keypoints(x).flatten(2).softmax(-1)  # (B, K, H*W)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        ex = (heat * grid_x.reshape(1, 1, -1)).sum(-1)
        ey = (heat * grid_y.reshape(1, 1, -1)).sum(-1)
        return torch.cat([ex, ey], dim=-1)  # (B, 2K)


class ImageEncoder(nn.Module):
    """uint8/float RGB (B, 3, H, W) in [0, 1] -> (B, image_feature_dim)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        c0 = cfg.channels[0]
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, 2, 1, bias=False), nn.GroupNorm(cfg.groups, c0), nn.ReLU())
        stages, c_in = [], c0
        for i, c in enumerate(cfg.channels):
            stride = 1 if i == len(cfg.channels) - 1 else 2  # keep the last map large enough for keypoints
            for j in range(cfg.blocks_per_stage):
                stages.append(ResidualBlock(c_in, c, stride if j == 0 else 1, cfg.groups))
                c_in = c
        self.stages = nn.Sequential(*stages)
        self.keypoints = SpatialSoftmax(c_in, 32)
        self.out = nn.Linear(64, cfg.image_feature_dim)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / 0.5
        return self.out(self.keypoints(self.stages(self.stem(x))))


class ObservationEncoder(nn.Module):
    """(image (B, To, 3, H, W) in [0, 1], state (B, To, state_dim) normalised) -> (B, To, feature_dim)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.image = ImageEncoder(cfg)

    def forward(self, image: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        b, to = image.shape[:2]
        feat = self.image(image.reshape(b * to, *image.shape[2:])).reshape(b, to, -1)
        return torch.cat([feat, state], dim=-1)
