"""The registry of parts: the names a run's config uses, and the VAE they build.

A run's ``config.json`` (and every checkpoint's ``config``) holds the names and
sizes its model was built from. This module is the one place that maps those
names to constructors: the command line offers its names, :func:`build_vae`
builds the model of a config, and :func:`pyro_vae.load_run` rebuilds a trained
run in Python.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from pyro_vae import _defaults, data
from pyro_vae._checks import check_number, check_positive_int, check_shape, check_sizes
from pyro_vae.models import guides, init, likelihoods, nets, priors
from pyro_vae.models.vae import VAE, HierarchicalVAE

__all__ = [
    "PRIOR_BUILDERS",
    "GUIDE_BUILDERS",
    "LIKELIHOOD_BUILDERS",
    "PRIORS",
    "GUIDES",
    "LIKELIHOODS",
    "NETS",
    "BINARIZE",
    "ACTIVATIONS",
    "RUN_KEYS",
    "build_vae",
    "check_run_config",
]

#: The network kinds, as ``--net`` and a run's config take them.
NETS = ("mlp", "conv")
#: The binarisations, as ``--binarize`` takes them.
BINARIZE = ("dynamic", "static", "none")
#: The MLPs' activations by name; ``gated`` puts gated linear units
#: (:class:`~pyro_vae.nets.GatedLinear`) in place of a nonlinearity after each layer.
#:
#: :meta hide-value:
ACTIVATIONS: dict[str, type[nn.Module] | None] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gated": None}
#: What ``train`` saves in a run's config, and ``evaluate`` and ``sample`` rebuild the
#: model from.
RUN_KEYS = (
    "dataset",
    "image_shape",
    "prior",
    "guide",
    "likelihood",
    "scale",
    "learn_scale",
    "net",
    "hidden",
    "latent_dim",
    "binarization",
)


# Each part's builder, by name: a new prior, guide or likelihood is one line here (and
# its class in priors.py, guides.py or likelihoods.py). A builder takes the run's config
# and what the part is built on: the decoder net, or the guide and the latent size.
Config = Mapping[str, Any]


def _scale(config: Config) -> dict[str, Any]:
    return {"scale": config["scale"], "learn_scale": config["learn_scale"]}


def _flows(config: Config) -> int:
    return int(config.get("num_flows") or _defaults.NUM_FLOWS)


def _vamp(config: Config, guide: guides.Guide, latent: int) -> priors.Prior:
    pseudo_inputs = int(config.get("components") or _defaults.PSEUDO_INPUTS)
    with warnings.catch_warnings():
        if config.get("init") == "he":  # the initialisation that keeps tanh units alive
            warnings.filterwarnings("ignore", "a VampPrior on a guide with tanh units")
        return priors.VampPrior(guide, num_pseudo_inputs=pseudo_inputs)


#: Name → builder of the likelihood from a run's config and the decoder network; one line
#: here makes a new likelihood available to ``--likelihood`` and :func:`~pyro_vae.load_run`.
#:
#: :meta hide-value:
LIKELIHOOD_BUILDERS: dict[str, Callable[[Config, nn.Module], likelihoods.Likelihood]] = {
    "bernoulli": lambda c, net: likelihoods.Bernoulli(net),
    "continuous-bernoulli": lambda c, net: likelihoods.ContinuousBernoulli(net),
    "gaussian": lambda c, net: likelihoods.Gaussian(net, **_scale(c)),
    "laplace": lambda c, net: likelihoods.Laplace(net, **_scale(c)),
    "discretized-logistic": lambda c, net: likelihoods.DiscretizedLogistic(
        net, num_bins=data.info(c["dataset"]).num_levels, **_scale(c)
    ),
}
#: Name → builder of the guide from a run's config, the encoder network and the latent size.
#:
#: :meta hide-value:
GUIDE_BUILDERS: dict[str, Callable[[Config, nn.Module, int], guides.Guide]] = {
    "diagonal-normal": lambda c, net, d: guides.DiagonalNormal(net, d),
    "full-normal": lambda c, net, d: guides.FullCovarianceNormal(net, d),
    "iaf": lambda c, net, d: guides.InverseAutoregressiveFlow(net, d, num_flows=_flows(c)),
    "coupling": lambda c, net, d: guides.AffineCouplingFlow(net, d, num_flows=_flows(c)),
}
#: Name → builder of the prior from a run's config, the guide and the latent size.
#:
#: :meta hide-value:
PRIOR_BUILDERS: dict[str, Callable[[Config, guides.Guide, int], priors.Prior]] = {
    "standard-normal": lambda c, guide, d: priors.StandardNormal(d),
    "learned-normal": lambda c, guide, d: priors.LearnedNormal(d),
    "mixture": lambda c, guide, d: priors.MixtureOfGaussians(
        d, num_components=int(c.get("components") or _defaults.MIXTURE_COMPONENTS)
    ),
    "vamp": _vamp,
    "flow": lambda c, guide, d: priors.FlowPrior(d, num_flows=_flows(c)),
}
#: The likelihood names, as ``--likelihood`` and a run's config take them.
LIKELIHOODS = tuple(LIKELIHOOD_BUILDERS)
#: The guide names, as ``--guide`` and a run's config take them.
GUIDES = tuple(GUIDE_BUILDERS)
#: The prior names, as ``--prior`` and a run's config take them.
PRIORS = tuple(PRIOR_BUILDERS)


def build_vae(config: dict[str, Any]) -> VAE:
    """Builds the VAE that a run's config names.

    Keys: ``image_shape`` (C, H, W), ``prior``, ``guide``, ``likelihood``, ``net``
    (``mlp`` or ``conv``), ``hidden`` (MLP widths), ``latent_dim``, and for the
    Gaussian, Laplace and discretized-logistic likelihoods ``scale`` and ``learn_scale``;
    optionally ``num_flows`` (flow guides and prior, default 2), ``components``
    (mixture components, default 10, or VampPrior pseudo-inputs, default 500),
    ``activation`` of the MLPs (``relu``, the default, ``tanh``, or ``gated`` for gated
    linear units, :class:`~pyro_vae.nets.GatedLinear`) and ``layers``,
    the stochastic layers of a :class:`~pyro_vae.HierarchicalVAE` bottom-up as
    ``[[hidden widths, latent size], ...]`` (with the standard-normal prior, the
    diagonal-normal guide, the Bernoulli likelihood and MLPs), and ``init``: ``default``
    (torch's initialisation), ``glorot`` (Glorot-uniform weights and zero biases in
    every linear layer, :func:`pyro_vae.init.glorot_`, as the IWAE paper's code) or
    ``he`` (He-normal weights, :func:`pyro_vae.init.he_`, as the VampPrior paper's code).

    Raises:
        TypeError, ValueError: a key is missing or has a value of the wrong type or range.
    """
    choices = {"dataset": data.DATASETS, "prior": PRIORS, "guide": GUIDES}
    choices |= {"likelihood": LIKELIHOODS, "net": NETS, "binarization": BINARIZE}
    check_run_config(config, RUN_KEYS, choices)
    latent, shape = int(config["latent_dim"]), tuple(config["image_shape"])
    size = math.prod(shape)
    name = config.get("activation") or "relu"
    mlp = {"activation": ACTIVATIONS[name] or nn.ReLU, "gated": name == "gated"}
    if config.get("layers"):
        if mlp["gated"]:
            raise ValueError("config['layers'] builds tanh or relu MLPs, not gated ones")
        return _initialised(config, _hierarchical(config, size, mlp["activation"]))
    if config["net"] == "mlp":
        hidden = list(config["hidden"])
        encoder = nets.MLP(size, hidden, **mlp)
        decoder = nets.MLP(latent, hidden[::-1], size, **mlp)
    else:
        encoder, decoder = nets.ConvEncoder(shape), nets.ConvDecoder(latent, shape)
    guide = GUIDE_BUILDERS[config["guide"]](config, encoder, latent)
    prior = PRIOR_BUILDERS[config["prior"]](config, guide, latent)
    vae = VAE(prior, LIKELIHOOD_BUILDERS[config["likelihood"]](config, decoder), guide)
    return _initialised(config, vae)


def _initialised(config: dict[str, Any], vae: VAE) -> VAE:
    """``vae`` with the initialisation ``config["init"]`` names (torch's own by default)."""
    initialise = init.INITS[config.get("init", "default")]
    if initialise is not None:
        initialise(vae)
    return vae


def _hierarchical(config: dict[str, Any], size: int, activation: type[nn.Module]) -> VAE:
    """The :class:`~pyro_vae.HierarchicalVAE` of ``config["layers"]``."""
    plain = {"prior": "standard-normal", "guide": "diagonal-normal", "likelihood": "bernoulli"}
    plain |= {"net": "mlp"}
    for key, value in plain.items():
        if config[key] != value:
            raise ValueError(
                f"config['layers'] builds a hierarchical VAE with {key} {value!r}, "
                f"got {config[key]!r}"
            )
    layers = [(list(hidden), int(dim)) for hidden, dim in config["layers"]]
    return HierarchicalVAE.mlp(size, layers, activation=activation)


def check_run_config(
    config: object, required: Sequence[str], choices: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """Checks a run's config (what ``pyro-vae train`` saves) key by key.

    Arguments:
        config: the config, a dict.
        required: the keys it must hold.
        choices: the allowed names of the keys that name a part (``prior``, ``net``, …).

    Raises:
        TypeError: ``config`` is not a dict.
        ValueError: a key is missing or its value is of the wrong type or range,
            named as ``config['key']``.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}")
    for key, allowed in choices.items():
        if key in config and config[key] not in allowed:
            raise ValueError(
                f"config[{key!r}] must be one of {', '.join(allowed)}, got {config[key]!r}"
            )
    if "image_shape" in config:
        check_shape("config['image_shape']", config["image_shape"], 3)
    if "hidden" in config:
        check_sizes("config['hidden']", config["hidden"])
    if "latent_dim" in config:
        check_positive_int("config['latent_dim']", config["latent_dim"])
    if "scale" in config:
        scale = check_number("config['scale']", config["scale"])
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"config['scale'] must be a positive finite number, got {scale!r}")
    if "learn_scale" in config and not isinstance(config["learn_scale"], bool):
        learn = config["learn_scale"]
        raise ValueError(f"config['learn_scale'] must be true or false, got {learn!r}")
    for key in ("num_flows", "components"):
        if config.get(key) is not None:
            check_positive_int(f"config[{key!r}]", config[key])
    if config.get("activation") is not None and config["activation"] not in ACTIVATIONS:
        names = ", ".join(ACTIVATIONS)
        raise ValueError(
            f"config['activation'] must be one of {names}, got {config['activation']!r}"
        )
    if config.get("layers") is not None:
        _check_layers(config["layers"])
    if config.get("init", "default") not in init.INITS:
        names = ", ".join(init.INITS)
        raise ValueError(f"config['init'] must be one of {names}, got {config['init']!r}")
    return config


def _check_layers(layers: object) -> None:
    """``config["layers"]``: a non-empty list of ``[hidden widths, latent size]``."""
    ok = isinstance(layers, list) and layers
    ok = ok and all(isinstance(layer, (list, tuple)) and len(layer) == 2 for layer in layers)
    if not ok:
        raise ValueError(
            f"config['layers'] must be a list of [hidden widths, latent size], got {layers!r}"
        )
    for i, (hidden, dim) in enumerate(layers):
        check_sizes(f"config['layers'][{i}][0]", hidden)
        check_positive_int(f"config['layers'][{i}][1]", dim)
