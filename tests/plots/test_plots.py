"""Figures: grid layout, files written, and what the user is told about bad input."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from conftest import binary_data, small_vae
from matplotlib.image import imread

from pyro_vae import plots
from pyro_vae.plots import _figure, training
from pyro_vae.train._fit import History


def test_image_grid_tiles_images_in_reading_order():
    images = torch.stack([torch.full((1, 2, 3), v) for v in (0.0, 0.25, 0.5, 1.0, 0.75)])
    grid = plots.image_grid(images, (1, 2, 3), ncols=2, pad=1)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)
    assert grid[0, 0] == 0.0 and grid[0, 4] == 0.25 and grid[3, 0] == 0.5 and grid[6, 0] == 0.75
    assert grid[2, 0] == 1.0  # padding is white
    rgb = plots.image_grid(torch.rand(4, 3 * 5 * 5), (3, 5, 5))
    assert rgb.shape == (11, 11, 3)


def test_image_grid_rejects_unshowable_images():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        plots.image_grid(torch.rand(2, 2, 4, 4), (2, 4, 4))
    with pytest.raises(ValueError, match="at least one image"):
        plots.image_grid(torch.rand(0, 16), (1, 4, 4))


def test_figures_are_written_as_png_without_touching_the_backend(tmp_path):
    backend = matplotlib.get_backend()
    vae, x = small_vae(data_dim=16), binary_data(8, data_dim=16)
    history = History(
        rows=[
            {"epoch": e, "train_loss": 10.0 / e, "valid_loss": 11.0 / e, "seconds": 0.1}
            for e in (1, 2, 3)
        ],
        best_epoch=3,
    )
    paths = [
        plots.save_samples(vae, (1, 4, 4), tmp_path / "samples.png", num_samples=9),
        plots.save_reconstructions(vae, x, (1, 4, 4), tmp_path / "sub" / "recon.png"),
        plots.save_learning_curves(history, tmp_path / "curves.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        assert image.shape[0] > 50 and image.shape[1] > 50 and np.ptp(image) > 0
    assert matplotlib.get_backend() == backend


def test_learning_curves_need_an_epoch(tmp_path):
    with pytest.raises(ValueError, match="no finished epoch"):
        plots.save_learning_curves(History(), tmp_path / "c.png")


def _captured(monkeypatch, module) -> list:
    """The figures ``module`` saves, kept as they are saved."""
    figures = []
    save = module.save_figure

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(module, "save_figure", keep)
    return figures


def test_learning_curves_tick_whole_epochs_only(tmp_path, monkeypatch):
    figures = _captured(monkeypatch, training)
    rows = [{"epoch": e, "train_loss": 9.0 - e, "valid_loss": 9.5 - e} for e in (1, 2, 3)]
    plots.save_learning_curves(History(rows=rows, best_epoch=3), tmp_path / "c.png")
    ax = figures[0].axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks == [1.0, 2.0, 3.0]
    plots.save_learning_curves(History(rows=rows[:1], best_epoch=1), tmp_path / "one.png")
    ax = figures[1].axes[0]
    low, high = ax.get_xlim()
    assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0]  # one epoch: one tick


def test_a_sample_grid_is_capped_before_any_work(tmp_path):
    vae = small_vae(data_dim=16)
    calls = []
    vae.likelihood.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match="num_samples must be at most 400, got 100000"):
        plots.save_samples(vae, (1, 4, 4), tmp_path / "s.png", num_samples=100_000)
    with pytest.raises(ValueError, match="the number of images must be at most 400"):
        plots.save_image_grid(torch.rand(401, 16), (1, 4, 4), tmp_path / "g.png")
    assert not calls and not list(tmp_path.iterdir())
    assert plots.MAX_GRID_IMAGES == 400


def test_image_grid_rows_can_be_labelled(tmp_path, monkeypatch):
    figures = _captured(monkeypatch, _figure)
    names = ["Bernoulli", "Gaussian", "Laplace"]
    images = torch.rand(12, 16)
    plots.save_image_grid(images, (1, 4, 4), tmp_path / "g.png", ncols=4, row_labels=names)
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert list(ax.get_yticks()) == [1.5, 6.5, 11.5]  # the centres of the rows of 4-pixel tiles
    with pytest.raises(ValueError, match="row_labels must be 3 strings, one per row"):
        plots.save_image_grid(images, (1, 4, 4), tmp_path / "h.png", ncols=4, row_labels=names[:2])


def _anytime_rows(epochs):
    """History rows of 10 s epochs with an anytime estimate of −90 + epoch / 1000 at each."""
    return [
        {"epoch": e, "train_loss": 90.0, "valid_loss": float("nan"), "seconds": 10.0,
         "test_log_likelihood": -90.0 + e / 1000}
        for e in epochs
    ]  # fmt: skip


def test_the_reproduction_curve_writes_its_epochs_out(tmp_path, monkeypatch):
    from pyro_vae.plots import reproduction

    rows = _anytime_rows(range(20, 480, 20))
    figures = []
    monkeypatch.setattr(reproduction, "save_figure", lambda fig, path: figures.append(fig))
    reproduction.save_reproduction_curve(
        History(rows=rows), 85.5, "paper", "run", tmp_path / "c.png"
    )
    axis = figures[0].axes[0]
    figures[0].canvas.draw()
    labels = [t.get_text() for t in axis.get_xticklabels() if t.get_visible() and t.get_text()]
    shown = [t for t in labels if 20 <= float(t) <= 460]
    assert shown == ["20", "50", "100", "200"]  # a span under a decade, no 2×10¹ 3×10¹ ...
    assert not any(t.get_text() for t in axis.get_xticklabels(minor=True))


def test_the_reproduction_curve_marks_the_final_score(tmp_path, monkeypatch):
    from pyro_vae.plots import reproduction

    rows = _anytime_rows(range(20, 120, 20))
    figures = []
    monkeypatch.setattr(reproduction, "save_figure", lambda fig, path: figures.append(fig))
    final = (85.23, 0.22, "final score")
    reproduction.save_reproduction_curve(
        History(rows=rows), 85.5, "paper", "run", tmp_path / "c.png", final=final
    )
    by_epoch, by_time = figures[0].axes
    assert len(figures[0].legends) == 1, "one legend, under both panels"
    assert by_epoch.get_legend() is None and by_time.get_legend() is None
    for axis, x in ((by_epoch, 100.0), (by_time, 5 * 10.0 / 3600)):
        labels = axis.get_legend_handles_labels()[1]
        assert "final score: 85.23 ± 0.22" in labels
        star = next(line for line in axis.lines if line.get_marker() == "*")
        assert star.get_xdata()[0] == pytest.approx(x) and star.get_ydata()[0] == 85.23

    # A run that validated holds (and was scored with) its best epoch's parameters.
    reproduction.save_reproduction_curve(
        History(rows=rows, best_epoch=60), 85.5, "paper", "run", tmp_path / "c.png", final=final
    )
    for axis, x in zip(figures[-1].axes, (60.0, 3 * 10.0 / 3600), strict=True):
        assert "final score (epoch 60): 85.23 ± 0.22" in axis.get_legend_handles_labels()[1]
        star = next(line for line in axis.lines if line.get_marker() == "*")
        assert star.get_xdata()[0] == pytest.approx(x)

    reproduction.save_reproduction_curve(
        History(rows=rows), None, "paper", "run", tmp_path / "c.png",
        final=(85.23, float("nan"), "one image"),
    )  # fmt: skip
    assert "one image: 85.23" in figures[-1].axes[0].get_legend_handles_labels()[1]
    for bad in ((float("nan"), 0.2, "x"), (85.0, -0.1, "x")):
        with pytest.raises(ValueError, match="the final score must be finite"):
            reproduction.save_reproduction_curve(
                History(rows=rows), None, "paper", "run", tmp_path / "c.png", final=bad
            )
