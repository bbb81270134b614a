r"""Training objectives by name, each a :class:`pyro.infer.ELBO` for :class:`pyro.infer.SVI`.

================== ===================================================================
name               estimator (:mod:`pyro_vae.estimators`)
================== ===================================================================
``elbo``           :math:`\mathbb{E}_q[\log p(x, z) - \log q(z \mid x)]`, KL by Monte Carlo
                   (Trace_ELBO's)
``analytic-kl``    :math:`\mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x) \,\|\, p(z))`,
                   KL in closed form where one exists and is valid (TraceMeanField_ELBO's);
                   Monte Carlo elsewhere
``score-function`` the ELBO with REINFORCE gradients for the guide (a leave-one-out
                   baseline), no reparameterisation
``stl``            the ELBO (or ``bound=iwae``) with sticking-the-landing gradients
``iwae``           :math:`\log \frac{1}{K} \sum_k p(x, z_k) / q(z_k \mid x)` per example
``renyi``          :math:`\frac{1}{1 - \alpha} \log \frac{1}{K}
                   \sum_k \left(p(x, z_k) / q(z_k \mid x)\right)^{1 - \alpha}`, option ``alpha``
``iwae-dreg``      the IWAE bound with doubly reparameterised gradients
================== ===================================================================

Options of every objective: ``beta`` (weight of the KL term), ``warmup_steps``
(β ramps up linearly over that many training steps) and, for the ELBO family,
``free_bits`` (nats per latent dimension). ``elbo`` also takes ``jit=True``:
Pyro's ``JitTrace_ELBO``, measured 16% faster per step than the plain estimator
on an MLP VAE (BENCHMARKS.md); its other JIT variants were slower
(``JitTraceMeanField_ELBO`` 3.1× the plain step), so none is offered for them.

Particles are vectorised: K samples are drawn in one pass inside an extra
leading plate, never in a Python loop.

On the command line an objective is written ``name[:option=value,...]`` with
``k`` for the number of particles, for example ``iwae:k=50`` or
``renyi:k=5,alpha=0.5``; :func:`parse` reads that form.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyro.infer

from pyro_vae._checks import check_int_at_least
from pyro_vae.infer import estimators

__all__ = ["OBJECTIVES", "DEFAULT_OBJECTIVE", "ObjectiveSpec", "make", "parse", "parse_list"]

_CLASSES: dict[str, type[estimators.ParticleELBO]] = {
    cls.objective_name: cls
    for cls in (
        estimators.MonteCarloELBO,
        estimators.AnalyticKLELBO,
        estimators.ScoreFunctionELBO,
        estimators.STL,
        estimators.IWAE,
        estimators.RenyiELBO,
        estimators.DReG,
    )
}
OBJECTIVES: tuple[str, ...] = tuple(_CLASSES)
#: The objective :func:`pyro_vae.fit` trains with when none is named.
DEFAULT_OBJECTIVE = "analytic-kl"

# How option values are read from text, and the short names the command line uses.
_OPTION_TYPES: dict[str, type] = {
    "alpha": float,
    "beta": float,
    "warmup_steps": int,
    "free_bits": float,
    "bound": str,
    "max_plate_nesting": int,
    "jit": lambda text: {"true": True, "1": True, "false": False, "0": False}[text.lower()],
}
_ALIASES = {"k": "num_particles", "warmup": "warmup_steps"}


def _options_of(name: str) -> list[str]:
    cls = _CLASSES[name]
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is pyro.infer.ELBO:
            break
        if "__init__" in vars(klass):
            for param in inspect.signature(klass.__init__).parameters.values():
                if param.kind == param.KEYWORD_ONLY and param.name not in names:
                    names.append(param.name)
    return names


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or name not in _CLASSES:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}")
    return name


def _jit_elbo(name: str, num_particles: int, options: dict[str, Any]) -> pyro.infer.ELBO:
    """Pyro's JitTrace_ELBO for ``elbo:jit=true``, the one JIT variant that measured faster."""
    if name != "elbo":
        raise ValueError(
            f"jit=True is offered for 'elbo' only; {name!r} compiled was slower than plain "
            "(see BENCHMARKS.md)"
        )
    extra = sorted(k for k in options if k != "max_plate_nesting")
    if extra:
        raise ValueError(f"jit=True runs Pyro's JitTrace_ELBO, which has no option {extra[0]!r}")
    check_int_at_least("num_particles", num_particles, low=1)
    return pyro.infer.JitTrace_ELBO(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=_pyro_nesting(options.get("max_plate_nesting"), num_particles),
        ignore_jit_warnings=True,
    )


def _pyro_nesting(given: Any, num_particles: int) -> float:
    """pyro_vae's ``max_plate_nesting`` in Pyro's terms, which count the particle plate in.

    ``None`` becomes Pyro's ``inf``: guessed from the programs on the first step.
    """
    if given is None:
        return float("inf")
    check_int_at_least("max_plate_nesting", given, low=1)
    return given + 1 if num_particles > 1 else given


