"""Bad arguments to the latent-space analysis: the error names the argument."""

from __future__ import annotations

import math

import pytest
import torch
from bad_input import diagonal_guide

from pyro_vae.analysis import latent


def test_the_aggregate_posterior_names_its_bad_arguments():
    encoder, x = diagonal_guide(), torch.rand(5, 4)
    with pytest.raises(TypeError, match="encoder must be a guide module"):
        latent.aggregate_posterior_log_prob(3, x, torch.zeros(2, 2))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        latent.aggregate_posterior_log_prob(encoder, x, [[0.0, 0.0]])
    with pytest.raises(TypeError, match="z must have a floating dtype"):
        latent.aggregate_posterior_log_prob(encoder, x, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="z has dtype torch.float64 but x has torch.float32"):
        latent.aggregate_posterior_log_prob(encoder, x, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x of shape \(5, 7\) does not fit the encoder"):
        latent.aggregate_posterior_log_prob(encoder, torch.rand(5, 7), torch.zeros(2, 2))
    for limit in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="limit must be a finite number > 0"):
            latent.grid(limit, 3)
    with pytest.raises(TypeError, match="limit must be a number"):
        latent.grid("2", 3)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        latent.grid(2.0, 0)
