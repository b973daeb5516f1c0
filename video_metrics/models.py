"""A tiny 3D CNN for the demo and the explanation tests (input ``(N, 3, T, H, W)``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["TinyVideoNet"]


class TinyVideoNet(nn.Module):
    """Three 3x3x3 conv blocks (spatial stride 2 in the last two, no temporal stride, so the last
    block keeps every frame: per-frame maps are natural), global average pooling, a linear head.
    ``block3`` is the usual Grad-CAM target; its cells are 4x4 input pixels."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv3d(3, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        self.block2 = nn.Sequential(nn.Conv3d(width, 2 * width, 3, stride=(1, 2, 2), padding=1),
                                    nn.BatchNorm3d(2 * width), nn.ReLU(inplace=True))
        self.block3 = nn.Sequential(nn.Conv3d(2 * width, 2 * width, 3, stride=(1, 2, 2), padding=1),
                                    nn.BatchNorm3d(2 * width), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.head(torch.flatten(self.pool(x), 1))
