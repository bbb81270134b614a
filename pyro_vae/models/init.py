"""Initialisations from the papers: Glorot-uniform or He-normal weights, a data-mean output bias.

Burda et al.'s code (the IWAE paper's Table 1) starts every linear layer at
W ~ U(−a, a), a = sqrt(6 / (n_in + n_out)) (Glorot & Bengio 2010, gain 1, for tanh
layers) with zero biases, and the decoder's output bias at the logit of the mean
training image, b_i = logit(clip(x̄_i, 0.001, 0.999)), so that the first decoder
already predicts each pixel's average and the early epochs are not spent learning it.

The VampPrior paper's code (github.com/jmtomczak/vae_vampprior) draws every linear
layer's weights from N(0, 2 / n_in) (He et al. 2015) and keeps torch's biases.

    pv.init.glorot_(vae)
    pv.init.output_bias_from_data_(vae, train)

References:
    1. X. Glorot, Y. Bengio. Understanding the difficulty of training deep feedforward
       neural networks. AISTATS 2010.
    2. K. He, X. Zhang, S. Ren, J. Sun. Delving deep into rectifiers. ICCV 2015.
    3. Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders. ICLR 2016
       (arXiv:1509.00519), and its code, github.com/yburda/iwae.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pyro_vae._checks import check_data
from pyro_vae.models.likelihoods import Bernoulli

__all__ = ["INITS", "glorot_", "he_", "output_bias_from_data_"]


def _linears(module: nn.Module, caller: str) -> list[nn.Linear]:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{caller}: {type(module).__name__} holds no nn.Linear layer")
    return linears


@torch.no_grad()
def glorot_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every ``nn.Linear`` inside ``module``.

    W ~ U(−a, a) with a = sqrt(6 / (n_in + n_out)); other layers keep their values.

    Returns:
        ``module``, changed in place.

    Raises:
        ValueError: ``module`` holds no linear layer (nothing would change).
    """
    for layer in _linears(module, "glorot_"):
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()
    return module


@torch.no_grad()
def he_(module: nn.Module) -> nn.Module:
    """He-normal weights, W ~ N(0, 2 / n_in), for every ``nn.Linear``; biases are kept.

    Returns:
        ``module``, changed in place.

    Raises:
        ValueError: ``module`` holds no linear layer.
    """
    for layer in _linears(module, "he_"):
        layer.weight.normal_(0.0, (2.0 / layer.in_features) ** 0.5)
    return module


#: The names a run's config may give as ``init`` (:func:`pyro_vae.registry.build_vae`);
#: ``default`` is torch's own initialisation.
#:
#: :meta hide-value:
INITS: dict[str, Callable[[nn.Module], nn.Module] | None] = {
    "default": None, "glorot": glorot_, "he": he_,
}  # fmt: skip


@torch.no_grad()
def output_bias_from_data_(vae: nn.Module, x: torch.Tensor, clip: float = 1e-3) -> nn.Module:
    """Sets a Bernoulli decoder's output bias to logit(clip(x̄, clip, 1 − clip)).

    x̄ is the mean of ``x`` over its examples: with grey levels in [0, 1] it is each
    pixel's probability of being on under dynamic binarisation.

    Arguments:
        vae: a VAE (or HierarchicalVAE) with a :class:`~pyro_vae.likelihoods.Bernoulli`
            likelihood whose network ends in an ``nn.Linear`` of one output per pixel.
        x: training data of shape ``(N, *event_shape)``, values in [0, 1].
        clip: keeps the logits finite for pixels that are always off or on.

    Returns:
        ``vae``, changed in place.

    Raises:
        ValueError: another likelihood or network, or data of the wrong shape or range.
    """
    likelihood = getattr(vae, "likelihood", None)
    if not isinstance(likelihood, Bernoulli):
        name = type(likelihood).__name__
        raise ValueError(f"output_bias_from_data_ needs a Bernoulli likelihood, got {name}")
    last = [m for m in likelihood.net.modules() if isinstance(m, nn.Linear)]
    if not last or last[-1].bias is None:
        raise ValueError("output_bias_from_data_: the decoder has no final nn.Linear with a bias")
    bias = last[-1].bias
    check_data(x)
    if x[0].numel() != bias.numel():
        raise ValueError(
            f"x has {x[0].numel()} values per example, the decoder {bias.numel()} outputs"
        )
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"x must lie in [0, 1], got values in [{x.min():g}, {x.max():g}]")
    if not 0 < clip < 0.5:
        raise ValueError(f"clip must lie in (0, 0.5), got {clip!r}")
    mean = x.reshape(len(x), -1).double().mean(0).clamp(clip, 1 - clip)
    bias.copy_(torch.logit(mean).to(bias))
    return vae
