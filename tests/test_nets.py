"""Networks: shapes, broadcasting over leading dimensions, image sizes, gradients, save/load."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from pyro_vae.nets import MLP, ConvDecoder, ConvEncoder

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
    [lambda: MLP(6, [5], 3), lambda: ConvEncoder((1, 6, 6)), lambda: ConvDecoder(3, (1, 6, 6))],
)
def test_every_parameter_gets_a_gradient_and_state_round_trips(make):
    net = make()
    x = torch.randn(2, net.in_features)
    net(x).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    copy = make()
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(copy(x), net(x))
