r"""Applications of a trained VAE: anomaly detection by likelihood, and denoising.

**Anomaly detection.** A VAE trained on "normal" data assigns its data a high
log-likelihood; data unlike it should get a low one. The anomaly score of x is

* :math:`s(x) = -\log \hat p(x)` (``score="log-likelihood"``, importance sampling, K
  samples), or
* :math:`s(x) = -\mathrm{ELBO}(x)` (``score="elbo"``, an upper bound on :math:`-\log p(x)`),

higher meaning more anomalous. How well a score separates normal from anomalous
data is read from the ROC curve, the true-positive rate against the
false-positive rate as the threshold falls, and its area, the AUC, which equals
the Mann–Whitney probability
:math:`P(s(\text{anomalous}) > s(\text{normal})) + \tfrac{1}{2} P(\text{equal})`. Beware
that likelihood also tracks the complexity of an input: a model can give simple
out-of-distribution inputs a *higher* likelihood than its own data (Nalisnick et
al. 2019).

**Denoising.** :func:`corrupt` damages images in known ways and returns the mask
of damaged pixels; :func:`denoise` maps a damaged image :math:`\tilde x` to the decoder's
mean at the guide's location, :math:`\mathbb{E}[x \mid z = \operatorname{loc} q(z \mid \tilde x)]`,
or, given the mask of missing pixels, imputes them by iterated reconstruction;
:func:`denoising_errors` tabulates the mean squared errors against the clean images.

References:
    1. E. Nalisnick, A. Matsukawa, Y. W. Teh, D. Gorur, B. Lakshminarayanan. Do deep
       generative models know what they don't know? ICLR 2019.
    2. D. J. Rezende, S. Mohamed, D. Wierstra. Stochastic backpropagation and
       approximate inference in deep generative models. ICML 2014 (missing-data imputation).
    3. H. B. Mann, D. R. Whitney. On a test of whether one of two random variables is
       stochastically larger than the other. Ann. Math. Statist. 18(1), 1947.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from pyro_vae._checks import check_positive_int, check_seed
from pyro_vae.analysis._corruption import KINDS, check_clean, check_kind_and_level, corrupt
from pyro_vae.infer import evaluate
from pyro_vae.models._data_checks import check_vae_data
from pyro_vae.models.vae import VAE

__all__ = [
    "SCORES",
    "KINDS",
    "anomaly_scores",
    "roc_curve",
    "roc_auc",
    "corrupt",
    "denoise",
    "denoising_errors",
    "DENOISING_COLUMNS",
]

#: the anomaly scores :func:`anomaly_scores` computes
SCORES: tuple[str, ...] = ("log-likelihood", "elbo")

#: the keys of each row of :func:`denoising_errors`
DENOISING_COLUMNS: tuple[str, ...] = (
    "kind",
    "level",
    "changed_fraction",
    "corrupted_mse",
    "denoised_mse",
    "imputed_mse",
)


# --------------------------------------------------------------------------- anomaly scores


def anomaly_scores(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    *,
    num_samples: int = 100,
    score: str = "log-likelihood",
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Anomaly scores, higher = more anomalous: -log p̂(x) or -ELBO(x), in nats.

    ``"log-likelihood"`` is :math:`-\log \tfrac{1}{K} \sum_k w_k` with
    :math:`w_k = p(x, z_k) / q(z_k \mid x)`, :math:`z_k \sim q(z \mid x)`
    (:func:`pyro_vae.evaluate.log_likelihood`); ``"elbo"`` is
    :math:`-\tfrac{1}{K} \sum_k \log w_k` (:func:`pyro_vae.evaluate.elbo`), which exceeds
    :math:`-\log p(x)` by :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))`, so it also flags
    inputs the guide encodes badly. Any Pyro
    model/guide pair with pyro_vae's site names works, as in :mod:`pyro_vae.evaluate`.

    Arguments:
        model, guide: Pyro programs taking a batch ``x``.
        x: data ``(N, *event_shape)`` in the likelihood's support.
        num_samples: K, importance samples per example.
        score: one of :data:`SCORES`.
        batch_size: examples per evaluation pass (default: bounded by memory).

    Returns:
        a tensor of shape ``(N,)``.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(map(repr, SCORES))}, got {score!r}")
    num_samples = check_positive_int("num_samples", num_samples)
    if score == "log-likelihood":
        log_px = evaluate.log_likelihood(model, guide, x, num_samples, batch_size=batch_size)
        return -log_px
    return -evaluate.elbo(model, guide, x, num_samples, batch_size=batch_size)


# --------------------------------------------------------------------------- ROC analysis


def _check_scores(name: str, scores: object) -> torch.Tensor:
    """Scores as a 1-D float64 CPU tensor: non-empty, real, without NaN (±inf allowed)."""
    if isinstance(scores, torch.Tensor):
        if scores.dtype == torch.bool or scores.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {scores.dtype}")
        values = scores.detach().to("cpu", torch.float64)
    else:
        try:
            values = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{name} must be a 1-D tensor or sequence of real numbers, got "
                f"{type(scores).__name__}"
            ) from e
    if values.dim() != 1:
        raise ValueError(
            f"{name} must be 1-D (one score per example), got shape {tuple(values.shape)}"
        )
    if values.numel() == 0:
        raise ValueError(f"{name} must hold at least one score, got none")
    nan = int(torch.isnan(values).sum())
    if nan:
        raise ValueError(f"{name} holds {nan} NaN scores")
    return values


def roc_curve(
    normal_scores: torch.Tensor | Sequence[float], anomalous_scores: torch.Tensor | Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The ROC curve of flagging ``score >= threshold`` as anomalous (the positive class).

    With :math:`n_0` normal and :math:`n_1` anomalous scores, for every distinct score t taken
    as a threshold, from the highest down,

    .. math::

        \mathrm{FPR}(t) = \#\{\text{normal} \ge t\} / n_0, \qquad
        \mathrm{TPR}(t) = \#\{\text{anomalous} \ge t\} / n_1.

    Tied scores form one threshold, so a tie between the classes is one diagonal
    segment. The curve starts at (0, 0), threshold +inf (flag nothing), and ends at
    (1, 1), the lowest score (flag everything). Its trapezoid area is :func:`roc_auc`.
    :math:`O(n \log n)` in :math:`n = n_0 + n_1`.

    Arguments:
        normal_scores: ``(n₀,)`` scores of normal examples.
        anomalous_scores: ``(n₁,)`` scores of anomalous examples.

    Returns:
        ``(false_positive_rate, true_positive_rate, thresholds)``, float64 tensors of
        shape ``(T + 1,)`` for T distinct scores; thresholds decrease.
    """
    normal = _check_scores("normal_scores", normal_scores)
    anomalous = _check_scores("anomalous_scores", anomalous_scores)
    scores = torch.cat([anomalous, normal])
    positive = torch.cat([torch.ones_like(anomalous), torch.zeros_like(normal)])
    order = torch.argsort(scores, descending=True, stable=True)
    scores, positive = scores[order], positive[order]
    true_positives = positive.cumsum(0)
    false_positives = (1 - positive).cumsum(0)
    # The last position of each run of equal scores closes one threshold.
    last = torch.nonzero(scores[1:] != scores[:-1]).flatten()
    last = torch.cat([last, last.new_tensor([len(scores) - 1])])
    zero = scores.new_zeros(1)
    fpr = torch.cat([zero, false_positives[last] / len(normal)])
    tpr = torch.cat([zero, true_positives[last] / len(anomalous)])
    thresholds = torch.cat([scores.new_full((1,), math.inf), scores[last]])
    return fpr, tpr, thresholds


