"""The VAE: a prior, a likelihood and a guide joined into a Pyro model and guide.

Generative model, for a mini-batch x of shape ``(B, *event_shape)``::

    z_b ~ p(z)            (site "z", inside plate "data" of size B at dim -1)
    x_b ~ p_θ(x | z_b)    (site "x", observed)

Guide::

    z_b ~ q_φ(z | x_b)    (site "z")

``model(x)`` and ``guide(x)`` are ordinary Pyro functions, so ``pyro.infer.SVI``
and every ``pyro.infer.ELBO`` work on them. The sites carry no mini-batch scale:
a loss computed on them is a sum over the batch, in nats. :func:`pyro_vae.fit`
scales by 1/B so that the numbers it reports are per example.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name
from torch import nn
from torch.nn.parameter import is_lazy

from .guides import Guide
from .likelihoods import Likelihood
from .priors import Prior

__all__ = ["VAE"]


class VAE(PyroModule):
    """A variational autoencoder built from three swappable parts.

    Arguments:
        prior: p(z), a :class:`~pyro_vae.priors.Prior`.
        likelihood: p_θ(x|z), a :class:`~pyro_vae.likelihoods.Likelihood`.
        guide: q_φ(z|x), a :class:`~pyro_vae.guides.Guide`; stored as ``self.encoder``
            because ``self.guide`` is the Pyro guide function.
        name: prefix of this model's parameters in Pyro's param store.

    Parts can be swapped after construction (``vae.prior = OtherPrior(...)``);
    nothing else changes.

    Example:
        >>> import pyro_vae as pv
        >>> vae = pv.VAE(pv.priors.StandardNormal(8),
        ...              pv.likelihoods.Bernoulli(pv.nets.MLP(8, [32], 64)),
        ...              pv.guides.DiagonalNormal(pv.nets.MLP(64, [32]), latent_dim=8))
        >>> vae.sample(3).shape
        torch.Size([3, 64])
    """

    def __init__(
        self, prior: Prior, likelihood: Likelihood, guide: Guide, name: str = "vae"
    ) -> None:
        super().__init__()
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a pyro_vae.priors.Prior, got {type(prior).__name__}")
        if not isinstance(likelihood, Likelihood):
            raise TypeError(
                "likelihood must be a pyro_vae.likelihoods.Likelihood, "
                f"got {type(likelihood).__name__}"
            )
        if not isinstance(guide, Guide):
            raise TypeError(f"guide must be a pyro_vae.guides.Guide, got {type(guide).__name__}")
        if prior.latent_dim != guide.latent_dim:
            raise ValueError(
                f"the prior's latent_dim ({prior.latent_dim}) differs from the guide's "
                f"({guide.latent_dim})"
            )
        if not isinstance(name, str) or not name or "$$$" in name:
            raise ValueError(f"name must be a non-empty string without '$$$', got {name!r}")
        self.prior = prior
        self.likelihood = likelihood
        self.encoder = guide
        self.param_prefix = name

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    def _register_params(self, *parts: str) -> None:
        """Registers the parameters of ``parts`` in Pyro's global param store.

        The model registers the prior's and likelihood's parameters and the guide
        the encoder's, so each trace names the parameters its program uses (how
        gradient statistics tell the decoder's from the guide's). A parameter that
        two parts share has one name, its first in ``self.named_parameters()``.

        ``pyro.module`` keeps whatever tensor the store already holds under a
        name, so a second model of the same name would be trained through the
        first one's stale tensors. Here the module is the source of truth: an
        entry that is not this module's parameter is replaced.
        """
        store = pyro.get_param_store()
        modules = [self._modules[part] for part in ("prior", "likelihood", "encoder")]
        names = self._param_names(modules)
        for part in parts:
            for param in self._modules[part].parameters():
                if is_lazy(param):
                    continue  # shapeless until the first forward pass; registered after it
                if id(param) not in names:  # a lazy layer has just materialised
                    self.__dict__.pop("_param_name_cache", None)
                    names = self._param_names(modules)
                full_name = names[id(param)][0]
                # The store's private dict is read, as PyroModule itself does, to
                # compare identities without building a constrained view per call.
                if store._params.get(full_name) is not param:
                    store[full_name] = param
                pyro.param(full_name, param)

    def _param_names(self, modules: list[nn.Module]) -> dict[int, tuple[str, torch.Tensor]]:
        """``id(parameter) -> (param-store name, parameter)``, cached across calls.

        Rebuilt when a part is swapped or a parameter is new (a lazy layer
        materialising). It holds the parameters themselves, so an ``id`` in it
        cannot be reused by another tensor while it is cached.
        """
        key = (self.param_prefix, *map(id, modules))
        cache = self.__dict__.get("_param_name_cache")
        if cache is None or cache[0] != key:
            names = {
                id(p): (param_with_module_name(self.param_prefix, n), p)
                for n, p in self.named_parameters()
            }
            cache = (key, names)
            self.__dict__["_param_name_cache"] = cache  # plain attribute, not a submodule
        return cache[1]

    def model(self, x: torch.Tensor) -> None:
        """The generative model p(z) p_θ(x|z) over a batch ``x`` of shape ``(B, *event)``."""
        self._register_params("prior", "likelihood")
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """The amortised guide q_φ(z|x) over a batch ``x`` of shape ``(B, *event)``."""
        self._register_params("encoder")
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.encoder(x))

    def encode(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x): batch shape ``(B,)``, event shape ``(latent_dim,)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p_θ(x|z) for ``z`` of shape ``(*batch, latent_dim)``."""
        return self.likelihood(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = E_q[z|x]]: the decoder's mean at the posterior mean, shape of ``x``."""
        return self.decode(self.encode(x).mean).mean

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = True) -> torch.Tensor:
        """Draws ``z ~ p(z)`` and returns E[x|z] (``mean=True``) or ``x ~ p(x|z)``.

        Returns:
            a tensor of shape ``(num_samples, *event_shape)``.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        z = self.prior().sample((num_samples,))
        px = self.decode(z)
        return px.mean if mean else px.sample()
