"""Networks: shapes, broadcasting over leading dimensions, image sizes, sequences, gradients,
save/load, and a sequence VAE trained end to end."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import pyro_vae
from pyro_vae.models.nets import MLP, ConvDecoder, ConvEncoder, RecurrentDecoder, RecurrentEncoder

IMAGE_SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8), (1, 7, 9), (2, 5, 5), (1, 1, 1)]


def test_mlp_broadcasts_over_leading_dimensions():
    net = MLP(10, [8, 6], 4)
    x = torch.randn(5, 3, 10)
    out = net(x)
    assert out.shape == (5, 3, 4)
    torch.testing.assert_close(out[2, 1], net(x[2, 1]))


def test_mlp_without_output_layer_ends_in_the_activation():
    net = MLP(10, [8], activation=nn.ReLU)
    assert net.out_features == 8
    assert (net(torch.randn(50, 10)) >= 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"in_features": 0, "hidden": [4]}, "in_features"),
        ({"in_features": 3, "hidden": [4, -1]}, r"hidden\[1\]"),
        ({"in_features": 3, "hidden": []}, "at least one hidden layer"),
        ({"in_features": 3, "hidden": [2], "out_features": 0}, "out_features"),
    ],
)
def test_mlp_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_conv_pair_handles_any_image_size(shape):
    encoder, decoder = ConvEncoder(shape, out_features=20), ConvDecoder(7, shape)
    size = shape[0] * shape[1] * shape[2]
    flat = torch.randn(4, 3, size)
    assert encoder(flat).shape == (4, 3, 20)
    torch.testing.assert_close(encoder(flat.reshape(4, 3, *shape)), encoder(flat))
    assert decoder(torch.randn(4, 3, 7)).shape == (4, 3, size)


def test_conv_encoder_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(1, 28, 28\) or \(784,\)"):
        ConvEncoder((1, 28, 28))(torch.randn(2, 100))


def test_conv_rejects_bad_image_shape():
    with pytest.raises(ValueError, match="image_shape"):
        ConvDecoder(4, (28, 28))


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLP(6, [5], 3),
        lambda: ConvEncoder((1, 6, 6)),
        lambda: ConvDecoder(3, (1, 6, 6)),
        lambda: RecurrentEncoder(3, hidden_size=5, out_features=4, num_layers=2),
        lambda: RecurrentEncoder(3, hidden_size=5, cell="lstm"),
        lambda: RecurrentDecoder(3, seq_len=4, out_features=2, hidden_size=5, num_layers=2),
        lambda: RecurrentDecoder(3, seq_len=4, out_features=2, hidden_size=5, cell="lstm"),
    ],
)
def test_every_parameter_gets_a_gradient_and_state_round_trips(make):
    net = make()
    shape = (2, 7, net.in_features) if isinstance(net, RecurrentEncoder) else (2, net.in_features)
    x = torch.randn(shape)
    net(x).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    copy = make()
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(copy(x), net(x))


# --- recurrent networks: sequences x of shape (*batch, T, F) ---------------------------------

CELLS = ["gru", "lstm"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch", [(5,), (4, 3), (2, 3, 2)])
def test_recurrent_pair_shapes_for_any_number_of_leading_dims(batch, cell):
    encoder = RecurrentEncoder(3, hidden_size=6, out_features=5, cell=cell)
    decoder = RecurrentDecoder(4, seq_len=7, out_features=3, hidden_size=6, cell=cell)
    assert encoder(torch.randn(*batch, 9, 3)).shape == (*batch, 5)
    assert decoder(torch.randn(*batch, 4)).shape == (*batch, 7, 3)


def test_recurrent_pair_accepts_inputs_without_a_batch():
    assert RecurrentEncoder(3, hidden_size=6)(torch.randn(9, 3)).shape == (12,)
    assert RecurrentDecoder(4, seq_len=7, out_features=3)(torch.randn(4)).shape == (7, 3)


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_pair_broadcasting_matches_a_loop_over_the_leading_dim(cell):
    encoder = RecurrentEncoder(3, hidden_size=6, num_layers=2, cell=cell)
    decoder = RecurrentDecoder(4, seq_len=5, out_features=3, hidden_size=6, num_layers=2, cell=cell)
    x, z = torch.randn(4, 3, 8, 3), torch.randn(4, 3, 4)
    torch.testing.assert_close(encoder(x), torch.stack([encoder(x_k) for x_k in x]))
    torch.testing.assert_close(decoder(z), torch.stack([decoder(z_k) for z_k in z]))
    # and each row of a batch is computed on its own
    torch.testing.assert_close(encoder(x)[2, 1], encoder(x[2, 1]))
    torch.testing.assert_close(decoder(z)[2, 1], decoder(z[2, 1]))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional, width", [(True, 14), (False, 7)])
def test_recurrent_encoder_width_is_the_final_states(bidirectional, width, cell):
    net = RecurrentEncoder(2, hidden_size=7, num_layers=2, bidirectional=bidirectional, cell=cell)
    assert net.in_features == 2 and net.out_features == width
    x = torch.randn(3, 10, 2)
    h = net(x)
    assert h.shape == (3, width)
    # The output is the last layer's final hidden state: the forward direction's
    # state after the last step, the backward one's after the first.
    out, _ = net.rnn(x)
    torch.testing.assert_close(h[:, :7], out[:, -1, :7])
    if bidirectional:
        torch.testing.assert_close(h[:, 7:], out[:, 0, 7:])


def test_recurrent_encoder_output_layer_is_activated():
    net = RecurrentEncoder(2, hidden_size=7, out_features=11)
    assert net.out_features == 11
    assert (net(torch.randn(50, 4, 2)) >= 0).all()


def test_recurrent_cell_choice_builds_the_named_network():
    assert isinstance(RecurrentEncoder(2, cell="lstm").rnn, nn.LSTM)
    assert isinstance(RecurrentEncoder(2).rnn, nn.GRU)
    assert isinstance(RecurrentDecoder(2, 3, 4, cell="lstm").rnn, nn.LSTM)
    assert isinstance(RecurrentDecoder(2, 3, 4).rnn, nn.GRU)


def test_recurrent_decoder_reports_per_step_size_and_length():
    net = RecurrentDecoder(4, seq_len=12, out_features=2)
    assert (net.in_features, net.seq_len, net.out_features) == (4, 12, 2)
    head = pyro_vae.likelihoods.Gaussian(net)
    assert head(torch.randn(3, 5, 4)).event_shape == (12, 2)
    assert head(torch.randn(3, 5, 4)).batch_shape == (3, 5)


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_decoder_is_fed_z_at_every_step(cell):
    net = RecurrentDecoder(4, seq_len=6, out_features=2, hidden_size=8, cell=cell)
    with torch.no_grad():  # initial state 0 whatever z: z reaches the steps as input only
        net.init[0].weight.zero_()
        net.init[0].bias.zero_()
    z = torch.randn(3, 4, requires_grad=True)
    out = net(z)
    for t in range(6):
        (grad,) = torch.autograd.grad(out[:, t].sum(), z, retain_graph=True)
        assert grad.abs().sum() > 0, t
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RecurrentEncoder(0), "in_features"),
        (lambda: RecurrentEncoder(2, hidden_size=0), "hidden_size"),
        (lambda: RecurrentEncoder(2, out_features=-3), "out_features"),
        (lambda: RecurrentEncoder(2, num_layers=0), "num_layers"),
        (lambda: RecurrentEncoder(2, num_layers=1.5), "num_layers"),
        (lambda: RecurrentEncoder(2, hidden_size=True), "hidden_size"),
        (lambda: RecurrentEncoder(2, bidirectional="yes"), "bidirectional"),
        (lambda: RecurrentEncoder(2, cell="rnn"), "cell must be one of 'gru', 'lstm'"),
        (lambda: RecurrentDecoder(0, 3, 2), "in_features"),
        (lambda: RecurrentDecoder(4, 0, 2), "seq_len"),
        (lambda: RecurrentDecoder(4, 3, 0), "out_features"),
        (lambda: RecurrentDecoder(4, 3, 2, hidden_size=-1), "hidden_size"),
        (lambda: RecurrentDecoder(4, 3, 2, num_layers=0), "num_layers"),
        (lambda: RecurrentDecoder(4, 3, 2, cell=None), "cell must be one of 'gru', 'lstm'"),
    ],
)
def test_recurrent_pair_rejects_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "shape", [(12,), (4, 12, 3), (4, 0, 2), ()], ids=["1-dim", "wrong-F", "no-steps", "scalar"]
)
def test_recurrent_encoder_names_the_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(\*batch, T, 2\) with T >= 1, got shape"):
        RecurrentEncoder(2)(torch.randn(shape))


def test_recurrent_decoder_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(\*batch, 4\), got shape \(3, 5\)"):
        RecurrentDecoder(4, 6, 2)(torch.randn(3, 5))


def _noisy_sines(n: int = 48, steps: int = 12, seed: int = 0) -> torch.Tensor:
    """(n, steps, 2): a sine and a cosine of random phase and amplitude, plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 2 * math.pi, steps)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    amplitude = 0.5 + torch.rand(n, 1, generator=g)
    waves = torch.stack([torch.sin(t + phase), torch.cos(t + phase)], dim=-1)
    return amplitude.unsqueeze(-1) * waves + 0.1 * torch.randn(n, steps, 2, generator=g)