def roc_auc(
    normal_scores: torch.Tensor | Sequence[float], anomalous_scores: torch.Tensor | Sequence[float]
) -> float:
    r"""The area under the ROC curve, exactly: :math:`P(s_1 > s_0) + \tfrac{1}{2} P(s_1 = s_0)`.

    :math:`s_1` is a random anomalous score and :math:`s_0` a random normal one. Computed from
    the Mann–Whitney U statistic with mid-ranks for ties: with :math:`R_1` the sum of the
    anomalous scores' ranks among all :math:`n_0 + n_1` scores,

    .. math:: \mathrm{AUC} = \frac{R_1 - n_1 (n_1 + 1) / 2}{n_0 n_1},

    in :math:`O(n \log n)`. 1 is perfect separation, 0.5 chance (or all scores equal), 0
    perfectly reversed.

    Arguments:
        normal_scores: ``(n₀,)`` scores of normal examples.
        anomalous_scores: ``(n₁,)`` scores of anomalous examples.
    """
    normal = _check_scores("normal_scores", normal_scores)
    anomalous = _check_scores("anomalous_scores", anomalous_scores)
    scores = torch.cat([anomalous, normal])
    sorted_scores, order = torch.sort(scores, stable=True)
    _, counts = torch.unique_consecutive(sorted_scores, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)  # 1-based rank of each tie group's last member
    mid_ranks = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = torch.repeat_interleave(mid_ranks, counts)
    n1, n0 = len(anomalous), len(normal)
    u = ranks[:n1].sum().item() - n1 * (n1 + 1) / 2
    return u / (n0 * n1)


