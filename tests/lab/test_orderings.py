"""Recipe runs side by side: anytime curves read from run folders, compared at equal epochs,
projected from a finished reference, drawn, and written into REPRODUCTION.md's sections."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

import pyro_vae as pv
from pyro_vae.lab import recipes
from pyro_vae.lab._reproduction import write_section

ROOT = Path(__file__).resolve().parents[2]
SMOKE = {"smoke_test": True, "table": None, "progress": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Smoke runs named as bench/reproduction_queue.sh names them; one stopped after 1 epoch."""
    folder = tmp_path_factory.mktemp("runs")
    recipes.reproduce("burda2015-1layer", "elbo", out=folder / "burda2015-1layer_elbo", **SMOKE)
    recipes.reproduce(
        "burda2015-1layer", "iwae:k=5", out=folder / "burda2015-1layer_iwae_k-5", **SMOKE
    )
    recipes.reproduce(
        "burda2015-1layer", "iwae-dreg:k=5", out=folder / "burda2015-1layer_iwae-dreg_k-5",
        max_minutes=1e-9, **SMOKE,
    )  # fmt: skip
    return folder


def _curve(epochs, nll, *, final=None, paper=None, protocol=None, name="a") -> recipes.AnytimeCurve:
    return recipes.AnytimeCurve(
        "burda2015-1layer", name, tuple(epochs), tuple(nll), tuple(float(e) for e in epochs),
        trained=max(epochs), planned=100, final=final, paper=paper,
        protocol=protocol or {"dataset": "mnist", "test_examples": 1000, "test_samples": 1000,
                              "smoke_test": False},
        path=Path(name),
    )  # fmt: skip


def test_a_run_folder_s_anytime_curve_is_read_as_it_stands(runs):
    done = recipes.anytime_curve(runs / "burda2015-1layer_elbo")
    log = [line.split(",") for line in (runs / "burda2015-1layer_elbo" / "log.csv").open()][1:]
    assert done.epochs == (1, 2) and done.nll == tuple(-float(row[4]) for row in log)
    assert done.hours[0] < done.hours[1] == pytest.approx(sum(float(row[3]) for row in log) / 3600)
    metrics = json.loads((runs / "burda2015-1layer_elbo" / "metrics.json").read_text())
    assert done.finished and done.final == metrics["nll"] and done.paper == 86.76
    assert (done.trained, done.planned, done.label) == (2, 2, "burda2015-1layer, elbo")
    assert done.protocol == {
        "dataset": "mnist5k", "test_examples": 50, "test_samples": 5, "smoke_test": True
    }  # fmt: skip
    cut = recipes.anytime_curve(runs / "burda2015-1layer_iwae-dreg_k-5")
    assert not cut.finished and cut.trained == 1 and cut.epochs == (1,)
    assert cut.paper == 85.54  # DReG is measured against IWAE at its k


def test_a_folder_that_is_not_a_recipe_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no config.json: it is not a run folder"):
        recipes.anytime_curve(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"latent_dim": 2}))
    (tmp_path / "log.csv").write_text("epoch,train_loss,valid_loss,seconds,test_log_likelihood\n")
    with pytest.raises(ValueError, match="is not a recipe run"):
        recipes.anytime_curve(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "nope", "objective": "elbo"}))
    with pytest.raises(ValueError, match="unknown recipe 'nope'; choose one of"):
        recipes.anytime_curve(tmp_path)


