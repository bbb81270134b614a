"""Gated linear units, the hidden layers of the VampPrior paper's networks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GatedLinear"]


class GatedLinear(nn.Module):
    """A gated linear unit: h = (W x + b) ⊙ σ(V x + c) (Dauphin et al. 2017).

    The hidden layer of the VampPrior paper's networks (its ``GatedDense``). The
    gate σ(V x + c) never saturates the path W x + b, unlike tanh.

    Shapes:
        ``(*batch, in_features) -> (*batch, out_features)``.

    References:
        1. Y. N. Dauphin, A. Fan, M. Auli, D. Grangier. Language modeling with gated
           convolutional networks. ICML 2017.
        2. J. M. Tomczak, M. Welling. VAE with a VampPrior. AISTATS 2018.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.value = nn.Linear(in_features, out_features)
        self.gate = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`(W x + b) \odot \sigma(V x + c)`, ``(*batch, in_features)`` to
        ``(*batch, out_features)``."""
        return self.value(x) * torch.sigmoid(self.gate(x))