# --------------------------------------------------------------------------- denoising


def _check_mask(mask: object, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        what = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a boolean tensor (True = missing pixel), got {what}")
    if mask.shape != x.shape:
        raise ValueError(
            f"mask must have the shape of x, {tuple(x.shape)}, got {tuple(mask.shape)}"
        )
    if mask.device != x.device:
        raise ValueError(f"mask is on {mask.device} but x is on {x.device}")
    return mask


def denoise(
    vae: VAE, x: torch.Tensor, *, mask: torch.Tensor | None = None, num_iterations: int = 1
) -> torch.Tensor:
    r"""Cleans damaged data with a VAE: a reconstruction, or an imputation of missing pixels.

    Without ``mask``, every pixel is replaced by the reconstruction
    :math:`\mathbb{E}[x \mid z = \operatorname{loc} q(z \mid \tilde x)]`,
    :meth:`~pyro_vae.VAE.reconstruct`: the decoder's mean at the guide's location
    (its mean for Gaussian guides). The VAE knows the data's manifold, so
    reconstructing through the bottleneck projects damage away as far as the
    guide, which never saw damaged inputs, maps :math:`\tilde x` near the code of the clean
    image.

    With ``mask`` (True = missing or damaged), the observed pixels are kept and only
    the masked ones are filled, ``num_iterations`` times:

    .. math::

        x^{(0)} = \tilde x, \qquad
        x^{(t+1)} = \operatorname{where}(\mathrm{mask},
        \mathbb{E}[x \mid z = \operatorname{loc} q(z \mid x^{(t)})], \tilde x).

    This is the iterated reconstruction of Rezende et al. (2014, sec. 5.2) with the
    decoder's mean and the guide's location in place of samples: a deterministic
    fixed-point iteration rather than a Markov chain, which converges to one
    plausible completion instead of sampling completions. The missing pixels start
    from their values in :math:`\tilde x` (0 for dropout and occlusion).

    A Bernoulli VAE's guide reads grey levels, so x may hold any values in [0, 1].

    Arguments:
        vae: a trained :class:`~pyro_vae.VAE`.
        x: damaged data ``(N, *event_shape)`` of the VAE's dtype, device and event shape.
        mask: a boolean tensor of ``x``'s shape marking the missing pixels.
        num_iterations: imputation sweeps (needs ``mask`` when above 1).

    Returns:
        the decoder's means (probabilities for Bernoulli), a tensor of ``x``'s shape.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a pyro_vae.VAE, got {type(vae).__name__}")
    x = check_vae_data(vae, x, "x", support=False)
    num_iterations = check_positive_int("num_iterations", num_iterations)
    if mask is None:
        if num_iterations > 1:
            raise ValueError(
                "num_iterations > 1 imputes missing pixels and needs their mask (mask=); "
                "without one, denoise reconstructs every pixel once"
            )
        return vae.reconstruct(x)
    mask = _check_mask(mask, x)
    filled = x
    for _ in range(num_iterations):
        filled = torch.where(mask, vae.reconstruct(filled), x)
    return filled


def _check_kinds_and_levels(
    kinds: object, levels: object, image_shape: object, clean: torch.Tensor
) -> tuple[list[str], list[float]]:
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise ValueError(f"kinds must be a non-empty list drawn from {KINDS}, got {kinds!r}")
    if isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(f"levels must be a non-empty list of numbers, got {levels!r}")
    checked = [
        check_kind_and_level(kind, level, image_shape, clean) for kind in kinds for level in levels
    ]
    return list(kinds), sorted({level for _, level in checked})


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().item()


def denoising_errors(
    vae: VAE,
    clean: torch.Tensor,
    kinds: Sequence[str],
    levels: Sequence[float],
    *,
    image_shape: Sequence[int] | None = None,
    seed: int = 0,
    num_iterations: int = 10,
) -> list[dict[str, Any]]:
    r"""Mean squared errors of corrupted, denoised and imputed images against the clean ones.

    For every kind and level, ``clean`` is corrupted (:func:`corrupt`, with a
    generator seeded by ``seed``, the same draws for every cell) and then

    - ``corrupted_mse`` = mean over pixels and images of :math:`(\tilde x - x)^2`,
    - ``denoised_mse``: the same for :func:`denoise` without a mask (blind),
    - ``imputed_mse``: for :func:`denoise` given the mask (observed pixels kept,
      ``num_iterations`` sweeps); the mask is known for missing pixels (dropout,
      occlusion) and an oracle for the noise kinds. Imputation discards the masked
      pixels' values: right for missing and salt-and-pepper pixels, which carry
      nothing, but for light Gaussian noise it throws away information and can end
      worse than the corrupted images,
    - ``changed_fraction``: the fraction of pixels in the mask.

    Level 0 leaves the images intact, so its ``denoised_mse`` is the VAE's own
    reconstruction error: the floor that denoising cannot go below.

    Arguments:
        vae: a trained :class:`~pyro_vae.VAE`.
        clean: images ``(N, *event_shape)`` with values in [0, 1], of the VAE's dtype.
        kinds: corruption kinds from :data:`KINDS`.
        levels: levels applied to every kind (see :func:`corrupt` for their ranges).
        image_shape: ``(C, H, W)``, needed for ``"occlusion"``.
        seed: seed of the corruption draws.
        num_iterations: imputation sweeps.

    Returns:
        one dict per (kind, level) with the keys :data:`DENOISING_COLUMNS`, kinds in the
        order given, levels ascending.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a pyro_vae.VAE, got {type(vae).__name__}")
    clean = check_clean(check_vae_data(vae, clean, "clean", support=False), "clean")
    kinds, levels = _check_kinds_and_levels(kinds, levels, image_shape, clean)
    check_seed(seed)
    num_iterations = check_positive_int("num_iterations", num_iterations)
    rows = []
    for kind in kinds:
        for level in levels:
            generator = torch.Generator(clean.device).manual_seed(seed)
            corrupted, mask = corrupt(
                clean, kind, level, image_shape=image_shape, generator=generator
            )
            denoised = denoise(vae, corrupted)
            imputed = denoise(vae, corrupted, mask=mask, num_iterations=num_iterations)
            rows.append(
                {
                    "kind": kind,
                    "level": level,
                    "changed_fraction": mask.float().mean().item(),
                    "corrupted_mse": _mse(corrupted, clean),
                    "denoised_mse": _mse(denoised, clean),
                    "imputed_mse": _mse(imputed, clean),
                }
            )
    return rows
