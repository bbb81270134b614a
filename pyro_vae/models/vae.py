"""The VAE: a prior, a likelihood and a guide joined into a Pyro model and guide.

Generative model, for a mini-batch x of shape ``(B, *event_shape)``::

    z_b ~ p(z)            (site "z", inside plate "data" of size B at dim -1)
    x_b ~ p_θ(x | z_b)    (site "x", observed)

Guide::

    z_b ~ q_φ(z | x_b)    (site "z")

``model(x)`` and ``guide(x)`` are ordinary Pyro functions, so :class:`pyro.infer.SVI`
and every :class:`pyro.infer.ELBO` work on them. The sites carry no mini-batch scale:
a loss computed on them is a sum over the batch, in nats. :func:`pyro_vae.fit`
scales by 1/B so that the numbers it reports are per example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name
from torch import nn
from torch.nn.parameter import is_lazy

from pyro_vae._checks import check_activation, check_latents, check_positive_int, check_sizes
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.guides import DiagonalNormal, Guide, location
from pyro_vae.models.likelihoods import Bernoulli, Likelihood
from pyro_vae.models.nets import MLP
from pyro_vae.models.priors import Prior, StandardNormal

__all__ = ["VAE", "HierarchicalVAE"]


class VAE(PyroModule):
    r"""A variational autoencoder built from three swappable parts.

    Arguments:
        prior: :math:`p(z)`, a :class:`~pyro_vae.priors.Prior`.
        likelihood: :math:`p_\theta(x \mid z)`, a :class:`~pyro_vae.likelihoods.Likelihood`.
        guide: :math:`q_\phi(z \mid x)`, a :class:`~pyro_vae.guides.Guide`; stored as
            ``self.encoder`` because ``self.guide`` is the Pyro guide function.
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
        _check_parts(prior, likelihood, [guide], name)
        if prior.latent_dim != guide.latent_dim:
            raise ValueError(
                f"the prior's latent_dim ({prior.latent_dim}) differs from the guide's "
                f"({guide.latent_dim})"
            )
        self.prior = prior
        self.likelihood = likelihood
        self.encoder = guide
        self.param_prefix = name

    @property
    def latent_dim(self) -> int:
        """Size D of z, the prior's."""
        return self.prior.latent_dim

    def _register_params(self, *parts: str) -> None:
        """Registers the parameters of ``parts`` in Pyro's global param store.

        The model registers the prior's and likelihood's parameters and the guide
        the encoder's, so each trace names the parameters its program uses (how
        gradient statistics tell the decoder's from the guide's). A parameter that
        two parts share has one name, its first in ``self.named_parameters()``.

        :func:`pyro.module` keeps whatever tensor the store already holds under a
        name, so a second model of the same name would be trained through the
        first one's stale tensors. Here the module is the source of truth: an
        entry that is not this module's parameter is replaced.
        """
        store = pyro.get_param_store()
        modules = [self._modules[part] for part in self._parts]
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
            # Guide parts first: a parameter shared with the prior (a VampPrior's
            # encoder) is named where it belongs, "encoder...", not "prior.guide...".
            order = [p for p in self._parts if p in self._guide_parts]
            order += [p for p in self._parts if p not in order]
            names: dict[int, tuple[str, torch.Tensor]] = {}
            for part in order:
                for n, p in self._modules[part].named_parameters(prefix=part):
                    names.setdefault(id(p), (param_with_module_name(self.param_prefix, n), p))
            cache = (key, names)
            self.__dict__["_param_name_cache"] = cache  # plain attribute, not a submodule
        return cache[1]

    #: the submodules holding parameters, and those the guide uses
    _parts: tuple[str, ...] = ("prior", "likelihood", "encoder")
    _guide_parts: tuple[str, ...] = ("encoder",)

    def model(self, x: torch.Tensor) -> None:
        r"""The generative model over a batch ``x`` of shape ``(B, *event)``:

        .. math:: p(z)\, p_\theta(x \mid z).
        """
        self._register_params("prior", "likelihood")
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        r"""The amortised guide over a batch ``x`` of shape ``(B, *event)``:

        .. math:: q_\phi(z \mid x).
        """
        self._register_params("encoder")
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.encoder(x))

    def encode(self, x: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`q_\phi(z \mid x)` for data ``x`` of shape ``(B, *event_shape)``.

        ``x`` has the VAE's dtype and device. Returns a distribution of batch shape ``(B,)``
        and event shape ``(latent_dim,)``.
        """
        return self.encoder(check_vae_data(self, x, "x", support=False))

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`p_\theta(x \mid z)` for finite latents ``z``, ``(*batch, latent_dim)``."""
        return self.likelihood(check_latents("z", z, self.latent_dim))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r"""The decoder's mean at the posterior mean, shape of ``x``:

        .. math:: \mathbb{E}[x \mid z = \mathbb{E}_q[z \mid x]].

        For a flow guide, whose mean has no closed form, z is :func:`~pyro_vae.guides.location`.
        """
        return self.decode(location(self.encode(x))).mean

    @torch.no_grad()
    def sample_z(self, num_samples: int) -> torch.Tensor:
        """Draws the decoder's input from the model: ``z ~ p(z)``, ``(num_samples, latent_dim)``."""
        _check_num_samples(num_samples)
        return self.prior().sample((num_samples,))

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = True) -> torch.Tensor:
        r"""Draws ``z`` from the model and returns :math:`\mathbb{E}[x \mid z]` or ``x ~ p(x|z)``.

        ``mean=True`` gives the first, ``mean=False`` the second.

        Returns:
            a tensor of shape ``(num_samples, *event_shape)``.
        """
        px = self.decode(self.sample_z(num_samples))
        return px.mean if mean else px.sample()


