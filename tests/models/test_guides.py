"""Guides: the contract (batch and event shapes, reparameterised), positivity, gradients."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from pyro_vae.models.guides import DiagonalNormal
from pyro_vae.models.nets import MLP, ConvEncoder


@pytest.mark.parametrize(
    "net, x",
    [
        (MLP(12, [8]), torch.randn(5, 12)),
        (ConvEncoder((1, 6, 6), out_features=8), torch.randn(5, 36)),
    ],
)
def test_diagonal_normal_contract(net, x):
    guide = DiagonalNormal(net, latent_dim=3)
    q = guide(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    assert q.has_rsample
    z = q.rsample((4,))
    assert z.shape == (4, 5, 3)
    z.sum().backward()
    for name, p in guide.named_parameters():
        assert p.grad is not None, name


def test_scale_stays_above_its_floor_for_extreme_inputs():
    guide = DiagonalNormal(MLP(2, [4]), latent_dim=2, min_scale=1e-3)
    with torch.no_grad():
        guide.head.bias.fill_(-1e4)
    assert (guide(torch.zeros(3, 2)).base_dist.scale >= 1e-3).all()


def test_a_body_without_out_features_gets_a_lazy_head():
    guide = DiagonalNormal(nn.Sequential(nn.Linear(5, 7), nn.Tanh()), latent_dim=2)
    assert guide(torch.randn(3, 5)).event_shape == (2,)
    assert guide.head.in_features == 7


def test_state_round_trips():
    guide = DiagonalNormal(MLP(6, [4]), latent_dim=2)
    buffer = io.BytesIO()
    torch.save(guide.state_dict(), buffer)
    buffer.seek(0)
    copy = DiagonalNormal(MLP(6, [4]), latent_dim=2)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(3, 6)
    torch.testing.assert_close(copy(x).mean, guide(x).mean)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        DiagonalNormal(lambda x: x, latent_dim=2)
    with pytest.raises(ValueError, match="latent_dim"):
        DiagonalNormal(MLP(2, [2]), latent_dim=0)
    with pytest.raises(ValueError, match="min_scale"):
        DiagonalNormal(MLP(2, [2]), latent_dim=1, min_scale=-1.0)


# --- full covariance and flows ------------------------------------------------------------

from pyro.distributions import transforms as T  # noqa: E402
from torch.autograd.functional import jacobian  # noqa: E402

from pyro_vae.models.guides import (  # noqa: E402
    AffineCouplingFlow,
    FullCovarianceNormal,
    InverseAutoregressiveFlow,
    location,
)


def _flow(kind: str, latent: int = 3) -> nn.Module:
    torch.manual_seed(0)
    cls = {"iaf": InverseAutoregressiveFlow, "coupling": AffineCouplingFlow}[kind]
    guide = cls(MLP(6, [8]), latent, num_flows=3, hidden=[12], context_dim=5).double()
    with torch.no_grad():  # move away from the identity-like initialisation
        for p in guide.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return guide


@pytest.mark.parametrize("kind", ["iaf", "coupling"])
def test_flow_log_density_is_the_base_density_minus_the_autograd_log_determinant(kind):
    """log q(z) = log q₀(z₀) - log |det ∂z/∂z₀|, the Jacobian taken by autograd."""
    guide, x = _flow(kind), torch.randn(4, 6, dtype=torch.float64)
    q = guide(x)
    z0 = q.base_dist.sample()

    def push(z):
        for t in q.transforms:
            z = t(z)
        return z

    full = jacobian(push, z0)  # (B, D, B, D); examples do not interact
    assert torch.count_nonzero(full.sum((1, 3)) - torch.diag(full.sum((1, 3)).diagonal())) == 0
    log_det = torch.stack([torch.linalg.slogdet(full[b, :, b, :])[1] for b in range(4)])
    z = push(z0)
    expected = q.base_dist.log_prob(z0) - log_det
    torch.testing.assert_close(q.log_prob(z), expected)  # cached forward pass
    torch.testing.assert_close(guide(x).log_prob(z.clone()), expected)  # inverted afresh


@pytest.mark.parametrize("kind", ["iaf", "coupling"])
def test_flow_guides_follow_the_contract(kind):
    guide, x = _flow(kind), torch.randn(5, 6, dtype=torch.float64)
    q = guide(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,) and q.has_rsample
    z = q.rsample((2,))
    assert z.shape == (2, 5, 3) and q.log_prob(z).shape == (2, 5)
    z.sum().backward()
    assert all(p.grad is not None for p in guide.parameters())
    point = location(q)
    expected = q.base_dist.mean
    for t in q.transforms:
        expected = t(expected)
    torch.testing.assert_close(point, expected)


def test_iaf_steps_reverse_the_variable_order_and_use_the_stable_form():
    guide = InverseAutoregressiveFlow(MLP(6, [8]), 4, num_flows=2)
    orders = [step.nn.permutation.tolist() for step in guide.flows]
    assert orders == [[0, 1, 2, 3], [3, 2, 1, 0]]
    transform = guide(torch.randn(2, 6)).transforms[0]
    assert transform.stable


def test_full_covariance_density_is_the_gaussian_with_covariance_l_l_transpose():
    torch.manual_seed(0)
    guide = FullCovarianceNormal(MLP(6, [8]), 4).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    q = guide(x)
    tril = q.scale_tril
    assert torch.equal(tril, tril.tril()) and bool((tril.diagonal(dim1=-2, dim2=-1) > 0).all())
    assert torch.count_nonzero(tril.tril(-1)) == 3 * 6  # every entry below the diagonal is used
    z = torch.randn(7, 3, 4, dtype=torch.float64)
    reference = torch.distributions.MultivariateNormal(q.loc, covariance_matrix=tril @ tril.mT)
    torch.testing.assert_close(q.log_prob(z), reference.log_prob(z))
    q.rsample().sum().backward()
    assert guide.head.weight.grad[8:].abs().sum() > 0  # the off-diagonal outputs train


def test_flow_guides_reject_bad_arguments():
    with pytest.raises(ValueError, match="num_flows must be a positive integer"):
        InverseAutoregressiveFlow(MLP(6, [8]), 3, num_flows=0)
    with pytest.raises(ValueError, match="hidden must be a non-empty list"):
        InverseAutoregressiveFlow(MLP(6, [8]), 3, hidden=[])
    with pytest.raises(ValueError, match="context_dim must be a positive integer"):
        AffineCouplingFlow(MLP(6, [8]), 3, context_dim=0)
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        AffineCouplingFlow(MLP(6, [8]), 1)
    with pytest.raises(ValueError, match="min_scale"):
        FullCovarianceNormal(MLP(6, [8]), 3, min_scale=-1.0)


def test_a_pyro_transform_chain_is_what_the_coupling_guide_builds():
    guide = AffineCouplingFlow(MLP(6, [8]), 4, num_flows=3)
    kinds = [type(t).__name__ for t in guide(torch.randn(2, 6)).transforms]
    assert kinds == ["AffineCoupling", "Permute", "AffineCoupling", "Permute", "AffineCoupling"]
    assert isinstance(guide(torch.randn(2, 6)).transforms[1], T.Permute)
