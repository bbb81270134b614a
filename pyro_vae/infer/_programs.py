"""The checks at the door of every function that runs a model and a guide on data.

:func:`check_programs` is the check every path shares (objectives in SVI or
``fit``, evaluation). It runs the programs once *without* particles, so that a
program the particle plate would break (a global latent) gets a message, not a
shape error, and checks the contract: the model observes a site and the guide
none (else they were swapped), neither is a VAE object instead of its method,
every sample site lies inside the plate ``"data"`` over the batch, and every
latent of the model is sampled by the guide. It returns how deep the programs
nest their plates, as Pyro's ELBOs guess ``max_plate_nesting``.
:func:`check_programs_and_data` checks the data too, against the VAE where the
programs are a VAE's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

from pyro_vae._checks import check_data
from pyro_vae.infer._particles import data_plate_dim
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.vae import VAE

__all__ = [
    "check_programs", "check_programs_and_data", "check_on_one_example", "does_not_fit",
    "refuse_vae_object",
]  # fmt: skip


def check_programs_and_data(
    model: Any, guide: Any, x: object, *, guide_only: bool = False
) -> torch.Tensor:
    """Checks the programs and ``x``; for one VAE's own programs, ``x`` against the VAE:
    dtype, device, event shape and, unless ``guide_only``, the likelihood's support."""
    for name, program in (
        (("guide", guide),) if guide_only else (("model", model), ("guide", guide))
    ):
        if not callable(program):
            raise TypeError(f"{name} must be a Pyro program (a callable of x), got {program!r}")
    vae = getattr(guide, "__self__", None)
    if isinstance(vae, VAE) and (guide_only or getattr(model, "__self__", None) is vae):
        return check_vae_data(vae, x, "x", support=not guide_only)
    return check_data(x)


def refuse_vae_object(program: Any, role: str, caller: str) -> None:
    """Refuses a VAE passed as the ``role`` (``"model"`` or ``"guide"``) program.

    A VAE is a callable module, so it passes for a program, but calling it runs
    no Pyro program at all: what was meant is its method ``vae.model`` or ``vae.guide``.
    """
    if isinstance(program, VAE):
        raise ValueError(
            f"{caller}: the {role} is a VAE object, not a Pyro program; pass vae.{role}"
        )


def _devices(args: tuple, kwargs: dict[str, Any]) -> list[int]:
    """The CUDA devices of the tensor arguments, whose random streams a check must keep."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    return sorted({t.device.index or 0 for t in tensors if t.is_cuda})


def _trace_once(
    model: Callable[..., Any], guide: Callable[..., Any], args: tuple, kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    """The guide's trace and the model's replayed against it, both without particles.

    Leaves no trace outside: no gradients, no messages to outer handlers (such
    as SVI's parameter capture), and the random streams as they were.
    """
    with (
        torch.no_grad(),
        poutine.block(),
        torch.random.fork_rng(devices=_devices(args, kwargs)),
    ):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    return prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)


def sample_sites(trace: Any) -> list[dict[str, Any]]:
    """A trace's sample sites, without the subsample sites of its plates."""
    return [s for s in prune_subsample_sites(trace).nodes.values() if s["type"] == "sample"]


def _observed(sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The observed sites, without :func:`pyro.deterministic`'s records (observed only in form)."""
    return [s for s in sites if s["is_observed"] and not s["infer"].get("_deterministic")]


def _check_roles(
    guide_sites: list[dict[str, Any]], model_sites: list[dict[str, Any]], caller: str
) -> None:
    """Refuses a guide that observes a site or a model that observes none: swapped programs."""
    swapped = "were model and guide swapped? pass (model, guide)"
    if not _observed(model_sites):
        raise ValueError(f"{caller}: the model has no observed site; {swapped}")
    observed_in_guide = _observed(guide_sites)
    if observed_in_guide:
        name = observed_in_guide[0]["name"]
        raise ValueError(f"{caller}: the guide has an observed site {name!r}; {swapped}")


def check_programs(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple,
    kwargs: dict[str, Any],
    caller: str,
    *,
    program_error: Callable[[Exception], Exception] | None = None,
) -> int:
    """Checks a model and guide against pyro_vae's contract; returns their plate nesting.

    The programs run once on ``args`` without particles (pass one example for
    speed where the batch is large). That run is shared by every path, so the
    same program gets the same message in SVI, ``fit`` and evaluation.

    Arguments:
        model, guide: the Pyro programs.
        args, kwargs: their arguments.
        caller: what is checking, to start the messages (``"log_likelihood"``).
        program_error: turns an error the programs raise on ``args`` into the
            caller's own (such as one naming ``x``); by default it propagates.

    Returns:
        the depth of the deepest vectorised plate (at least 1): the
        ``max_plate_nesting`` the particle plate must stay left of.

    Raises:
        ValueError: a VAE object for a program, swapped programs, a sample site
            outside plate ``"data"``, or a latent of the model the guide does not sample.
    """
    refuse_vae_object(model, "model", caller)
    refuse_vae_object(guide, "guide", caller)
    try:
        guide_trace, model_trace = _trace_once(model, guide, args, kwargs)
    except (RuntimeError, IndexError, ValueError) as e:
        if program_error is None:
            raise
        raise program_error(e) from e
    sites = {
        program: [s for s in trace.nodes.values() if s["type"] == "sample"]
        for program, trace in (("guide", guide_trace), ("model", model_trace))
    }
    _check_roles(sites["guide"], sites["model"], caller)
    depth = 1
    for program, program_sites in sites.items():
        for site in program_sites:
            data_plate_dim(site, program)
            if program == "model" and not site["is_observed"] and site["name"] not in guide_trace:
                raise ValueError(
                    f"latent site {site['name']!r} of the model is not sampled by the guide"
                )
            frames = site["cond_indep_stack"]
            depth = max([depth] + [-f.dim for f in frames if f.vectorized])
    return depth


def does_not_fit(x: torch.Tensor, error: Exception) -> ValueError:
    """The error of programs that fail on ``x``, naming x and its shape."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ValueError(f"x of shape {tuple(x.shape)} does not fit the model and guide: {reason}")


def check_on_one_example(
    model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor, caller: str
) -> int:
    """Checks the programs on one example; returns their plate nesting (at least 1).

    :func:`check_programs` on ``x[:1]``, so that it costs one example's run; an
    error of the programs on that example is reported as x not fitting them.
    """
    return check_programs(
        model, guide, (x[:1],), {}, caller, program_error=lambda e: does_not_fit(x, e)
    )
