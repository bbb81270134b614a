"""Recurrent encoder and decoder for sequence data ``(*batch, seq_len, features)``.

Re-exported by :mod:`pyro_vae.models.nets`, which documents the networks' shared contract.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pyro_vae._checks import Activation, check_activation, check_net_input, check_positive_int

__all__ = ["CELLS", "RecurrentEncoder", "RecurrentDecoder"]

#: The recurrent cells by name, for the sequence encoder and decoder.
CELLS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


def _cell(cell: str) -> type[nn.RNNBase]:
    if not isinstance(cell, str) or cell.lower() not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(map(repr, CELLS))}, got {cell!r}")
    return CELLS[cell.lower()]


class RecurrentEncoder(nn.Module):
    """Recurrent encoder body for sequences ``(T, F)``: T time steps of F features.

    A GRU (or LSTM) runs over the time axis and the final hidden state of its
    last layer is the summary of the sequence; when bidirectional, the final
    states of both directions (the forward one after step T, the backward one
    after step 1) are concatenated. With ``out_features`` given, a linear layer
    and the activation follow. Any leading dimensions are flattened into one
    batch for the recurrent network and restored afterwards. An LSTM's cell
    state is not part of the output, only its hidden state.

    Arguments:
        in_features: F, the features per time step.
        hidden_size: width of the recurrent state (per direction).
        out_features: width of a final linear layer (then activated), or ``None``
            for none: the output is then the final hidden state(s) themselves, of
            width ``hidden_size`` (``2 * hidden_size`` when bidirectional).
        num_layers: stacked recurrent layers.
        bidirectional: also run the sequence backwards.
        cell: ``"gru"`` or ``"lstm"``.
        activation: constructor of the nonlinearity after the final linear layer.

    Shapes:
        ``(*batch, T, in_features) -> (*batch, out_features)``, for any T >= 1.

    Example:
        >>> net = RecurrentEncoder(2, hidden_size=16)
        >>> net(torch.zeros(5, 3, 12, 2)).shape
        torch.Size([5, 3, 32])
        >>> RecurrentEncoder(2, hidden_size=16, out_features=8, cell="lstm").out_features
        8
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int = 128,
        out_features: int | None = None,
        num_layers: int = 1,
        bidirectional: bool = True,
        cell: str = "gru",
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("num_layers", num_layers)
        if out_features is not None:
            check_positive_int("out_features", out_features)
        check_activation(activation)
        if not isinstance(bidirectional, bool):
            raise ValueError(f"bidirectional must be True or False, got {bidirectional!r}")
        self.rnn = _cell(cell)(
            in_features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        width = (2 if bidirectional else 1) * hidden_size
        self.fc = None
        if out_features is not None:
            self.fc = nn.Sequential(nn.Linear(width, out_features), activation())
            width = out_features
        self.cell = cell.lower()
        self.num_directions = 2 if bidirectional else 1
        self.in_features = in_features
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The features of sequences ``x``:
        ``(*batch, T, in_features) -> (*batch, out_features)``."""
        check_net_input(self, x, None)
        if x.dim() < 2 or x.shape[-1] != self.in_features or x.shape[-2] < 1:
            raise ValueError(
                f"RecurrentEncoder expects inputs of shape (*batch, T, {self.in_features}) "
                f"with T >= 1, got shape {tuple(x.shape)}"
            )
        batch, steps = x.shape[:-2], x.shape[-2]
        _, h_n = self.rnn(x.reshape(math.prod(batch), steps, self.in_features))
        if isinstance(h_n, tuple):  # an LSTM returns (h_n, c_n)
            h_n = h_n[0]
        # h_n: (num_layers * directions, N, H); keep the last layer's directions.
        last = h_n[-self.num_directions :]
        h = last.transpose(0, 1).reshape(last.shape[1], -1)
        if self.fc is not None:
            h = self.fc(h)
        return h.reshape(*batch, self.out_features)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, out_features={self.out_features}"


class RecurrentDecoder(nn.Module):
    """Recurrent decoder: a latent code to raw parameters of a sequence ``(seq_len, F)``.

    z sets the initial hidden state of every layer through a linear layer and
    tanh (an LSTM's initial cell state is zero), and the recurrent network is
    fed z itself at every one of the ``seq_len`` steps. This decoder is not
    autoregressive: no step sees the previous outputs, so the steps of x are
    independent given z and a factorised likelihood stays exact. A linear layer
    maps each hidden state to the ``out_features`` raw parameters (logits or
    means) of that step.

    ``out_features`` is the size of one step, not of the whole output: the
    likelihood built on this network has event shape ``(seq_len, out_features)``,
    the shape of one sequence of the data ``(N, seq_len, out_features)``.

    Arguments:
        in_features: latent size.
        seq_len: T, the number of time steps produced.
        out_features: raw parameters per time step (the data's features F).
        hidden_size: width of the recurrent state.
        num_layers: stacked recurrent layers.
        cell: ``"gru"`` or ``"lstm"``.

    Shapes:
        ``(*batch, in_features) -> (*batch, seq_len, out_features)``; the batch may
        hold particles, ``(K, B, in_features) -> (K, B, seq_len, out_features)``.

    Example:
        >>> net = RecurrentDecoder(4, seq_len=12, out_features=2, hidden_size=16)
        >>> net(torch.zeros(5, 3, 4)).shape
        torch.Size([5, 3, 12, 2])
    """

    def __init__(
        self,
        in_features: int,
        seq_len: int,
        out_features: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "gru",
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("seq_len", seq_len)
        check_positive_int("out_features", out_features)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("num_layers", num_layers)
        self.rnn = _cell(cell)(in_features, hidden_size, num_layers=num_layers, batch_first=True)
        self.init = nn.Sequential(nn.Linear(in_features, num_layers * hidden_size), nn.Tanh())
        self.out = nn.Linear(hidden_size, out_features)
        self.cell = cell.lower()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.in_features = in_features
        self.seq_len = seq_len
        self.out_features = out_features

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Raw parameters of a sequence from ``z``:
        ``(*batch, in_features) -> (*batch, seq_len, out_features)``."""
        if check_net_input(self, z, None).dim() < 1 or z.shape[-1] != self.in_features:
            raise ValueError(
                f"RecurrentDecoder expects inputs of shape (*batch, {self.in_features}), "
                f"got shape {tuple(z.shape)}"
            )
        batch = z.shape[:-1]
        flat = z.reshape(math.prod(batch), self.in_features)
        n = flat.shape[0]
        # (N, layers * H) -> (layers, N, H), the layout the recurrent network expects.
        h0 = self.init(flat).reshape(n, self.num_layers, self.hidden_size).transpose(0, 1)
        h0 = h0.contiguous()
        state = (h0, torch.zeros_like(h0)) if self.cell == "lstm" else h0
        inputs = flat.unsqueeze(1).expand(n, self.seq_len, self.in_features)
        hidden, _ = self.rnn(inputs, state)
        return self.out(hidden).reshape(*batch, self.seq_len, self.out_features)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, seq_len={self.seq_len}, out_features={self.out_features}"