def make(
    name: str = DEFAULT_OBJECTIVE, num_particles: int = 1, *, jit: bool = False, **options: Any
) -> pyro.infer.ELBO:
    """Builds the objective called ``name`` with ``num_particles`` vectorised samples.

    Arguments:
        name: one of :data:`OBJECTIVES`.
        num_particles: K, the number of samples of z per data point.
        jit: ``elbo`` only: Pyro's compiled ``JitTrace_ELBO`` (no other options).
        options: ``beta``, ``warmup_steps``, ``free_bits``, ``max_plate_nesting``
            (plates the programs nest; by default found from them on the first
            step, so a model with a plate nested in ``"data"`` needs nothing more),
            and per objective ``alpha`` (``renyi``) or ``bound`` (``stl``).

    Returns:
        a :class:`pyro.infer.ELBO` whose loss is the negative bound, in nats.

    Example:
        >>> make("iwae", num_particles=5).num_particles
        5
        >>> make("renyi", 5, alpha=0.5).alpha
        0.5
    """
    name = _check_name(name)
    if jit:
        return _jit_elbo(name, num_particles, options)
    allowed = _options_of(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"objective {name!r} has no option {unknown[0]!r}; its options are: "
            f"{', '.join(allowed)}"
        )
    return _CLASSES[name](num_particles, **options)


@dataclass(frozen=True)
class ObjectiveSpec:
    """An objective by name, particle count and options: what :func:`parse` reads.

    Attributes:
        name: one of :data:`OBJECTIVES`.
        num_particles: K.
        options: keyword options for :func:`make`.
    """

    name: str
    num_particles: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    def make(self, **overrides: Any) -> pyro.infer.ELBO:
        """Builds the objective; ``overrides`` replace options (``num_particles`` too)."""
        options = {**self.options, **overrides}
        num_particles = options.pop("num_particles", self.num_particles)
        return make(self.name, num_particles, **options)

    @property
    def label(self) -> str:
        """The spec in the command line's form (``iwae:k=5``), a unique and readable name."""
        parts = [f"k={self.num_particles}"] if self.num_particles != 1 else []
        parts += [f"{k}={v}" for k, v in sorted(self.options.items())]
        return self.name + (":" + ",".join(parts) if parts else "")


def _convert(key: str, text: str, spec: str) -> Any:
    kind = int if key == "num_particles" else _OPTION_TYPES.get(key, str)
    try:
        return kind(text)
    except (ValueError, KeyError):
        expected = "true or false" if key == "jit" else kind.__name__
        raise ValueError(f"in objective {spec!r}: {key} must be {expected}, got {text!r}") from None


def parse(spec: str) -> ObjectiveSpec:
    """Reads ``name[:option=value,...]``, such as ``iwae:k=50`` or ``renyi:k=5,alpha=0.5``.

    Options are checked against the objective (the object is built once to check
    their values too), so a bad spec fails here with a message naming it.

    Example:
        >>> parse("iwae-dreg:k=5")
        ObjectiveSpec(name='iwae-dreg', num_particles=5, options={})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"an objective must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = _check_name(name.strip())
    options: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in re.split(r"[,:]", rest))):
        key, eq, value = item.partition("=")
        key = _ALIASES.get(key.strip(), key.strip())
        if not eq or not value.strip():
            raise ValueError(f"in objective {spec!r}: expected option=value, got {item!r}")
        if key in options:
            raise ValueError(f"in objective {spec!r}: option {key!r} is given twice")
        options[key] = _convert(key, value.strip(), spec)
    num_particles = options.pop("num_particles", 1)
    result = ObjectiveSpec(name, num_particles, options)
    result.make()
    return result


def parse_list(text: str | Sequence[str | ObjectiveSpec]) -> list[ObjectiveSpec]:
    """Reads a comma-separated list of specs: ``elbo,iwae:k=5,renyi:k=5,alpha=0.5``.

    An item that is ``option=value`` belongs to the objective before it. A list
    of specs (strings or :class:`ObjectiveSpec`) is accepted too. No objective
    may appear twice.

    Example:
        >>> [s.label for s in parse_list("elbo,renyi:k=5,alpha=0.5,iwae:k=5")]
        ['elbo', 'renyi:k=5,alpha=0.5', 'iwae:k=5']
    """
    if isinstance(text, str):
        specs = [parse(g) for g in _split_specs(text)]
    elif isinstance(text, Sequence) and text:
        specs = [parse(item) if isinstance(item, str) else item for item in text]
        for spec in specs:
            if not isinstance(spec, ObjectiveSpec):
                raise TypeError(f"objectives must be specs like 'iwae:k=5', got {spec!r}")
    else:
        raise ValueError(f"objectives must name at least one objective, got {text!r}")
    labels = [s.label for s in specs]
    for label in labels:
        if labels.count(label) > 1:
            raise ValueError(f"objective {label!r} is listed twice")
    return specs


def _split_specs(text: str) -> list[str]:
    if not text.strip():
        raise ValueError(f"objectives must be a non-empty comma-separated list, got {text!r}")
    groups: list[str] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise ValueError(f"empty item in objectives {text!r}")
        head = item.partition(":")[0]
        if "=" in head and groups:
            groups[-1] += "," + item
        else:
            groups.append(item)
    return groups
