"""Bad input to ``pyro-vae``: exit 0 or 2, never a traceback; on 2, one line, nothing left.

Property tests throw random argument lists and files at the command (in-process, ``cli.main``);
plain tests pin each specific error. A ``train`` that finished an epoch keeps its run folder
(``checkpoint.pt``) for ``--resume``: the one documented exception.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyro
import pytest
from bad_input import (
    TINY,
    examples,
    listing,
    run_cli,
)
from hypothesis import event, given
from hypothesis import strategies as st

from pyro_vae.cli import commands as cli

TINY_COMPARE = ["--objectives", "elbo", "--bound-ks", "1,2", "--gradient-ks", "1",
                "--gradient-draws", "2", "--test-examples", "20"]  # fmt: skip


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pyro-vae") and "error:" in lines[0], err
    return lines[0]


BAD_INT = ["0", "-1", "-7", "2.5", "nan", "inf", "abc", "", "1e3", "9" * 30]


BAD_FLOAT = ["0", "-1", "nan", "inf", "-inf", "1e999", "1e300", "abc", ""]


HUGE = "1000000000000"  # sizes this large fail to allocate at once


CHECKPOINTS = ["checkpoint", "empty", "garbage", "truncated", "text", "plain_torch", "foreign",
               "bad_config", "params_list", "folder", "missing"]  # fmt: skip


CONFIGS = ["good", "unknown_key", "wrong_type", "wrong_value", "nested", "array", "invalid",
           "binary"]  # fmt: skip


OUTS = ["@out/new", "@out/a/b/new", "@out/empty-dir", "@out/kept", "@out/a-file",
        "@out/a-file/run", ""]  # fmt: skip


PNGS = ["@out/s.png", "@out/s.xyz", "@out/noext", "@out/empty-dir", "@out/a-file/s.png",
        "@out/new/deep/s.png"]  # fmt: skip


# option: (valid values, invalid values). "@file/NAME" and "@out/..." become paths.
MODEL_OPTIONS: dict[str, tuple[list[str], list[str]]] = {
    "--dataset": (["digits"], ["mnst", "", "MNIST", "mnist"]),
    "--prior": (list(cli.PRIORS), ["gauss", ""]),
    "--guide": (list(cli.GUIDES), ["diag", ""]),
    "--likelihood": (
        ["bernoulli", "continuous-bernoulli", "gaussian", "laplace", "discretized-logistic"],
        ["poisson"],
    ),  # fmt: skip
    "--binarize": (["dynamic", "static", "none"], ["yes"]),
    "--net": (["mlp", "conv"], ["rnn"]),
    "--scale": (["0.1", "1"], BAD_FLOAT),
    "--num-flows": (["1", "2"], [*BAD_INT, "1001", HUGE]),
    "--components": (["2", "3"], [*BAD_INT, HUGE]),
    "--hidden": (["8", "4,4"], ["0", "8,", ",", "8,-1", "a", "", HUGE]),
    "--latent-dim": (["1", "2", "3"], [*BAD_INT, HUGE]),
    "--epochs": (["1"], BAD_INT),
    "--batch-size": (["64", "5000"], BAD_INT),
    "--lr": (["0.001", "0.01", "1e30"], BAD_FLOAT),
    "--seed": (["0", "7"], ["-1", "4294967296", "x", "1.5"]),
    "--device": (["cpu", "auto"], ["cuda", "tpu", "cuda:x", ""]),
    "--num-samples": (["1", "2"], BAD_INT),
    "--eval-batch-size": (["50"], BAD_INT),
    "--data-dir": (["@file/mnist_dir"], ["@file/missing", "@file/garbage", "@file/folder"]),
    "--config": (["@file/config_good"], [f"@file/config_{c}" for c in CONFIGS[1:]]),
    "--out": (OUTS[:4], OUTS[4:]),
}


TRAIN_OPTIONS = MODEL_OPTIONS | {
    "--objective": (
        [
            "elbo",
            "analytic-kl",
            "iwae:k=2",
            "stl",
            "renyi:k=2,alpha=0.5",
            "iwae-dreg:k=2",
            "score-function",
        ],
        ["vimco", "iwae:k=0", "elbo:beta=-1", "renyi:alpha=1", "iwae:k", ":", "", f"iwae:k={HUGE}"],
    ),  # fmt: skip
    "--num-particles": (["1", "2"], [*BAD_INT, HUGE]),
    "--patience": (["1"], BAD_INT),
    "--resume": ([""], []),
    "--overwrite": ([""], []),
    "--learn-scale": ([""], []),
}


COMPARE_OPTIONS = MODEL_OPTIONS | {
    "--objectives": (["elbo", "elbo,iwae:k=2"], ["elbo,elbo", "vimco", "", ",", "iwae:k=0"]),
    "--bound-ks": (["1", "1,2"], ["0", "a", "", "1,-2"]),
    "--gradient-ks": (["1"], ["0", "x", ""]),
    "--gradient-draws": (["2"], BAD_INT),
    "--test-examples": (["20"], BAD_INT),
    "--overwrite": ([""], []),
}


EVAL_OPTIONS = {
    "--split": (["test", "valid"], ["dev", ""]),
    "--num-samples": (["2"], BAD_INT),
    "--eval-batch-size": (["50"], BAD_INT),
    "--seed": (["0"], ["-1", "x"]),
    "--device": (["cpu"], ["tpu"]),
    "--data-dir": (["@file/folder"], ["@file/missing"]),
}


SAMPLE_OPTIONS = {
    "--num": (["4"], [*BAD_INT, HUGE]),
    "--out": (PNGS[:1] + PNGS[5:], PNGS[1:5]),
    "--seed": (["0"], ["-1"]),
    "--device": (["cpu"], ["gpu"]),
}


COMMANDS = {
    "train": (TINY, TRAIN_OPTIONS),
    "compare": (TINY + TINY_COMPARE, COMPARE_OPTIONS),
    "evaluate": (["--num-samples", "2"], EVAL_OPTIONS),
    "sample": (["--num", "4"], SAMPLE_OPTIONS),
}


@st.composite
def cli_calls(draw: st.DrawFn) -> list[str]:
    """An argument list: tiny valid settings, then 1-3 options, in three calls of four with
    at least one invalid value."""
    # compare is the slowest success (about 2 s, mostly its figures): drawn least often.
    commands = ["train"] * 4 + ["compare"] + ["evaluate", "sample"] * 2 + ["frobnicate", ""]
    command = draw(st.sampled_from(commands))
    if command not in COMMANDS:
        return [command] if command else []
    base, options = COMMANDS[command]
    argv = [command]
    if command in ("evaluate", "sample") and draw(st.integers(0, 9)):
        argv.append("@file/" + draw(st.sampled_from(["checkpoint"] * 4 + CHECKPOINTS)))
    argv += base
    all_valid = draw(st.sampled_from([False, False, False, True]))
    chosen = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3))
    invalid_at = draw(st.integers(0, len(chosen) - 1))
    for i, option in enumerate(chosen):
        valid, invalid = options[option]
        bad = invalid and not all_valid and (i == invalid_at or draw(st.booleans()))
        value = draw(st.sampled_from(invalid if bad else valid))
        argv += [option] if value == "" and not invalid else [option, value]
    if not all_valid and draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(["--frobnicate", "stray", "--epochs"]) | st.text()))
    if command in ("train", "compare"):
        argv.append("--no-progress")
    return argv


def _resolve(argv: list[str], files: dict[str, Path], out: Path) -> list[str]:
    resolved = []
    for arg in argv:
        if arg.startswith("@file/"):
            arg = str(files[arg.removeprefix("@file/")])
        elif arg.startswith("@out/"):
            arg = str(out / arg.removeprefix("@out/"))
        resolved.append(arg)
    return resolved


def _parse(argv: list[str], cwd: Path):
    """(exit code, stderr, parsed args or None) with the command itself stubbed."""
    parsed: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, f"_{argv[0]}", parsed.append)
        code, err = run_cli(argv, cwd)
    return code, err, (parsed[0] if parsed else None)


@examples(200)
@given(argv=cli_calls())
def test_the_command_line_never_crashes_and_leaves_nothing_behind_on_error(files, argv):
    pyro.clear_param_store()
    work = Path(tempfile.mkdtemp(dir=files["folder"].parent, prefix="call-"))
    (work / "empty-dir").mkdir()
    (work / "kept").mkdir()
    (work / "kept" / "keep.txt").write_text("kept")
    (work / "a-file").write_text("a file")
    before = listing(work) | listing(files["folder"].parent / "run")
    argv = _resolve(argv, files, work)
    code, err = run_cli(argv, work, time_limit=30)  # the largest call here takes about 3 s
    event(f"{argv[0] if argv else '(none)'} exits {code}")
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        line = _one_line(err)
        after = listing(work) | listing(files["folder"].parent / "run")
        new = after - before
        kept = [p for p in new if p.name == "checkpoint.pt"]
        # A train that finished an epoch keeps its run for --resume; nothing else stays.
        assert not new or (argv[0] == "train" and kept), (argv, line, sorted(new))
        assert (work / "kept" / "keep.txt").read_text() == "kept"


@examples(60)
@given(
    options=st.dictionaries(
        st.sampled_from(
            [
                "epochs",
                "latent_dim",
                "latent-dim",
                "hidden",
                "lr",
                "seed",
                "prior",
                "no_progress",
                "resume",
                "bogus",
                "config",
                "help",
                "out",
            ]
        ),
        st.none()
        | st.booleans()
        | st.integers(-3, 3)
        | st.floats(allow_nan=True)
        | st.text(max_size=6)
        | st.lists(st.integers(-1, 9), max_size=3)
        | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
        max_size=4,
    ),
    command=st.sampled_from(["train", "compare"]),
)
def test_a_config_file_with_any_keys_and_values_fails_in_one_line_or_parses(
    files, options, command
):
    """Only the parsing: a config that parses reaches the command, which is stubbed."""
    work = Path(tempfile.mkdtemp(dir=files["folder"].parent, prefix="config-"))
    path = work / "config.json"
    path.write_text(json.dumps(options))
    parsed = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, f"_{command}", parsed.append)
        code, err = run_cli([command, "--config", str(path)], work)
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        line = _one_line(err)
        assert str(path) in line, line
    else:
        (args,) = parsed
        latent = [v for k, v in options.items() if k in ("latent_dim", "latent-dim")]
        if latent and latent[-1] is not None:
            assert args.latent_dim == latent[-1]  # the later of the two spellings wins


def test_a_config_file_sets_options_and_the_command_line_wins(tmp_path):
    path = tmp_path / "c.json"
    options = {"latent_dim": 5, "hidden": [32, 16], "lr": 0.01, "no_progress": True}
    path.write_text(json.dumps(options | {"prior": "mixture", "patience": None}))
    code, err, args = _parse(["train", "--config", str(path), "--lr", "0.5"], tmp_path)
    assert code == 0, err
    assert (args.latent_dim, args.hidden, args.lr) == (5, [32, 16], 0.5)
    assert args.no_progress and args.prior == "mixture" and args.patience is None
    path.write_text(json.dumps({"latent-dim": 3, "objectives": ["elbo", "iwae:k=2"]}))
    code, err, args = _parse(["compare", "--config", str(path)], tmp_path)
    assert code == 0, err
    assert args.latent_dim == 3 and args.objectives == "elbo,iwae:k=2"


def test_a_config_file_with_an_unknown_key_names_it_the_file_and_the_known_ones(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 2, "latent_size": 3}))
    code, err, _ = _parse(["train", "--config", str(path)], tmp_path)
    line = _one_line(err)
    assert code == 2 and "unknown option 'latent_size'" in line and str(path) in line
    assert "latent-dim" in line and "epochs" in line


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "no such file"),
        ("@folder", "not a file; expected a JSON file"),
        ('{"epochs": 1,', "invalid JSON at line 1"),
        (b"\xff\xfe\x00", "not a UTF-8 text file"),
        ("[1, 2]", "expected a JSON object of option names and values, got a JSON array"),
        ('{"epochs": true}', "epochs must be a number, a string or a list of them, got true"),
        ('{"hidden": {"a": 1}}', "hidden must be a number"),
        ('{"no_progress": 1}', "no_progress must be true or false, got 1"),
        ('{"epochs": 0}', "argument --epochs: expected a positive integer, got '0'"),
        ('{"lr": NaN}', "argument --lr: expected a positive number"),
        ('{"config": "other.json"}', "unknown option 'config'"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, content, match):
    path = tmp_path / "c.json"
    if content == "@folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, err, args = _parse(["train", "--config", str(path)], tmp_path)
    line = _one_line(err)
    assert code == 2 and args is None and match in line and str(path) in line


def test_an_unreadable_config_file_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    path.write_text("{}")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    code, err, _ = _parse(["train", "--config", str(path)], tmp_path)
    assert code == 2 and "cannot be read (Permission denied)" in _one_line(err)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--seed", "-1"], "--seed: expected an integer from 0 to 2**32 - 1"),
        (["train", "--seed", "4294967296"], "--seed: expected an integer from 0 to 2**32 - 1"),
        (["train", "--lr", "1e300"], "--lr: expected a positive number up to 3.4e+37"),
        (["train", "--scale", "1e39"], "--scale: expected a positive number up to 3.4e+38"),
        (["train", "--num-flows", "1001"], "--num-flows: expected an integer from 1 to 1000"),
        (["train", "--batch-size", "9" * 30], "--batch-size: expected a positive integer"),
        (["compare", "--bound-ks", "1," + "9" * 30], "--bound-ks: expected positive integers"),
        (["train", "stray\nargument"], "unrecognized arguments: stray argument"),
    ],
)
def test_out_of_range_numbers_are_one_line(tmp_path, argv, match):
    code, err, args = _parse(argv, tmp_path)
    assert code == 2 and args is None and match in _one_line(err)


@pytest.mark.parametrize(
    "out, match",
    [
        ("a-file", "--out='{}' is a file; expected a folder"),
        ("a-file/run", "a-file is a file, not a folder"),
        ("", "--out must be a non-empty path"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_an_out_folder_that_cannot_be_made_is_one_line_before_any_work(
    tmp_path, command, out, match
):
    (tmp_path / "a-file").write_text("x")
    before = listing(tmp_path)
    target = str(tmp_path / out) if out else ""
    code, err = run_cli([command, *TINY, "--out", target, "--no-progress"], tmp_path)
    assert code == 2 and match.format(target) in _one_line(err)
    assert listing(tmp_path) == before


def test_an_unwritable_out_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    code, err = run_cli(["train", *TINY, "--out", str(tmp_path / "run")], tmp_path)
    assert code == 2 and "cannot be written: no write permission" in _one_line(err)


def test_a_train_that_fails_after_creating_its_folder_removes_it(tmp_path):
    """An allocation that fails at the first step: one line, and the new folder is gone."""
    argv = ["train", *TINY, "--num-particles", HUGE, "--no-progress", "--out"]
    code, err = run_cli([*argv, str(tmp_path / "new" / "run")], tmp_path)
    assert code == 2 and "out of memory" in _one_line(err)
    assert listing(tmp_path) == set()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "keep.txt").write_text("mine")
    code, err = run_cli([*argv, str(tmp_path / "kept")], tmp_path)
    assert code == 2 and listing(tmp_path) == {tmp_path / "kept", tmp_path / "kept" / "keep.txt"}


def test_a_compare_that_fails_while_training_removes_its_folder(tmp_path):
    argv = ["compare", *TINY, *TINY_COMPARE, "--objectives", f"elbo,iwae:k={HUGE}"]
    code, err = run_cli([*argv, "--no-progress", "--out", str(tmp_path / "cmp")], tmp_path)
    assert code == 2 and "out of memory" in _one_line(err)
    assert listing(tmp_path) == set()


def test_the_output_guard_keeps_a_run_that_finished_an_epoch(tmp_path):
    from pyro_vae.cli._checks import OutputGuard

    with pytest.raises(FloatingPointError), OutputGuard(tmp_path / "run", keep_checkpoints=True):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "checkpoint.pt").write_bytes(b"state")
        raise FloatingPointError("diverged at epoch 2")
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    with pytest.raises(FloatingPointError), OutputGuard(tmp_path / "other"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "checkpoint.pt").write_bytes(b"state")
        raise FloatingPointError("diverged")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "name, match",
    [
        ("folder", "is a folder, not a checkpoint file"),
        ("empty", "cannot read checkpoint"),
        ("text", "cannot read checkpoint"),
        ("garbage", "cannot read checkpoint"),
        ("truncated", "cannot read checkpoint"),
        ("plain_torch", "not a pyro_vae checkpoint"),
        ("foreign", "was not written by `pyro-vae train`"),
        ("bad_config", "names a model that cannot be built: config['latent_dim'] must be"),
        ("params_list", "its parameters do not fit the model its config names"),
        ("missing", "missing.pt"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_a_bad_checkpoint_is_one_line(files, tmp_path, command, name, match):
    before = listing(files["folder"].parent)
    code, err = run_cli([command, str(files[name])], tmp_path)
    assert code == 2 and match in _one_line(err)
    assert listing(files["folder"].parent) == before


@pytest.mark.parametrize(
    "out, match",
    [
        ("s.xyz", "--out must end in an image format suffix"),
        ("noext", "--out must end in an image format suffix"),
        ("a-folder", "is a folder; expected a file path"),
        ("a-file/s.png", "a-file is a file, not a folder"),
    ],
)
def test_sample_refuses_an_out_it_cannot_write(files, tmp_path, out, match):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    before = listing(tmp_path)
    code, err = run_cli(
        ["sample", str(files["checkpoint"]), "--out", str(tmp_path / out)], tmp_path
    )
    assert code == 2 and match in _one_line(err)
    assert listing(tmp_path) == before


def test_sample_to_an_unwritable_place_is_one_line(files, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    code, err = run_cli(
        ["sample", str(files["checkpoint"]), "--out", str(tmp_path / "s.png")], tmp_path
    )
    assert code == 2 and "--out=" in err and "no write permission" in _one_line(err)
    assert listing(tmp_path) == set()


def test_sample_creates_the_folders_of_its_out(files, tmp_path):
    target = tmp_path / "new" / "deep" / "s.png"
    code, err = run_cli(
        ["sample", str(files["checkpoint"]), "--num", "4", "--out", str(target)], tmp_path
    )
    assert code == 0, err
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_a_corrupt_mnist_file_in_the_data_dir_is_one_line_saying_what_to_do(files, tmp_path):
    argv = ["train", *TINY, "--dataset", "mnist", "--data-dir", str(files["mnist_dir"])]
    code, err = run_cli([*argv, "--out", str(tmp_path / "run")], tmp_path)
    line = _one_line(err)
    assert code == 2 and "delete it, or replace it with a good copy of mnist.npz" in line
    assert not (tmp_path / "run").exists()


def test_mnist_that_is_nowhere_says_where_to_put_it_offline(tmp_path):
    argv = ["train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "none")]
    code, err = run_cli([*argv, "--out", str(tmp_path / "run")], tmp_path)
    line = _one_line(err)
    assert code == 2 and "Place mnist.npz" in line and "offline (test)" in line
    assert listing(tmp_path) == set()