def _check_num_samples(num_samples: int) -> None:
    check_positive_int("num_samples", num_samples)


def _check_layers(data_dim: int, layers: object, likelihood: object, activation: object) -> None:
    """The arguments of :meth:`HierarchicalVAE.mlp`, each named in its error."""
    check_positive_int("data_dim", data_dim)
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(
            "layers must name at least one stochastic layer, a list of (hidden widths, "
            f"latent size) pairs; got {layers!r}"
        )
    for i, layer in enumerate(layers):
        if isinstance(layer, (str, bytes)) or not isinstance(layer, Sequence) or len(layer) != 2:
            raise ValueError(
                f"layers[{i}] must be a pair (hidden widths, latent size), got {layer!r}"
            )
        check_sizes(f"layers[{i}][0]", layer[0])
        check_positive_int(f"layers[{i}][1]", layer[1])
    if not callable(likelihood):
        raise TypeError(
            f"likelihood must be a Likelihood class (such as Bernoulli), got {likelihood!r}"
        )
    check_activation(activation)


def _check_parts(prior: Prior, likelihood: Likelihood, guides: Sequence[Guide], name: str) -> None:
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a pyro_vae.priors.Prior, got {type(prior).__name__}")
    if not isinstance(likelihood, Likelihood):
        raise TypeError(
            f"likelihood must be a pyro_vae.likelihoods.Likelihood, got {type(likelihood).__name__}"
        )
    for guide in guides:
        if not isinstance(guide, Guide):
            raise TypeError(f"guide must be a pyro_vae.guides.Guide, got {type(guide).__name__}")
    if not isinstance(name, str) or not name or "$$$" in name:
        raise ValueError(f"name must be a non-empty string without '$$$', got {name!r}")


