"""Figures of the latent space: interpolations, traversals, the manifold, latent maps, the
aggregate posterior and unit diagnostics."""

from __future__ import annotations

import pytest
import torch
from conftest import PartlyCollapsed, binary_data, small_vae

from pyro_vae import plots
from pyro_vae.models.guides import InverseAutoregressiveFlow
from pyro_vae.models.nets import MLP
from pyro_vae.models.vae import HierarchicalVAE
from pyro_vae.plots import latent_maps, latent_space

SHAPE = (1, 4, 4)  # 16 pixels


def _vae(latent_dim: int = 3):
    return small_vae(data_dim=16, latent_dim=latent_dim)


def _x(n: int = 24) -> torch.Tensor:
    return binary_data(n, data_dim=16)


def _labels(n: int = 24) -> torch.Tensor:
    return torch.arange(n) % 4


FIGURES = {
    "interpolations": lambda vae, path: plots.save_interpolations(
        vae, _x(), SHAPE, path, num_pairs=2, num_steps=4
    ),
    "traversals": lambda vae, path: plots.save_traversals(vae, _x(), SHAPE, path),
    "manifold": lambda vae, path: plots.save_manifold(vae, SHAPE, path, size=4),
    "latent_map": lambda vae, path: plots.save_latent_map(
        vae, _x(), _labels(), path, methods=("pca",)
    ),
    "aggregate_posterior": lambda vae, path: plots.save_aggregate_posterior(
        vae, _x(), path, num_samples=100
    ),
    "unit_diagnostics": lambda vae, path: plots.save_unit_diagnostics(vae, _x(), path),
}


@pytest.fixture
def captured(monkeypatch):
    """The figures the latent-space modules draw, kept as they are saved."""
    figures = []

    def keep(save):
        def save_and_keep(fig, path):
            figures.append(fig)
            return save(fig, path)

        return save_and_keep

    for module in (latent_maps, latent_space):
        monkeypatch.setattr(module, "save_figure", keep(module.save_figure))
    return figures


def _texts(fig) -> str:
    """Every title, axis label and tick label of a figure, joined."""
    parts = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        parts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        parts += [t.get_text() for t in ax.texts]
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_figure_writes_a_png(name, tmp_path):
    vae = _vae(2 if name == "manifold" else 3)
    path = FIGURES[name](vae, tmp_path / "deep" / f"{name}.png")
    assert path == tmp_path / "deep" / f"{name}.png"
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_figure_checks_its_path_before_any_work(name, tmp_path):
    vae = _vae(2 if name == "manifold" else 3)
    calls = []  # encoder or decoder passes on data (checks run the decoder on 0 rows)
    for part in (vae.encoder, vae.likelihood):
        part.register_forward_hook(
            lambda _, args, __: calls.append(len(args[0])) if len(args[0]) else None
        )
    with pytest.raises(ValueError, match="image format suffix"):
        FIGURES[name](vae, tmp_path / "figure.xyz")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        FIGURES[name](vae, tmp_path / "file" / "figure.png")
    assert not calls
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_the_manifold_needs_a_2d_latent_space_and_labels_its_axes(tmp_path, captured):
    with pytest.raises(ValueError, match="latent_dim 2.*got latent_dim 3"):
        plots.save_manifold(_vae(3), SHAPE, tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"image_shape \(1, 5, 5\) holds 25 values.*\(16,\)"):
        plots.save_manifold(_vae(2), (1, 5, 5), tmp_path / "m.png")
    assert not list(tmp_path.iterdir())
    plots.save_manifold(_vae(2), SHAPE, tmp_path / "m.png", limit=2.0, size=5)
    (ax,) = captured[0].axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z₁", "z₂")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2", "-1", "0", "1", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["-2", "-1", "0", "1", "2"]
    assert list(ax.get_yticks()) == sorted(ax.get_yticks(), reverse=True)  # z₂ grows upwards


def test_interpolations_label_a_linear_and_a_spherical_row_per_pair(tmp_path, captured):
    plots.save_interpolations(_vae(), _x(), SHAPE, tmp_path / "i.png", num_pairs=3, num_steps=5)
    rows = [t.get_text() for t in captured[0].axes[0].get_yticklabels()]
    assert rows == [f"pair {i}: {m}" for i in (1, 2, 3) for m in ("linear", "spherical")]
    columns = [t.get_text() for t in captured[0].axes[0].get_xticklabels()]
    assert columns == ["x_a", "0", "0.25", "0.5", "0.75", "1", "x_b"]


