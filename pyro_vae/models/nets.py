"""Plain-torch networks for encoders and decoders.

Every network here maps a tensor of shape ``(*batch, in)`` to ``(*batch, out)``
and broadcasts over any number of leading dimensions, so a decoder accepts
latents of shape ``(B, D)`` as well as ``(K, B, D)`` with K particles. Images are
handled flat: an image of shape ``(C, H, W)`` travels as a vector of ``C*H*W``
values, and the convolutional networks reshape internally. Sequences of shape
``(T, F)`` (T time steps of F features) are the exception: the recurrent
encoder reads ``(*batch, T, F)`` and the recurrent decoder writes
``(*batch, seq_len, out_features)``, so sequence data keep their two event
dimensions.

Each network exposes ``in_features`` and ``out_features`` so that guides and
likelihoods can size their heads without running the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pyro_vae._checks import (
    Activation,
    check_activation,
    check_net_input,
    check_positive_int,
    check_shape,
    check_sizes,
)
from pyro_vae.models._gated import GatedLinear
from pyro_vae.models._recurrent import CELLS, RecurrentDecoder, RecurrentEncoder

__all__ = ["MLP", "GatedLinear", "ConvEncoder", "ConvDecoder"]
__all__ += ["RecurrentEncoder", "RecurrentDecoder", "CELLS"]


class MLP(nn.Module):
    """Fully connected network ``in -> hidden[0] -> ... -> hidden[-1] [-> out]``.

    With ``out_features`` given, the last layer is linear (no activation): its
    output is a distribution's raw parameter, such as Bernoulli logits. Without
    it, the network ends in an activated hidden layer, the body of an encoder
    whose heads a guide adds.

    Arguments:
        in_features: size of the input's last dimension.
        hidden: sizes of the hidden layers (may be empty when ``out_features`` is set).
        out_features: size of a final linear layer, or ``None`` for none.
        activation: constructor of the nonlinearity between layers.
        gated: make each hidden layer a :class:`GatedLinear` unit instead of a linear
            layer and ``activation`` (the VampPrior paper's networks).

    Shapes:
        ``(*batch, in_features) -> (*batch, out_features)``.

    Example:
        >>> net = MLP(784, [200, 200], 50)
        >>> net(torch.zeros(5, 3, 784)).shape
        torch.Size([5, 3, 50])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int | None = None,
        activation: Activation = nn.ReLU,
        gated: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        hidden = check_sizes("hidden", hidden, allow_empty=True)
        if not isinstance(gated, bool):
            raise TypeError(f"gated must be True or False, got {gated!r}")
        if out_features is not None:
            check_positive_int("out_features", out_features)
        elif not hidden:
            raise ValueError("MLP needs at least one hidden layer or an out_features")
        check_activation(activation)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [GatedLinear(width, h)] if gated else [nn.Linear(width, h), activation()]
            width = h
        if out_features is not None:
            layers.append(nn.Linear(width, out_features))
            width = out_features
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The features of ``x``: ``(*batch, in_features) -> (*batch, out_features)``."""
        return self.layers(check_net_input(self, x, self.in_features))


def _image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """(channels, height, width): three positive integers."""
    return check_shape("image_shape (channels, height, width)", image_shape, 3)  # type: ignore[return-value]


def _downsampled(size: int, steps: int) -> list[int]:
    """Spatial sizes after each stride-2, kernel-3, padding-1 convolution: ceil(n / 2)."""
    sizes = [size]
    for _ in range(steps):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


class ConvEncoder(nn.Module):
    """Convolutional encoder body for images of any size.

    Each stage is a stride-2 3×3 convolution (halving height and width, rounding
    up), then the feature map is flattened and passed through one linear layer.

    Arguments:
        image_shape: ``(C, H, W)`` of the images.
        channels: output channels of each convolutional stage.
        out_features: width of the final linear layer.
        activation: constructor of the nonlinearity.

    Shapes:
        ``(*batch, C*H*W)`` or ``(*batch, C, H, W)`` ``-> (*batch, out_features)``.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        out_features: int = 256,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        self.image_shape = _image_shape(image_shape)
        channels = check_sizes("channels", channels, allow_empty=True)
        check_activation(activation)
        if not channels:
            raise ValueError("channels must name at least one convolutional stage")
        check_positive_int("out_features", out_features)
        c, h, w = self.image_shape
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [nn.Conv2d(c, ch, kernel_size=3, stride=2, padding=1), activation()]
            c = ch
        h_out, w_out = _downsampled(h, len(channels))[-1], _downsampled(w, len(channels))[-1]
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c * h_out * w_out, out_features), activation())
        self.in_features = math.prod(self.image_shape)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The features of images ``x``, flat ``(*batch, C*H*W)`` or ``(*batch, C, H, W)``:
        ``(*batch, out_features)``."""
        if check_net_input(self, x, None).shape[-3:] == self.image_shape:
            batch = x.shape[:-3]
        elif x.shape[-1] == self.in_features:
            batch = x.shape[:-1]
        else:
            raise ValueError(
                f"ConvEncoder expects inputs ending in {self.image_shape} or "
                f"({self.in_features},), got shape {tuple(x.shape)}"
            )
        h = self.convs(x.reshape(-1, *self.image_shape))
        return self.fc(h.flatten(1)).reshape(*batch, self.out_features)


class ConvDecoder(nn.Module):
    """Convolutional decoder mirroring :class:`ConvEncoder`, for images of any size.

    A linear layer maps the latent code to a small feature map, and stride-2
    transposed convolutions double it back, with output padding chosen per
    stage so the result is exactly ``H × W``. The last stage is linear: its
    output is the likelihood's raw parameter (logits or mean) of each pixel.

    Arguments:
        in_features: latent size.
        image_shape: ``(C, H, W)`` of the images to produce.
        channels: channels of the stages, coarsest first (mirror of the encoder's).
        activation: constructor of the nonlinearity.

    Shapes:
        ``(*batch, in_features) -> (*batch, C*H*W)`` (flat, like the data).
    """

    def __init__(
        self,
        in_features: int,
        image_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        self.image_shape = _image_shape(image_shape)
        channels = check_sizes("channels", channels, allow_empty=True)
        check_activation(activation)
        if not channels:
            raise ValueError("channels must name at least one convolutional stage")
        c_img, h, w = self.image_shape
        hs, ws = _downsampled(h, len(channels)), _downsampled(w, len(channels))
        self._start = (channels[0], hs[-1], ws[-1])
        self.fc = nn.Sequential(nn.Linear(in_features, math.prod(self._start)), activation())
        layers: list[nn.Module] = []
        outs = list(channels[1:]) + [c_img]
        for stage, (c_in, c_out) in enumerate(zip(channels, outs, strict=True)):
            target_h, target_w = hs[-2 - stage], ws[-2 - stage]
            src_h, src_w = hs[-1 - stage], ws[-1 - stage]
            # (n - 1) * 2 - 2 + 3 + p = 2n - 1 + p, so p = target - (2n - 1) in {0, 1}.
            padding = (target_h - (2 * src_h - 1), target_w - (2 * src_w - 1))
            layers.append(
                nn.ConvTranspose2d(
                    c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=padding
                )
            )
            if stage < len(channels) - 1:
                layers.append(activation())
        self.deconvs = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = math.prod(self.image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Flat images of raw parameters from ``z``:
        ``(*batch, in_features) -> (*batch, C*H*W)``."""
        batch = check_net_input(self, z, self.in_features).shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self._start)
        return self.deconvs(h).reshape(*batch, self.out_features)