class HierarchicalVAE(VAE):
    r"""A Markovian hierarchical VAE with L stochastic layers z_1 (next to x) … z_L (top).

    Model, sites ``"zL"`` … ``"z1"`` then ``"x"``, all inside plate ``"data"``:

    .. math::

        z_L \sim p(z_L), \quad z_{l-1} \sim p_\theta(z_{l-1} \mid z_l) \ (l = L, \dots, 2),
        \quad x \sim p_\theta(x \mid z_1).

    Guide, bottom-up:

    .. math::

        z_1 \sim q_\phi(z_1 \mid x), \quad z_l \sim q_\phi(z_l \mid z_{l-1}) \ (l = 2, \dots, L),

    so

    .. math::

        \log w = \log p(z_L) + \sum_l \log p(z_{l-1} \mid z_l) + \log p(x \mid z_1)
        - \sum_l \log q(z_l \mid \cdot),

    and
    every objective that supports several latent sites (all of :mod:`pyro_vae.objectives`;
    ``analytic-kl`` uses the closed form only at the top, where the prior does not
    depend on a latent the guide samples later) trains it. Its own programs are evaluated
    from its parts, without tracing, on the fused path of ``pyro_vae.infer._fused``: the same
    draws and the same numbers as the traced path, at less cost per step.

    A conditional layer is any :class:`~pyro_vae.guides.Guide`: a module mapping its
    input (the layer above, or x) to a distribution over its layer, such as
    ``DiagonalNormal(MLP(50, [100, 100]), latent_dim=100)`` for :math:`p(z_1 \mid z_2)`.
    :meth:`mlp` builds the whole stack from widths, including the IWAE paper's
    two-layer model.

    Arguments:
        prior: :math:`p(z_L)`, any :class:`~pyro_vae.priors.Prior`.
        conditionals: ``[p(z_1|z_2), …, p(z_{L-1}|z_L)]``, bottom-up (L - 1 layers).
        likelihood: :math:`p_\theta(x \mid z_1)`.
        guides: ``[q(z_1|x), q(z_2|z_1), …, q(z_L|z_{L-1})]`` (L layers); the first is
            ``self.encoder``, so :meth:`~VAE.encode` and :meth:`~VAE.reconstruct` go through z_1.
        name: prefix of this model's parameters in Pyro's param store.
    """

    _parts = ("prior", "conditionals", "likelihood", "encoder", "upper_guides")
    _guide_parts = ("encoder", "upper_guides")

    def __init__(
        self,
        prior: Prior,
        conditionals: Sequence[Guide],
        likelihood: Likelihood,
        guides: Sequence[Guide],
        name: str = "hvae",
    ) -> None:
        PyroModule.__init__(self)
        conditionals, guides = list(conditionals), list(guides)
        _check_parts(prior, likelihood, guides + conditionals, name)
        if not guides:
            raise ValueError("guides must hold one guide per stochastic layer, got none")
        if len(conditionals) != len(guides) - 1:
            raise ValueError(
                f"{len(guides)} stochastic layers need {len(guides) - 1} conditionals "
                f"p(z_l-1 | z_l), got {len(conditionals)}"
            )
        dims = [g.latent_dim for g in guides]
        for layer, conditional in enumerate(conditionals, start=1):
            if conditional.latent_dim != dims[layer - 1]:
                raise ValueError(
                    f"conditionals[{layer - 1}] is p(z{layer} | z{layer + 1}) and must give "
                    f"latent_dim {dims[layer - 1]} (guides[{layer - 1}]'s), got "
                    f"{conditional.latent_dim}"
                )
        if prior.latent_dim != dims[-1]:
            raise ValueError(
                f"the prior is p(z{len(dims)}) and must have latent_dim {dims[-1]} "
                f"(guides[-1]'s), got {prior.latent_dim}"
            )
        self.prior = prior
        self.conditionals = nn.ModuleList(conditionals)
        self.likelihood = likelihood
        self.encoder = guides[0]
        self.upper_guides = nn.ModuleList(guides[1:])
        self.param_prefix = name

    @classmethod
    def mlp(
        cls,
        data_dim: int,
        layers: Sequence[tuple[Sequence[int], int]],
        likelihood: Callable[[nn.Module], Likelihood] = Bernoulli,
        activation: Callable[[], nn.Module] = nn.Tanh,
        name: str = "hvae",
    ) -> HierarchicalVAE:
        r"""A stack of MLP layers with diagonal-Gaussian conditionals and a standard normal top.

        ``layers[l] = (hidden, d)`` gives layer l + 1: :math:`q(z_{l+1} \mid \cdot)` maps its
        input through MLP ``hidden`` to d latents, and the matching generative layer mirrors it
        (``hidden`` reversed). The IWAE paper's two-layer model (Burda et al. 2016) is::

            HierarchicalVAE.mlp(784, [([200, 200], 100), ([100, 100], 50)])

        Arguments:
            data_dim: size of flat x.
            layers: ``(hidden widths, latent size)`` per stochastic layer, bottom-up.
            likelihood: the likelihood class, called with the decoder network.
            activation: the nonlinearity (tanh, as in the IWAE paper).
        """
        _check_layers(data_dim, layers, likelihood, activation)
        guides, conditionals, below = [], [], data_dim
        for hidden, dim in layers:
            guides.append(DiagonalNormal(MLP(below, list(hidden), activation=activation), dim))
            if guides[:-1]:
                mirror = MLP(dim, list(hidden)[::-1], activation=activation)
                conditionals.append(DiagonalNormal(mirror, below))
            below = dim
        first_hidden = list(layers[0][0])[::-1]
        decoder = MLP(layers[0][1], first_hidden, data_dim, activation=activation)
        return cls(StandardNormal(below), conditionals, likelihood(decoder), guides, name=name)

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Sizes of z_1 … z_L."""
        return (self.encoder.latent_dim, *(g.latent_dim for g in self.upper_guides))

    @property
    def latent_dim(self) -> int:
        """Size of z_1, the decoder's input."""
        return self.encoder.latent_dim

    def model(self, x: torch.Tensor) -> None:
        r"""The model over a batch ``x`` of shape ``(B, *event)``:

        .. math:: p(z_L) \prod_l p(z_{l-1} \mid z_l)\, p(x \mid z_1).
        """
        self._register_params("prior", "conditionals", "likelihood")
        top = len(self.conditionals) + 1
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(f"z{top}", self.prior())
            for layer in range(top - 1, 0, -1):
                z = pyro.sample(f"z{layer}", self.conditionals[layer - 1](z))
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        r"""The guide over a batch ``x`` of shape ``(B, *event)``:

        .. math:: q(z_1 \mid x) \prod_l q(z_l \mid z_{l-1}).
        """
        self._register_params("encoder", "upper_guides")
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z1", self.encoder(x))
            for layer, guide in enumerate(self.upper_guides, start=2):
                z = pyro.sample(f"z{layer}", guide(z))

    @torch.no_grad()
    def sample_z(self, num_samples: int) -> torch.Tensor:
        """Ancestral draw down the hierarchy: z_1 of shape ``(num_samples, latent_dims[0])``."""
        _check_num_samples(num_samples)
        z = self.prior().sample((num_samples,))
        for conditional in reversed(self.conditionals):
            z = conditional(z).sample()
        return z