def test_interpolations_refuse_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_steps must be an integer >= 2"):
        plots.save_interpolations(_vae(), _x(), SHAPE, tmp_path / "i.png", num_steps=1)
    with pytest.raises(ValueError, match="at least 2 examples"):
        plots.save_interpolations(_vae(), _x(1), SHAPE, tmp_path / "i.png")
    with pytest.raises(ValueError, match="num_pairs must be a positive integer"):
        plots.save_interpolations(_vae(), _x(), SHAPE, tmp_path / "i.png", num_pairs=0)
    assert not list(tmp_path.iterdir())


def test_traversals_rank_units_by_kl_and_skip_collapsed_ones(tmp_path, captured):
    vae = small_vae(data_dim=16, latent_dim=5)
    vae.encoder = PartlyCollapsed(active=2, collapsed=3)
    plots.save_traversals(vae, _x(), SHAPE, tmp_path / "t.png")
    rows = [t.get_text() for t in captured[0].axes[0].get_yticklabels()]
    assert rows[0].startswith(("z₁: KL 1.4", "z₂: KL 1.4"))
    assert rows[1].startswith(("z₁: KL 1.4", "z₂: KL 1.4"))
    assert all(": KL 0" in row for row in rows[2:]) and len(rows) == 5
    columns = [t.get_text() for t in captured[0].axes[0].get_xticklabels()]
    assert columns == ["-3", "-2.2", "-1.5", "-0.75", "0", "0.75", "1.5", "2.2", "3"]


def test_traversals_fall_back_to_activity_without_a_closed_form_kl(tmp_path, captured):
    vae = _vae()
    vae.encoder = InverseAutoregressiveFlow(MLP(16, [16]), 3)
    plots.save_traversals(vae, _x(), SHAPE, tmp_path / "t.png", dims=[2, 0], values=[-1.0, 1.0])
    rows = [t.get_text() for t in captured[0].axes[0].get_yticklabels()]
    assert [r.split(":")[0] for r in rows] == ["z₃", "z₁"]  # units named from 1 in figures
    assert all(": Var " in r for r in rows)
    assert "no closed-form KL" in captured[0].axes[0].get_title()


def test_traversals_refuse_dimensions_out_of_range(tmp_path):
    with pytest.raises(ValueError, match=r"dims\[0\] must be an integer in 0 … 2, got 3"):
        plots.save_traversals(_vae(), _x(), SHAPE, tmp_path / "t.png", dims=[3])
    with pytest.raises(ValueError, match="values must be finite"):
        plots.save_traversals(_vae(), _x(), SHAPE, tmp_path / "t.png", values=[float("nan")])
    assert not list(tmp_path.iterdir())


def test_latent_map_of_a_2d_space_draws_the_raw_codes(tmp_path, captured):
    plots.save_latent_map(_vae(2), _x(), _labels(), tmp_path / "m.png", methods=("pca",))
    (ax,) = captured[0].axes
    assert "raw codes" in ax.get_title() and ax.get_xlabel() == "z₁"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 24


def test_latent_map_gives_the_explained_variance_of_each_pca_axis(tmp_path, captured):
    plots.save_latent_map(_vae(3), _x(), _labels(), tmp_path / "m.png")
    pca_ax, tsne_ax = captured[0].axes
    assert "% of the variance" in pca_ax.get_xlabel()
    assert "t-SNE" in tsne_ax.get_title()
    legend = captured[0].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1", "2", "3"]


def test_latent_map_refuses_bad_labels_and_methods(tmp_path):
    with pytest.raises(ValueError, match=r"labels must have shape \(24,\), one per row of x"):
        plots.save_latent_map(_vae(), _x(), _labels(23), tmp_path / "m.png")
    with pytest.raises(TypeError, match="integer class labels"):
        plots.save_latent_map(_vae(), _x(), torch.rand(24), tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"methods\[1\] must be one of \('pca', 'tsne'\)"):
        plots.save_latent_map(_vae(), _x(), _labels(), tmp_path / "m.png", methods=["pca", "umap"])
    with pytest.raises(ValueError, match="methods must be a non-empty list"):
        plots.save_latent_map(_vae(), _x(), _labels(), tmp_path / "m.png", methods="pca")
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        plots.save_latent_map(_vae(1), _x(), _labels(), tmp_path / "m.png")
    assert not list(tmp_path.iterdir())


