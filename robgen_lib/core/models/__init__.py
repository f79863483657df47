"""Classifiers of the book.  Every one maps images in [0, 1] to logits of shape (N, K);
normalisation is the first layer inside the model."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .classifiers import LeNet, Normalize, PreActResNet18, ResNet10, SmallCNN

MODELS = ("small_cnn", "lenet", "resnet10", "preact_resnet18")

__all__ = ["MODELS", "Normalize", "SmallCNN", "LeNet", "ResNet10", "PreActResNet18", "build_model", "model_device",
           "eval_mode", "frozen_batchnorm", "last_linear"]


def build_model(name: str, *, in_channels: int, num_classes: int, image_size: int,
                mean=None, std=None) -> nn.Module:
    """A classifier by name, with ``Normalize(mean, std)`` in front of it."""
    if name == "small_cnn":
        body = SmallCNN(in_channels, num_classes)
    elif name == "lenet":
        if image_size % 4:
            raise ConfigError(f"model 'lenet' needs an image size divisible by 4 (28 for MNIST), got {image_size}")
        body = LeNet(in_channels, num_classes, image_size)
    elif name == "resnet10":
        body = ResNet10(in_channels, num_classes, stem_stride=1 if image_size <= 64 else 2)
    elif name == "preact_resnet18":
        body = PreActResNet18(in_channels, num_classes)
    else:
        raise ConfigError(f"unknown model {name!r}; allowed: {', '.join(map(repr, MODELS))}")
    mean = mean if mean is not None else (0.5,) * in_channels
    std = std if std is not None else (0.5,) * in_channels
    return nn.Sequential(Normalize(mean, std), body)


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (its classification head); its input is the feature vector."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("this needs a model whose last layer is nn.Linear")
    return linears[-1]


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class eval_mode:
    """``with eval_mode(model):`` — the model in eval mode inside, its previous mode restored after."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


class frozen_batchnorm:
    """``with frozen_batchnorm(model):`` — every BatchNorm layer in eval mode inside: it
    normalises with its running statistics, y = γ·(x − μ_run)/√(σ²_run + ε) + β, and
    does not update them. Every other module keeps its mode; each BatchNorm layer's
    previous mode is restored after. Gradients still flow to γ, β and the rest."""

    def __init__(self, model: nn.Module):
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.was_training: list[bool] = []

    def __enter__(self):
        self.was_training = [m.training for m in self.norms]
        for m in self.norms:
            m.eval()

    def __exit__(self, *exc):
        for m, mode in zip(self.norms, self.was_training):
            m.train(mode)
