"""The VampPrior: a mixture of the guide's posteriors at learned pseudo-inputs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae._checks import check_positive_int, check_sizes
from pyro_vae._defaults import PSEUDO_INPUTS
from pyro_vae.models._mixture import ComponentMixture, GaussianMixture
from pyro_vae.models._normal import diagonal_normal
from pyro_vae.models._prior_base import Prior
from pyro_vae.models.nets import MLP, ConvEncoder

__all__ = ["VampPrior"]


def _guide_module(guide: Any) -> nn.Module:
    """The encoder module behind ``guide``: a Guide, or a VAE's ``guide`` method."""
    owner = getattr(guide, "__self__", None)
    if owner is not None and isinstance(owner._modules.get("encoder"), nn.Module):
        return owner._modules["encoder"]  # vae.guide, as DESIGN.md writes it
    if not isinstance(guide, nn.Module):
        raise TypeError(
            f"guide must be a pyro_vae.guides.Guide (vae.encoder), got {type(guide).__name__}"
        )
    return guide


class VampPrior(Prior):
    r"""The VampPrior (Tomczak & Welling 2018): the guide's posteriors at learned pseudo-inputs.

    .. math:: p(z) = \frac{1}{C} \sum_c q_\phi(z \mid u_c),

    with pseudo-inputs :math:`u_1, \dots, u_C` of the data's shape learned with
    everything else. The prior shares the guide's parameters φ: the
    model's :math:`\log p(z)` trains the encoder too. For a diagonal-Gaussian guide the
    mixture is evaluated without a (…, C, D) intermediate; any other guide (full
    covariance, flows) is evaluated component by component, which costs C guide
    densities per particle. No closed-form KL exists: ``analytic-kl`` falls back to
    Monte Carlo with a note.

    The prior holds the guide it was given; after swapping ``vae.encoder``, build a
    new VampPrior on the new guide.

    The encoder can make :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))` vanish by ignoring x, since
    the components follow it. With tanh networks it does: their hidden units saturate within
    the first epoch, :math:`\mathbb{E}[z \mid x]` stops varying with x, and the decoder never
    starts to use z (measured on mnist5k, 784-300-300-40: KL 0.02 nats and 1 active unit of
    40 after 8 epochs, where ReLU or gated networks keep all 40 active; KL warm-up does not
    prevent it). The paper's gated units (``nets.MLP(..., gated=True)``, the recipe
    ``vampprior2018``) train it as the paper does: on mnist5k it beats the standard
    prior from the first epochs. ``tests/test_recipes.py`` keeps both facts.

    Arguments:
        guide: the guide :math:`q_\phi(z \mid x)`, a :class:`~pyro_vae.guides.Guide`
            (``vae.encoder``; ``vae.guide``, the VAE's Pyro guide, is accepted and means its
            encoder).
        num_pseudo_inputs: C (the paper uses 500 for MNIST).
        input_shape: the shape of one input; by default ``(guide.net.in_features,)``.
        init: a ``(C, *input_shape)`` tensor to start the pseudo-inputs from (for example
            C random training images); by default :math:`\mathcal{N}(0.05, 0.01^2)` entries, the
            paper's.

    References:
        1. J. M. Tomczak, M. Welling. VAE with a VampPrior. AISTATS 2018.
    """

    def __init__(
        self,
        guide: Any,
        num_pseudo_inputs: int = PSEUDO_INPUTS,
        input_shape: Sequence[int] | None = None,
        init: torch.Tensor | None = None,
    ) -> None:
        guide = _guide_module(guide)
        latent_dim = getattr(guide, "latent_dim", None)
        if not isinstance(latent_dim, int):
            raise TypeError("guide must have an integer latent_dim (a pyro_vae.guides.Guide)")
        super().__init__(latent_dim)
        check_positive_int("num_pseudo_inputs", num_pseudo_inputs)
        if init is None:
            shape = self._input_shape(guide, input_shape)
            init = 0.05 + 0.01 * torch.randn(num_pseudo_inputs, *shape)
        elif not isinstance(init, torch.Tensor) or init.shape[:1] != (num_pseudo_inputs,):
            got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
            raise ValueError(
                f"init must be a tensor of shape ({num_pseudo_inputs}, ...), got {got}"
            )
        elif input_shape is not None and init.shape[1:] != tuple(input_shape):
            raise ValueError(
                f"init has inputs of shape {tuple(init.shape[1:])}, input_shape says "
                f"{tuple(input_shape)}"
            )
        elif not bool(torch.isfinite(init).all()):
            raise ValueError("init has NaN or infinite values")
        _check_fits_guide(guide, tuple(init.shape[1:]), "init" if input_shape is None else None)
        self.guide = guide
        self.pseudo_inputs = nn.Parameter(init.detach().clone().to(torch.get_default_dtype()))
        if any(isinstance(m, nn.Tanh) for m in guide.modules()):
            warnings.warn(
                "a VampPrior on a guide with tanh units tends to collapse from torch's default "
                "initialisation (the encoder learns to ignore x; measured in "
                "tests/test_recipes.py): start from He-normal weights (pyro_vae.init.he_, as "
                "the VampPrior paper's code) or use ReLU or gated units",
                stacklevel=2,
            )

    @staticmethod
    def _input_shape(guide: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
        if input_shape is not None:
            return tuple(check_sizes("input_shape", input_shape))
        width = getattr(getattr(guide, "net", None), "in_features", None)
        if not isinstance(width, int):
            raise ValueError(
                "cannot tell the guide's input shape: pass input_shape= (or init=) to VampPrior"
            )
        return (width,)

    @property
    def num_pseudo_inputs(self) -> int:
        """C, the number of pseudo-inputs (mixture components)."""
        return self.pseudo_inputs.shape[0]

    def forward(self) -> dist.TorchDistribution:
        q = self.guide(self.pseudo_inputs)
        if q.batch_shape != self.pseudo_inputs.shape[:1] or q.event_shape != (self.latent_dim,):
            raise ValueError(
                f"the guide maps {self.num_pseudo_inputs} pseudo-inputs to a distribution of "
                f"batch shape {tuple(q.batch_shape)} and event shape {tuple(q.event_shape)}"
            )
        base = diagonal_normal(q)
        logits = self.pseudo_inputs.new_zeros(self.num_pseudo_inputs)
        if base is not None:
            return GaussianMixture(logits, base.loc, base.scale)
        return ComponentMixture(dist.Categorical(logits=logits), q)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, num_pseudo_inputs={self.num_pseudo_inputs}"


def _check_fits_guide(guide: nn.Module, shape: tuple[int, ...], name: str | None) -> None:
    """Pseudo-inputs of ``shape`` must be what the guide's network reads (when it says)."""
    net = getattr(guide, "net", None)
    if not isinstance(net, (MLP, ConvEncoder)):
        return  # other networks (recurrent ones read (T, F)) do not say their input shape
    width, image = net.in_features, getattr(net, "image_shape", None)
    if shape not in ((width,), image):
        raise ValueError(
            f"{name or 'input_shape'} gives pseudo-inputs of shape {shape}, but the guide's "
            f"network reads inputs of shape {image or (width,)}"
        )
