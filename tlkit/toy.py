"""Seeded tiny data and models shared by tests, benchmarks and smoke runs.

Like fastai's ``synth_learner`` and accelerate's ``RegressionDataset``: small,
deterministic, and quick enough to train in a test.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset


def blobs(n: int = 512, n_features: int = 8, n_classes: int = 3, seed: int = 0,
          spread: float = 1.0, task: int = 0) -> TensorDataset:
    """Gaussian blobs: ``x (n, n_features)`` float32, ``y (n,)`` int64; learnable by an MLP.

    ``task`` fixes the class centres, ``seed`` the samples: ``blobs(seed=0)`` and
    ``blobs(seed=1)`` are a train and a validation set of the same problem.
    """
    centers = torch.randn(n_classes, n_features, generator=torch.Generator().manual_seed(10_000 + task)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_classes
    x = centers[y] + spread * torch.randn(n, n_features, generator=g)
    return TensorDataset(x.float(), y.long())


def images(n: int = 128, size: int = 16, n_classes: int = 2, channels: int = 3, seed: int = 0) -> TensorDataset:
    """Tiny images whose class is a bright square in one of ``n_classes`` positions."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, channels, size, size, generator=g)
    y = torch.arange(n) % n_classes
    half = size // 2
    for i in range(n):
        k = int(y[i])
        r, c = divmod(k % 4, 2)
        x[i, :, r * half:(r + 1) * half, c * half:(c + 1) * half] += 0.7
    return TensorDataset(x, y.long())


class MLP(nn.Sequential):
    """``in -> hidden -> hidden -> classes`` with ReLU; groups: layer0, layer1 (BatchNorm), head."""

    def __init__(self, n_in: int = 8, n_classes: int = 3, hidden: int = 32, bn: bool = True):
        super().__init__(
            nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU()),
            nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden) if bn else nn.Identity(), nn.ReLU()),
            nn.Linear(hidden, n_classes),
        )


class TinyCNN(nn.Module):
    """Two conv blocks with BatchNorm and a linear head; groups: stem, block, head."""

    def __init__(self, channels: int = 3, n_classes: int = 2, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
                                   nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))

    def layer_groups(self):
        return [("stem", [self.stem]), ("block", [self.block]), ("head", [self.head])]
