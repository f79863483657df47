"""Discriminative classifiers: a small CNN, a LeNet-style CNN, ResNet-10 and PreActResNet-18.

ResNet-10 follows the HE-PGD paper's model: BasicBlocks [1, 1, 1, 1] with 64→512
channels and global average pooling, a stride-1 stem for 32x32 inputs.
PreActResNet-18 (He et al. 2016) is the usual adversarial-training backbone.
The small CNN and the ResNets pool globally at the end, so they take 8x8 and 32x32 inputs
alike; the LeNet-style CNN is Madry et al.'s MNIST network at a CPU's size (two 5x5
convolutions, each followed by a 2x2 max-pool, then a hidden linear layer), for 28x28 images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std per channel, as a layer, so inputs stay in [0, 1] pixel units."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """Three 3x3 convolutions (32-64-128), one max-pool, global average pool, linear."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class LeNet(nn.Module):
    """conv 5x5 (16) → max-pool → conv 5x5 (32) → max-pool → linear 128 → linear K: Madry et
    al.'s MNIST classifier (32 / 64 / 1024) at a quarter of the width, about 0.2 M parameters."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 16,
                 hidden: int = 128):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"LeNet pools twice by 2 and needs an image size divisible by 4, got {image_size}")
        side = image_size // 4
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * side * side, hidden), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet10(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, stem_stride: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        chans = [64, 128, 256, 512]
        layers, cin = [], 64
        for i, c in enumerate(chans):
            layers.append(BasicBlock(cin, c, 1 if i == 0 else 2))
            cin = c
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.layers(self.stem(x))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        layers, cin = [], 64
        for i, c in enumerate([64, 128, 256, 512]):
            for j in range(2):
                layers.append(PreActBlock(cin, c, 2 if (i > 0 and j == 0) else 1))
                cin = c
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.layers(self.stem(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