def _sequence_vae() -> pyro_vae.VAE:
    return pyro_vae.VAE(
        pyro_vae.priors.StandardNormal(4),
        pyro_vae.likelihoods.Gaussian(RecurrentDecoder(4, seq_len=12, out_features=2)),
        pyro_vae.guides.DiagonalNormal(RecurrentEncoder(2, hidden_size=16), latent_dim=4),
    )


@pytest.mark.parametrize("spec", ["elbo", "analytic-kl", "iwae:k=3", "iwae-dreg:k=3"])
def test_sequence_vae_trains_and_is_evaluated(spec):
    data = _noisy_sines()
    vae = _sequence_vae()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    history = pyro_vae.fit(vae, data, objective=spec, epochs=1, batch_size=16, progress=False)
    (loss,) = history.column("train_loss")
    assert math.isfinite(loss)
    changed = [k for k, v in vae.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("likelihood.") for k in changed)
    assert any(k.startswith("encoder.") for k in changed)
    log_px = pyro_vae.evaluate.log_likelihood(vae.model, vae.guide, data, num_samples=20)
    assert log_px.shape == (len(data),)
    assert torch.isfinite(log_px).all()
    assert vae.sample(3).shape == (3, 12, 2)
    assert vae.reconstruct(data[:5]).shape == (5, 12, 2)