def test_aggregate_posterior_titles_the_kl_and_the_mutual_information(tmp_path, captured):
    plots.save_aggregate_posterior(_vae(), _x(), tmp_path / "a.png", num_samples=100, dims=[1])
    title = captured[0]._suptitle.get_text()
    assert "KL(q(z) ‖ p(z)) = " in title and " ± " in title and "I(x; z) = " in title
    assert [ax.get_xlabel() for ax in captured[0].axes] == ["z₂"]  # dims count from 0


def test_aggregate_posterior_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"dims\[0\] must be an integer in 0 … 2"):
        plots.save_aggregate_posterior(_vae(), _x(), tmp_path / "a.png", dims=[7])
    hvae = HierarchicalVAE.mlp(16, [([8], 3), ([8], 2)])
    with pytest.raises(ValueError, match="one latent layer"):
        plots.save_aggregate_posterior(hvae, _x(), tmp_path / "a.png")
    assert not list(tmp_path.iterdir())


def test_unit_diagnostics_count_and_mark_collapsed_units(tmp_path, captured):
    vae = small_vae(data_dim=16, latent_dim=5)
    vae.encoder = PartlyCollapsed(active=2, collapsed=3)
    plots.save_unit_diagnostics(vae, _x(40), tmp_path / "u.png")
    assert captured[0]._suptitle.get_text().startswith("2 of 5 units active")
    kl_ax, activity_ax = captured[0].axes[:2]
    colours = [bar.get_facecolor() for bar in activity_ax.patches]
    assert colours[0] == colours[1] != colours[2] == colours[3] == colours[4]
    assert activity_ax.get_yscale() == "log"
    assert [round(bar.get_height(), 2) for bar in kl_ax.patches] == [1.44, 1.44, 0, 0, 0]


def test_unit_diagnostics_without_a_closed_form_kl_say_so(tmp_path, captured):
    vae = _vae()
    vae.encoder = InverseAutoregressiveFlow(MLP(16, [16]), 3)
    plots.save_unit_diagnostics(vae, _x(), tmp_path / "u.png")
    assert "no closed-form KL per unit" in _texts(captured[0])
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        plots.save_unit_diagnostics(vae, _x(), tmp_path / "v.png", threshold=0)
    assert not (tmp_path / "v.png").exists()


def test_unit_diagnostics_name_units_from_one_and_keep_the_legend_off_the_title(tmp_path, captured):
    vae = small_vae(data_dim=16, latent_dim=12)
    plots.save_unit_diagnostics(vae, _x(), tmp_path / "u.png")
    fig = captured[0]
    activity_ax = fig.axes[1]
    names = "z₁ z₂ z₃ z₄ z₅ z₆ z₇ z₈ z₉ z₁₀ z₁₁ z₁₂".split()
    assert [t.get_text() for t in activity_ax.get_xticklabels()] == names
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    title = fig._suptitle.get_window_extent(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    assert not title.overlaps(legend)
    assert all(not ax.get_window_extent(renderer).overlaps(legend) for ax in fig.axes)


def test_priors_beside_aggregate_posteriors_label_their_axes_and_colour_scale(tmp_path, captured):
    vaes = {"a": _vae(2), "b": _vae(2)}
    plots.save_priors_and_aggregate_posteriors(vaes, _x(), tmp_path / "p.png", size=10)
    images = [ax for ax in captured[0].axes if ax.images]
    bars = [ax for ax in captured[0].axes if not ax.images]
    assert len(images) == 4 and len(bars) == 2  # one colour bar per model, shared by its row
    assert [ax.get_xlabel() for ax in images] == ["z₁"] * 4
    assert [ax.get_ylabel() for ax in images] == ["z₂", "", "z₂", ""]
    assert [ax.get_ylabel() for ax in bars] == ["density", "density"]
