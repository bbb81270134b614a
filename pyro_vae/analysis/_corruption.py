"""Known damage to images, for denoising studies: noise, salt and pepper, dropout, occlusion.

Re-exported by :mod:`pyro_vae.applications`; see :func:`corrupt`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pyro_vae._checks import check_data, check_number, check_shape

__all__ = ["KINDS", "corrupt", "check_clean", "check_kind_and_level"]

#: the corruption kinds of :func:`corrupt`
KINDS: tuple[str, ...] = ("gaussian", "salt-and-pepper", "dropout", "occlusion")


def check_clean(x: torch.Tensor, name: str) -> torch.Tensor:
    """Images with values in [0, 1] (checked as data first)."""
    x = check_data(x, name)
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            f"{name} must hold images with values in [0, 1], found min {x.min().item():g}, "
            f"max {x.max().item():g}"
        )
    return x


def check_kind_and_level(
    kind: object, level: object, image_shape: object, x: torch.Tensor
) -> tuple[str, float]:
    """The kind, a level in its range, and for occlusion an image shape that fits ``x``."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    level = check_number("level", level)
    if kind == "gaussian":
        if not 0 <= level < math.inf:
            raise ValueError(
                f"level of 'gaussian' is the noise's standard deviation, a finite number >= 0, "
                f"got {level!r}"
            )
    elif not 0 <= level <= 1:
        raise ValueError(f"level of {kind!r} is a fraction of pixels in [0, 1], got {level!r}")
    if kind == "occlusion":
        if image_shape is None:
            raise ValueError(
                "kind 'occlusion' places a square patch and needs image_shape=(C, H, W)"
            )
        shape = check_shape("image_shape", image_shape, 3)
        if math.prod(shape) != x[0].numel():
            raise ValueError(
                f"image_shape {shape} holds {math.prod(shape)} pixels but each row of x "
                f"holds {x[0].numel()}"
            )
    return kind, level


def _check_generator(generator: object, x: torch.Tensor) -> torch.Generator | None:
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    if generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but x is on {x.device}; create it with "
            f"torch.Generator({str(x.device)!r})"
        )
    return generator


def _choose(x: torch.Tensor, fraction: float, generator: torch.Generator | None) -> torch.Tensor:
    """A mask of exactly round(fraction · D) pixels per image, uniformly chosen: x's shape."""
    flat = x.reshape(len(x), -1)
    count = round(fraction * flat.shape[1])
    keys = torch.rand(flat.shape, generator=generator, device=x.device)
    chosen = keys.topk(count, dim=1).indices
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=x.device)
    return mask.scatter_(1, chosen, True).reshape(x.shape)


def _occlusion_mask(
    x: torch.Tensor, fraction: float, image_shape: Sequence[int], generator: torch.Generator | None
) -> torch.Tensor:
    """One s × s patch per image, s = round(√(fraction · H · W)) ≤ min(H, W), all channels."""
    c, h, w = image_shape
    side = min(round(math.sqrt(fraction * h * w)), h, w)
    n = len(x)
    top = torch.randint(0, h - side + 1, (n, 1), generator=generator, device=x.device)
    left = torch.randint(0, w - side + 1, (n, 1), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top) & (rows < top + side)  # (N, H)
    in_cols = (cols >= left) & (cols < left + side)  # (N, W)
    patch = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    return patch[:, None].expand(n, c, h, w).reshape(x.shape)


def corrupt(
    x: torch.Tensor,
    kind: str,
    level: float,
    *,
    image_shape: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Damages images in a known way and says which pixels were damaged.

    Kinds, for images x with values in [0, 1]:

    - ``"gaussian"``: :math:`\tilde x = \operatorname{clamp}(x + \epsilon, 0, 1)`,
      :math:`\epsilon \sim \mathcal{N}(0, \mathtt{level}^2)` per pixel; ``level`` is the
      standard deviation (:math:`\ge 0`). The mask holds the pixels whose value changed
      (a pixel at 0 pushed below 0 stays 0).
    - ``"salt-and-pepper"``: exactly :math:`\operatorname{round}(\mathtt{level} \cdot D)`
      pixels of each image, chosen uniformly, are set to 0 or 1 with probability ½ each.
    - ``"dropout"``: exactly :math:`\operatorname{round}(\mathtt{level} \cdot D)` pixels of
      each image are set to 0 (missing).
    - ``"occlusion"``: a square patch of side
      :math:`s = \operatorname{round}(\sqrt{\mathtt{level} \cdot H \cdot W})` (capped at
      the image's smaller side), at a uniform random position in each image, is set
      to 0 in every channel: it covers about a fraction ``level`` of the image.

    For the last three kinds ``level`` is a fraction in [0, 1] and the mask holds
    the pixels replaced, whether or not the new value happens to equal the old.
    Level 0 leaves x unchanged with an empty mask.

    Arguments:
        x: images ``(N, *event_shape)``, values in [0, 1]; for ``"occlusion"``, each
            row holds a C × H × W image (flat or not).
        kind: one of :data:`KINDS`.
        level: the amount of damage, as above.
        image_shape: ``(C, H, W)``, needed for ``"occlusion"``.
        generator: the random generator to draw with, on x's device; the global one
            when ``None``. With a generator the global stream is neither used nor advanced,
            and the same seed gives the same damage.

    Returns:
        ``(corrupted, mask)``: the damaged images, x's shape and dtype, and a boolean
        tensor of x's shape, True where a pixel was damaged.
    """
    x = check_clean(x, "x")
    kind, level = check_kind_and_level(kind, level, image_shape, x)
    generator = _check_generator(generator, x)
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        corrupted = (x + level * noise).clamp(0, 1)
        return corrupted, corrupted != x
    if kind == "occlusion":
        mask = _occlusion_mask(x, level, image_shape, generator)
    else:
        mask = _choose(x, level, generator)
    if kind == "salt-and-pepper":
        coins = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
        fill = coins.to(x.dtype)
    else:
        fill = x.new_zeros(())
    return torch.where(mask, fill, x), mask
