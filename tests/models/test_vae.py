"""The VAE as Pyro programs: site and plate names, plain SVI, the param store, swapping parts."""

from __future__ import annotations

import io

import pyro
import pyro.poutine as poutine
import pytest
import torch
from conftest import binary_data, small_vae

from pyro_vae.models import guides, likelihoods, nets, priors
from pyro_vae.models.vae import VAE


def test_model_and_guide_have_the_documented_sites_and_plate():
    vae, x = small_vae(), binary_data(5)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    model_trace.compute_log_prob()
    z, obs = model_trace.nodes["z"], model_trace.nodes["x"]
    assert obs["is_observed"] and torch.equal(obs["value"], x)
    assert z["value"].shape == (5, 3) and z["log_prob"].shape == (5,)
    for site in (z, obs, guide_trace.nodes["z"]):
        (frame,) = site["cond_indep_stack"]
        assert frame.name == "data" and frame.dim == -1 and frame.size == 5
    assert torch.equal(guide_trace.nodes["z"]["value"], z["value"])


def test_plain_pyro_svi_trains_the_module():
    vae, x = small_vae(), binary_data(64)
    before = [p.detach().clone() for p in vae.parameters()]
    svi = pyro.infer.SVI(
        vae.model, vae.guide, pyro.optim.Adam({"lr": 0.02}), pyro.infer.TraceMeanField_ELBO()
    )
    first = sum(svi.evaluate_loss(x) for _ in range(20)) / 20
    for _ in range(300):
        svi.step(x)
    last = sum(svi.evaluate_loss(x) for _ in range(20)) / 20
    assert all(not torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))
    assert last < first - 0.1 * abs(first)


def test_a_second_vae_of_the_same_name_trains_its_own_parameters():
    x = binary_data(16)
    first = small_vae()
    pyro.infer.SVI(
        first.model, first.guide, pyro.optim.Adam({"lr": 0.1}), pyro.infer.Trace_ELBO()
    ).step(x)
    second = small_vae()
    before = [p.detach().clone() for p in second.parameters()]
    frozen = [p.detach().clone() for p in first.parameters()]
    pyro.infer.SVI(
        second.model, second.guide, pyro.optim.Adam({"lr": 0.1}), pyro.infer.Trace_ELBO()
    ).step(x)
    assert all(not torch.equal(a, b) for a, b in zip(before, second.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(frozen, first.parameters(), strict=True))
    store = pyro.get_param_store()
    for name, p in second.named_parameters():
        assert store.get_param(f"vae$$${name}") is p


def test_encode_decode_reconstruct_sample_shapes():
    vae, x = small_vae(), binary_data(5)
    assert vae.encode(x).batch_shape == (5,)
    assert vae.decode(torch.randn(2, 5, 3)).batch_shape == (2, 5)
    recon = vae.reconstruct(x)
    assert recon.shape == x.shape and ((recon >= 0) & (recon <= 1)).all()
    assert vae.sample(7).shape == (7, 12)
    assert set(vae.sample(7, mean=False).unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="num_samples"):
        vae.sample(0)


def test_swapping_a_part_keeps_everything_else():
    vae, x = small_vae(), binary_data(8)
    encoder = vae.encoder
    vae.likelihood = likelihoods.ContinuousBernoulli(nets.MLP(3, [16], 12))
    vae.prior = priors.StandardNormal(3)
    assert vae.encoder is encoder
    loss = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
    assert torch.isfinite(torch.tensor(loss))


def test_state_dict_round_trips_through_weights_only_load():
    vae, x = small_vae(), binary_data(4)
    buffer = io.BytesIO()
    torch.save(vae.state_dict(), buffer)
    buffer.seek(0)
    copy = small_vae()
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(copy.reconstruct(x), vae.reconstruct(x))


def test_constructor_names_mismatched_or_wrong_parts():
    prior, guide = priors.StandardNormal(3), guides.DiagonalNormal(nets.MLP(4, [4]), latent_dim=2)
    head = likelihoods.Bernoulli(nets.MLP(3, [4], 4))
    with pytest.raises(ValueError, match=r"latent_dim \(3\).*\(2\)"):
        VAE(prior, head, guide)
    with pytest.raises(TypeError, match="likelihood must be"):
        VAE(prior, nets.MLP(3, [4], 4), guide)
    with pytest.raises(TypeError, match="prior must be"):
        VAE(None, head, guide)
    with pytest.raises(ValueError, match="name"):
        VAE(priors.StandardNormal(2), head, guide, name="")


def test_the_param_store_follows_swapped_parts_and_lazy_layers():
    """The cached name map is rebuilt when a part is swapped or a lazy layer materialises."""
    lazy_guide = guides.DiagonalNormal(torch.nn.Sequential(torch.nn.LazyLinear(8)), latent_dim=3)
    vae = VAE(priors.StandardNormal(3), likelihoods.Bernoulli(nets.MLP(3, [8], 12)), lazy_guide)
    x = binary_data(5)
    vae.guide(x)  # materialises the lazy layer between two registrations
    vae.guide(x)
    store = pyro.get_param_store()
    assert store["vae$$$encoder.net.0.weight"] is vae.encoder.net[0].weight
    assert store["vae$$$encoder.net.0.weight"].shape == (8, 12)
    vae.model(x)
    vae.likelihood = likelihoods.Bernoulli(nets.MLP(3, [5], 12))
    vae.model(x)
    assert store["vae$$$likelihood.net.layers.0.weight"] is vae.likelihood.net.layers[0].weight
    assert store["vae$$$likelihood.net.layers.0.weight"].shape == (5, 3)