def test_damaged_files_of_a_run_folder_are_named(runs, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(runs / "burda2015-1layer_elbo", folder)
    (folder / "metrics.json").write_text("{")
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        recipes.anytime_curve(folder)
    (folder / "metrics.json").write_text("[1]")
    with pytest.raises(ValueError, match="metrics.json holds a list, expected an object"):
        recipes.anytime_curve(folder)
    (folder / "metrics.json").unlink()
    log = (folder / "log.csv").read_text().splitlines()
    (folder / "log.csv").write_text("\n".join([log[0], "x" + log[1]]) + "\n")
    with pytest.raises(ValueError, match="log.csv, line 2: not numbers"):
        recipes.anytime_curve(folder)
    (folder / "log.csv").write_text("epoch,seconds\n1,2.0\n")
    with pytest.raises(ValueError, match="log.csv has no column test_log_likelihood"):
        recipes.anytime_curve(folder)


def test_a_scored_run_names_the_epoch_it_was_scored_at(runs, tmp_path):
    """metrics.json names the epoch; one written before it did gets the epoch fit kept:
    that of the lowest validation loss (the first of equals), else the last."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(runs / "burda2015-1layer_elbo", folder)
    assert recipes.anytime_curve(folder).scored_epoch == 2  # no validation: the last
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "epoch": 1}))
    assert recipes.anytime_curve(folder).scored_epoch == 1
    del metrics["epoch"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert recipes.anytime_curve(folder).scored_epoch == 2  # old file, no validation: the last
    header, *rows = (folder / "log.csv").read_text().splitlines()
    lines = [header]
    for epoch, valid in enumerate(["90.5", "89.0", "89.0", "nan", "91.0"], start=1):
        cells = rows[0].split(",")
        cells[0], cells[header.split(",").index("valid_loss")] = str(epoch), valid
        lines.append(",".join(cells))
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    curve = recipes.anytime_curve(folder)
    assert (curve.trained, curve.scored_epoch) == (5, 2)
    (folder / "log.csv").write_text("epoch,seconds,test_log_likelihood\n1,2.0,nan\n")
    with pytest.raises(ValueError, match="log.csv has no column valid_loss"):
        recipes.anytime_curve(folder)
    assert recipes.anytime_curve(runs / "burda2015-1layer_iwae-dreg_k-5").scored_epoch is None


def test_runs_compare_at_the_epochs_both_measured():
    reference = _curve([20, 40, 60, 80], [95.0, 93.0, 92.0, 91.0])
    other = _curve([20, 40, 60], [93.5, 91.6, 90.4], name="b")
    pair = recipes.at_equal_epochs(reference, other)
    assert [epoch for epoch, _, _ in pair.rows] == [20, 40, 60]
    assert pair.differences == pytest.approx((-1.5, -1.4, -1.6))
    assert recipes.at_equal_epochs(other, reference).differences == pytest.approx((1.5, 1.4, 1.6))


def test_a_run_on_its_way_is_projected_from_a_finished_reference():
    reference = _curve([20, 40, 60, 80], [95.0, 93.0, 92.0, 91.0], final=87.0)
    other = _curve([20, 40, 60], [93.5, 91.6, 90.4], name="b")
    projection = recipes.at_equal_epochs(reference, other).projection(last=2)
    assert projection.value == pytest.approx(87.0 - 1.5) and projection.epoch == 80
    # A reference scored at its best epoch is projected to that epoch, not its last.
    best = replace(reference, scored_epoch=60)
    assert recipes.at_equal_epochs(best, other).projection(last=2).epoch == 60
    assert (projection.low, projection.high) == pytest.approx((-1.6, -1.4))
    assert projection.over == (40, 60)
    assert recipes.at_equal_epochs(reference, other).projection(last=3).offset == pytest.approx(
        -1.5
    )
    # No projection: too few shared epochs, an unscored reference, a scored other run.
    assert recipes.at_equal_epochs(reference, other).projection(last=4) is None
    unscored = replace(reference, final=None)
    assert recipes.at_equal_epochs(unscored, other).projection(last=1) is None
    assert recipes.at_equal_epochs(reference, replace(other, final=86.0)).projection(1) is None
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="last must be a positive integer"):
            recipes.at_equal_epochs(reference, other).projection(last=bad)
    # Early epochs left out: from epoch 40 on, two differences remain.
    late = recipes.at_equal_epochs(reference, other).projection(last=2, since=40)
    assert late.over == (40, 60)
    assert recipes.at_equal_epochs(reference, other).projection(last=3, since=40) is None
    assert recipes.at_equal_epochs(reference, other).projection(last=1, since=60).offset == (
        pytest.approx(-1.6)
    )
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="since must be an epoch"):
            recipes.at_equal_epochs(reference, other).projection(since=bad)


def test_curves_of_different_protocols_refuse_to_compare():
    reference = _curve([20], [95.0])
    other = _curve([20], [94.0], name="b", protocol={**reference.protocol, "test_samples": 5000})
    with pytest.raises(ValueError, match="measured differently .*K = 5000 on 1000 test images"):
        recipes.at_equal_epochs(reference, other)


def test_the_comparison_figure_is_drawn_and_its_input_checked(tmp_path):
    curves = [("one layer", [20, 40, 80], [95.0, 93.0, 91.0], 86.76)]
    curves.append(("two layers", [20, 40], [93.5, 91.5], 85.33))
    path = pv.plots.save_anytime_comparison(curves, "layers", tmp_path / "o.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="at least two curves, got 1"):
        pv.plots.save_anytime_comparison(curves[:1], "layers", tmp_path / "o.png")
    with pytest.raises(ValueError, match="curve 'two layers': 2 epochs and 1 values"):
        pv.plots.save_anytime_comparison(
            [curves[0], ("two layers", [20, 40], [93.5], None)], "t", tmp_path / "o.png"
        )


def test_a_section_is_added_then_replaced_and_the_rest_kept(tmp_path):
    table = tmp_path / "R.md"
    table.write_text("# Title\n\n| recipe |\n|---|\n")
    write_section(table, "orderings", "first\n")
    assert table.read_text().endswith(
        "|---|\n\n<!-- begin orderings -->\nfirst\n<!-- end orderings -->\n"
    )
    table.write_text(table.read_text() + "\n## Notes\n\nby hand\n")
    write_section(table, "orderings", "second")
    text = table.read_text()
    assert "first" not in text and text.count("second") == 1 and text.endswith("by hand\n")
    assert text.startswith("# Title\n\n| recipe |")
    table.write_text("<!-- begin orderings -->\nno end\n")
    with pytest.raises(ValueError, match="has no '<!-- end orderings -->' after it"):
        write_section(table, "orderings", "x")
    for bad in ("", "a-->b", "a\nb"):
        with pytest.raises(ValueError, match="a section name is a non-empty line"):
            write_section(table, bad, "x")


_HOLDER = """
import sys
from pathlib import Path
from pyro_vae.lab._reproduction import _locked
table = Path(sys.argv[1])
with _locked(table):
    text = table.read_text()
    print("locked", flush=True)
    sys.stdin.readline()
    table.write_text(text + "written by the holder\\n")
"""


def test_a_second_process_editing_the_table_waits_for_the_first(tmp_path):
    """Two runs that finish together each rewrite REPRODUCTION.md from what they read:
    without the table's lock the second would write over the first's row."""
    table = tmp_path / "R.md"
    table.write_text("# Reproduction\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(table)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        writer = threading.Thread(target=write_section, args=(table, "ours", "row"))
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive(), "the writer waits while the holder has the lock"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
        writer.join(timeout=30)
    finally:
        holder.kill()
    text = table.read_text()
    assert "written by the holder" in text and "<!-- begin ours -->\nrow\n" in text


def test_the_orderings_benchmark_writes_its_figures_and_section(runs, tmp_path, capsys):
    table = tmp_path / "REPRODUCTION.md"
    table.write_text("# Reproduction\n\n## Notes\n")
    script = runpy.run_path(str(ROOT / "bench" / "reproduction_orderings.py"))
    assert script["main"]([str(runs), "--table", str(table)]) == 0
    assert "wrote 2 ordering(s)" in capsys.readouterr().out
    text = table.read_text()
    assert (tmp_path / "reproduction" / "ordering_iwae.png").is_file()
    assert (tmp_path / "reproduction" / "ordering_dreg.png").is_file()
    assert "![IWAE and DReG against the VAE (one layer)](reproduction/ordering_iwae.png)" in text
    assert "| 2 | " in text and "still training" in text and "scored" in text
    (tmp_path / "empty").mkdir()
    assert script["main"]([str(tmp_path / "empty"), "--table", str(table)]) == 1
    assert "no ordering has its runs in" in capsys.readouterr().err
    assert table.read_text() == text


def test_the_guide_s_log_variance_against_a_clip_is_measured(runs, tmp_path, capsys):
    """bench/guide_log_variance.py: the share of the trained guide's log σ² outside a range
    (the VampPrior code's hardtanh), counted from the run's own parameters."""
    script = runpy.run_path(str(ROOT / "bench" / "guide_log_variance.py"))
    folder = runs / "burda2015-1layer_elbo"
    assert script["main"]([str(folder), "--low", "-6", "--high", "2"]) == 0
    out = capsys.readouterr().out
    run = pv.load_run(folder)
    images = pv.data.load("mnist5k", "test", binarize="static")
    log_var = 2 * run.vae.encoder(images).base_dist.scale.log().detach()
    assert f"{images.shape[0]:,} test images × 50 units" in out
    assert f"| {log_var.min().item():.2f} | " in out
    share = ((log_var < -6) | (log_var > 2)).float().mean().item()
    assert f"outside [-6, 2]: {share:.2%} of all" in out
    # A range that leaves every unit outside on every image: each unit is named.
    assert script["main"]([str(folder), "--low", "-100", "--high", "-99"]) == 0
    out = capsys.readouterr().out
    assert "outside [-100, -99]: 100.00% of all" in out and "unit 49" in out
    for argv, message in (
        ([str(folder), "--low", "2", "--high", "2"], "--low must be below --high"),
        ([str(tmp_path)], "holds no best.pt or checkpoint.pt"),
    ):
        with pytest.raises(SystemExit):
            script["main"](argv)
        assert message in capsys.readouterr().err


def test_an_ordering_whose_runs_are_gone_keeps_its_subsection(runs, tmp_path, capsys):
    """A machine lost with its run folders must not take the written orderings with it."""
    import shutil

    table = tmp_path / "REPRODUCTION.md"
    table.write_text("# Reproduction\n\n## Notes\n")
    script = runpy.run_path(str(ROOT / "bench" / "reproduction_orderings.py"))
    assert script["main"]([str(runs), "--table", str(table)]) == 0
    iwae = table.read_text().split("### IWAE and DReG against the VAE")[1].split("###")[0]
    partial = tmp_path / "partial"  # the VAE's folder, every ordering's reference, is gone
    for name in ("burda2015-1layer_iwae_k-5", "burda2015-1layer_iwae-dreg_k-5"):
        shutil.copytree(runs / name, partial / name)
    assert script["main"]([str(partial), "--table", str(table)]) == 0
    assert "wrote 1 ordering(s)" in capsys.readouterr().out
    text = table.read_text()
    kept = text.split("### IWAE and DReG against the VAE")[1].split("###")[0]
    assert kept.startswith(" (one layer)\n\n" + script["KEPT"] + "\n\n")
    assert kept.replace(script["KEPT"] + "\n\n", "") == iwae
    assert "### DReG against IWAE, k = 5 (one layer)" in text and text.count("Command:") == 1
    assert script["main"]([str(partial), "--table", str(table)]) == 0
    assert table.read_text() == text, "kept once, not marked again"


def test_the_summary_puts_the_real_rows_into_the_readme(tmp_path, capsys):
    from pyro_vae.lab._reproduction import write_results

    table, readme = tmp_path / "REPRODUCTION.md", tmp_path / "README.md"
    result = recipes.reproduce(
        "burda2015-1layer", "elbo", out=tmp_path / "run", table=table, smoke_test=True,
        progress=False,
    )  # fmt: skip
    readme.write_text("# Title\n\n<!-- begin reproduction -->\nold\n<!-- end reproduction -->\n")
    script = runpy.run_path(str(ROOT / "bench" / "reproduction_summary.py"))
    argv = ["--table", str(table), "--readme", str(readme)]
    assert script["main"](argv) == 1  # smoke-test rows mean nothing: none to summarise
    assert "has no row to summarise" in capsys.readouterr().err
    write_results(replace(result, smoke_test=False), table)  # as a real run's row
    assert script["main"](argv) == 0
    text = readme.read_text()
    row = f"| `burda2015-1layer` | `elbo` | 86.76 | {result.scores['nll']:.2f} | "
    assert row in text and "smoke test" not in text and "old" not in text
    assert "[REPRODUCTION.md](REPRODUCTION.md)" in text and text.startswith("# Title\n")
