"""Bad input everywhere: the API raises an error naming the argument, the CLI prints one line.

Three parts:

- property tests (hypothesis) that throw random argument lists and files at ``pyro-vae``
  (in-process, ``cli.main``): the call returns 0 or 2, never raises anything else or
  prints a traceback; on 2 stderr is exactly one line and no file or folder is left
  behind, with one documented exception: a ``train`` that finished an epoch keeps its
  run folder (``checkpoint.pt``) for ``--resume``;
- property tests that throw random arguments at the public constructors and functions:
  either the call works or it raises ``ValueError``/``TypeError`` whose message names
  one of the arguments;
- one plain test per specific error.

No test touches the network, the real cache folder or ``$PYRO_VAE_DATA``. The property
tests are derandomized and keep no example database, so every run sees the same cases.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import tempfile
import urllib.error
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from conftest import binary_data, small_vae
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pyro_vae as pv
from pyro_vae import data, plots
from pyro_vae.analysis import latent
from pyro_vae.cli import commands as cli
from pyro_vae.infer import evaluate, objectives
from pyro_vae.models import guides, likelihoods, nets, priors
from pyro_vae.models.vae import HierarchicalVAE
from pyro_vae.train import checkpoints

PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def examples(n: int) -> settings:
    """The property tests' settings with ``n`` examples."""
    return settings(PROPERTY, max_examples=n)


TINY = ["--dataset", "digits", "--epochs", "1", "--hidden", "8", "--latent-dim", "2",
        "--num-samples", "2", "--batch-size", "500", "--eval-batch-size", "200",
        "--components", "2"]  # fmt: skip
TINY_COMPARE = ["--objectives", "elbo", "--bound-ks", "1,2", "--gradient-ks", "1",
                "--gradient-draws", "2", "--test-examples", "20"]  # fmt: skip


def _offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("offline (test)")


@contextlib.contextmanager
def _isolated(cwd: Path):
    """No network, no real cache or $PYRO_VAE_DATA, and ``cwd`` as the working folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("urllib.request.urlopen", _offline)
        mp.setattr("pyro_vae.data.default_cache_dir", lambda: cwd / "no-cache")
        mp.setenv("PYRO_VAE_DATA", str(cwd / "no-data"))
        mp.chdir(cwd)
        yield


class Hang(Exception):
    """A call that ran past its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raises :class:`Hang` in the block after ``seconds`` (where SIGALRM exists)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Hang(f"the call ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run(argv: list[str], cwd: Path, time_limit: float = 120) -> tuple[int, str]:
    """``cli.main(argv)`` in ``cwd``: (exit code, stderr); SystemExit counts as its code.

    A call that runs past ``time_limit`` seconds fails the test with :class:`Hang`.
    """
    err = io.StringIO()
    with (
        _time_limit(time_limit),
        _isolated(cwd),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = 0 if e.code is None else e.code
    return code, err.getvalue()


def _listing(folder: Path) -> set[Path]:
    return {Path(d, n) for d, dirs, files in os.walk(folder) for n in dirs + files}


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pyro-vae") and "error:" in lines[0], err
    return lines[0]


# --------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real run's checkpoint and every kind of bad file, made once for the module."""
    root = tmp_path_factory.mktemp("bad-files")
    run = root / "run"
    code, err = _run(["train", *TINY, "--out", str(run), "--no-progress"], root)
    assert code == 0, err
    good = run / "checkpoint.pt"
    raw = good.read_bytes()
    state = checkpoints.load(good)
    paths = {"checkpoint": good, "folder": root / "a-folder", "missing": root / "missing.pt"}
    paths["folder"].mkdir()
    blobs = {
        "empty": b"",
        "garbage": np.random.default_rng(0).bytes(300),
        "truncated": raw[: len(raw) // 2],
        "text": b"hello\n",
    }
    for name, blob in blobs.items():
        paths[name] = root / f"{name}.pt"
        paths[name].write_bytes(blob)
    paths["plain_torch"] = root / "plain.pt"
    torch.save({"a": torch.zeros(2)}, paths["plain_torch"])
    paths["foreign"] = checkpoints.save({"params": {}, "config": {"x": 1}}, root / "foreign.pt")
    bad = {**state, "config": {**state["config"], "latent_dim": "abc"}}
    paths["bad_config"] = checkpoints.save(bad, root / "bad-config.pt")
    paths["params_list"] = checkpoints.save({**state, "params": [1, 2]}, root / "params.pt")
    configs = {
        "good": {"dataset": "digits", "epochs": 1, "hidden": [8], "latent_dim": 2,
                 "num-samples": 2, "components": 2, "batch_size": 500},
        "unknown_key": {"epochs": 1, "latent_size": 3},
        "wrong_type": {"epochs": True},
        "wrong_value": {"latent_dim": 0},
        "nested": {"hidden": {"a": 1}},
        "array": [1, 2],
    }  # fmt: skip
    for name, value in configs.items():
        paths[f"config_{name}"] = root / f"{name}.json"
        paths[f"config_{name}"].write_text(json.dumps(value))
    paths["config_invalid"] = root / "invalid.json"
    paths["config_invalid"].write_text('{"epochs": 1,')
    paths["config_binary"] = root / "binary.json"
    paths["config_binary"].write_bytes(b"\xff\xfe\x00")
    paths["mnist_dir"] = root / "mnist"
    paths["mnist_dir"].mkdir()
    (paths["mnist_dir"] / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return paths


# --------------------------------------------------------------------------- the CLI grammar

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


@examples(200)
@given(argv=cli_calls())
def test_the_command_line_never_crashes_and_leaves_nothing_behind_on_error(files, argv):
    pyro.clear_param_store()
    work = Path(tempfile.mkdtemp(dir=files["folder"].parent, prefix="call-"))
    (work / "empty-dir").mkdir()
    (work / "kept").mkdir()
    (work / "kept" / "keep.txt").write_text("kept")
    (work / "a-file").write_text("a file")
    before = _listing(work) | _listing(files["folder"].parent / "run")
    argv = _resolve(argv, files, work)
    code, err = _run(argv, work, time_limit=30)  # the largest call here takes about 3 s
    event(f"{argv[0] if argv else '(none)'} exits {code}")
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        line = _one_line(err)
        after = _listing(work) | _listing(files["folder"].parent / "run")
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
        code, err = _run([command, "--config", str(path)], work)
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        line = _one_line(err)
        assert str(path) in line, line
    else:
        (args,) = parsed
        latent = [v for k, v in options.items() if k in ("latent_dim", "latent-dim")]
        if latent and latent[-1] is not None:
            assert args.latent_dim == latent[-1]  # the later of the two spellings wins


# --------------------------------------------------------------------------- the API


def _names(error: BaseException, names: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", str(error)) for n in names)


INTS = st.sampled_from([0, -3, 1, 2, 3, 5, 2.5, True, False, "4", None, [2], math.nan])
NUMBERS = st.sampled_from([0, -1.0, 1e-3, 0.5, 2.0, math.nan, math.inf, "x", None, True,
                           torch.tensor(0.5), [1.0]])  # fmt: skip


def _guide() -> guides.DiagonalNormal:
    return guides.DiagonalNormal(nets.MLP(4, [4]), 2)


SIZE_CONSTRUCTORS = {
    "latent_dim": [
        lambda v: priors.StandardNormal(v),
        lambda v: priors.LearnedNormal(v),
        lambda v: priors.FlowPrior(v),
        lambda v: guides.DiagonalNormal(nets.MLP(4, [4]), v),
        lambda v: guides.FullCovarianceNormal(nets.MLP(4, [4]), v),
        lambda v: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), v),
        lambda v: guides.AffineCouplingFlow(nets.MLP(4, [4]), v),
    ],
    "num_components": [lambda v: priors.MixtureOfGaussians(2, v)],
    "num_pseudo_inputs": [lambda v: priors.VampPrior(_guide(), v)],
    "num_flows": [
        lambda v: priors.FlowPrior(2, v),
        lambda v: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), 2, num_flows=v),
    ],
    "hidden": [
        lambda v: nets.MLP(3, [v]),
        lambda v: nets.MLP(3, v),
        lambda v: priors.FlowPrior(2, hidden=[v]),
    ],
    "in_features": [lambda v: nets.MLP(v, [4]), lambda v: nets.ConvDecoder(v, (1, 8, 8))],
    "out_features": [lambda v: nets.MLP(3, [4], v)],
    "image_shape": [lambda v: nets.ConvEncoder((1, v, 8)), lambda v: nets.ConvDecoder(2, v)],
    "channels": [lambda v: nets.ConvEncoder((1, 8, 8), channels=[v])],
    "context_dim": [lambda v: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), 2, context_dim=v)],
    "num_bins": [lambda v: likelihoods.DiscretizedLogistic(nets.MLP(2, [4], 4), num_bins=v)],
    "data_dim": [lambda v: HierarchicalVAE.mlp(v, [([4], 2)])],
    "layers": [lambda v: HierarchicalVAE.mlp(6, [([v], 2)]), lambda v: HierarchicalVAE.mlp(6, v)],
}
NUMBER_CONSTRUCTORS = {
    "scale": [
        lambda v: likelihoods.Gaussian(nets.MLP(2, [4], 4), scale=v),
        lambda v: likelihoods.Laplace(nets.MLP(2, [4], 4), scale=v),
    ],
    "min_scale": [
        lambda v: likelihoods.Gaussian(nets.MLP(2, [4], 4), min_scale=v),
        lambda v: guides.DiagonalNormal(nets.MLP(4, [4]), 2, min_scale=v),
        lambda v: priors.LearnedNormal(2, min_scale=v),
    ],
    "init_scale": [lambda v: priors.LearnedNormal(2, init_scale=v)],
    "init_spread": [lambda v: priors.MixtureOfGaussians(2, init_spread=v)],
    "limit": [lambda v: latent.grid(v, 3)],
    "threshold": [lambda v: evaluate.active_units(_guide(), binary_data(5, 4), threshold=v)],
}
CONSTRUCTORS = [(name, make, INTS) for name, ms in SIZE_CONSTRUCTORS.items() for make in ms]
CONSTRUCTORS += [(name, make, NUMBERS) for name, ms in NUMBER_CONSTRUCTORS.items() for make in ms]


@examples(200)
@given(case=st.sampled_from(CONSTRUCTORS), data_=st.data())
def test_constructors_work_or_name_the_bad_argument(case, data_):
    name, make, values = case
    value = data_.draw(values)
    try:
        make(value)
    except (ValueError, TypeError) as e:
        assert _names(e, (name, "latent_dim")), (name, value, e)


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    """Data for a VAE on 6 binary values: right or wrong in shape, dtype and values."""
    n = draw(st.sampled_from([0, 1, 3]))
    shape = draw(st.sampled_from([(n, 6), (n, 6), (n, 5), (n, 2, 3), (6,), (n, 6, 1)]))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.int64]))
    fill = draw(st.sampled_from(["binary", "binary", 0.5, 255.0, -1.0, math.nan, math.inf]))
    if fill == "binary":
        x = torch.bernoulli(torch.full(shape, 0.5), generator=torch.Generator().manual_seed(n))
    else:
        x = torch.full(shape, fill)
    return x.to(dtype)


EVALUATE = {
    "log_weights": lambda vae, x, k: evaluate.log_weights(vae.model, vae.guide, x, k),
    "log_likelihood": lambda vae, x, k: evaluate.log_likelihood(vae.model, vae.guide, x, k),
    "elbo": lambda vae, x, k: evaluate.elbo(vae.model, vae.guide, x, k),
    "iwae_bounds": lambda vae, x, k: evaluate.iwae_bounds(vae.model, vae.guide, x, (1, k)),
    "elbo_terms": lambda vae, x, k: evaluate.elbo_terms(vae.model, vae.guide, x, k),
    "unit_activity": lambda vae, x, k: evaluate.unit_activity(vae.guide, x, batch_size=k),
    "active_units": lambda vae, x, k: evaluate.active_units(vae.guide, x, batch_size=k),
    "aggregate": lambda vae, x, k: latent.aggregate_posterior_log_prob(
        vae.encoder, x, torch.zeros(2, 3), batch_size=k
    ),
    "encode": lambda vae, x, k: vae.encode(x),
    "reconstruct": lambda vae, x, k: vae.reconstruct(x),
}


@examples(150)
@given(
    function=st.sampled_from(sorted(EVALUATE)),
    x=tensors(),
    k=st.sampled_from([1, 2, 0, -1, 2.5, True, None]),
)
def test_evaluation_works_or_names_the_bad_argument(function, x, k):
    vae = small_vae(data_dim=6)
    try:
        EVALUATE[function](vae, x, k)
    except (ValueError, TypeError) as e:
        assert _names(e, ("x", "num_samples", "batch_size", "ks")), (function, e)


@examples(40)
@given(
    name=st.sampled_from(["digits", "mnist5k", "mnist", "nope", "", None, 3]),
    split=st.sampled_from(["train", "test", "train+valid", "dev", None]),
    binarize=st.sampled_from([None, "static", "dynamic", True]),
    seed=st.sampled_from([0, -1, 2.5, "1", 2**70]),
    root=st.sampled_from([None, "@missing", "@garbage", "@folder", 3]),
)
def test_data_loading_works_or_names_the_bad_argument(files, name, split, binarize, seed, root):
    if isinstance(root, str):
        root = files[{"@missing": "missing", "@garbage": "garbage", "@folder": "folder"}[root]]
    with _isolated(files["folder"].parent):
        try:
            x = data.load(name, split, binarize=binarize, seed=seed, root=root)
        except (ValueError, TypeError, FileNotFoundError) as e:
            names = ("data set", "split", "binarize", "seed", "root", "MNIST")
            assert _names(e, names), e
        else:
            assert x.dtype == torch.float32 and x.dim() == 2


SPECS = ["iwae:k=0", "renyi:alpha=x", "elbo:beta=nan", "stl:bound=foo", "elbo:jit=maybe"]


@examples(100)
@given(spec=st.text(max_size=20) | st.sampled_from(SPECS))
def test_objective_specs_parse_or_raise_a_value_error(spec):
    try:
        objectives.parse(spec)
    except ValueError as e:
        assert str(e)


@examples(60)
@given(
    images=st.sampled_from([torch.rand(4, 12), torch.rand(0, 12), torch.rand(3, 7), [[0.5]]]),
    shape=st.sampled_from([(1, 3, 4), (3, 1, 4), (2, 2, 3), (1, 0, 12), "ab", (1, 12)]),
    ncols=st.sampled_from([None, 2, 0, -1, 2.5]),
    pad=st.sampled_from([0, 1, -1, True]),
)
def test_image_grids_work_or_name_the_bad_argument(images, shape, ncols, pad):
    try:
        plots.image_grid(images, shape, ncols, pad)
    except (ValueError, TypeError) as e:
        assert _names(e, ("images", "image_shape", "ncols", "pad", "image_grid")), e


# =========================================================================== plain tests
# --------------------------------------------------------------------------- _checks


def test_a_number_argument_of_another_type_is_named():
    from pyro_vae._checks import check_number

    assert check_number("scale", torch.tensor(0.5)) == 0.5
    for value in ("x", None, True, [1.0]):
        with pytest.raises(TypeError, match="scale must be a number"):
            check_number("scale", value)


@pytest.mark.parametrize(
    "make, folder, error, match",
    [
        (lambda t: t / "a-file", True, ValueError, "is a file; expected a folder"),
        (lambda t: t / "a-file" / "run", True, ValueError, "a-file is a file, not a folder"),
        (lambda t: t, False, ValueError, "is a folder; expected a file path"),
        (lambda t: "", True, ValueError, "non-empty path"),
        (lambda t: 3, True, TypeError, "must be a path"),
    ],
)
def test_an_output_path_that_cannot_be_created_is_named(tmp_path, make, folder, error, match):
    from pyro_vae._checks import check_output_path

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(error, match=match):
        check_output_path("out", make(tmp_path), folder=folder)


def test_an_output_path_without_write_permission_is_named(tmp_path, monkeypatch):
    from pyro_vae._checks import check_output_path

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(PermissionError, match="out=.*cannot be written: no write permission"):
        check_output_path("out", tmp_path / "new", folder=True)


# --------------------------------------------------------------------------- parts


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nets.MLP(3, None), TypeError, "hidden must be a list of positive integers"),
        (lambda: nets.MLP(3, 5), TypeError, "hidden must be a list"),
        (lambda: nets.MLP(3, [4], activation=3), TypeError, "activation must be a callable"),
        (lambda: nets.ConvEncoder(8), TypeError, "image_shape"),
        (lambda: nets.ConvEncoder((1, True, 8)), ValueError, "image_shape"),
        (lambda: nets.ConvDecoder(2, (1, 8, 8), channels=5), TypeError, "channels must be a list"),
        (lambda: guides.DiagonalNormal(nets.MLP(4, [4]), 2, min_scale="x"), TypeError,
         "min_scale must be a number"),
        (lambda: guides.InverseAutoregressiveFlow(nets.MLP(4, [4]), 4, hidden=[2]), ValueError,
         "at least latent_dim=4"),
        (lambda: guides.AffineCouplingFlow(nets.MLP(4, [4]), 4, hidden=5), TypeError, "hidden"),
        (lambda: priors.LearnedNormal(2, init_scale="x"), TypeError, "init_scale must be a number"),
        (lambda: priors.LearnedNormal(2, min_scale=None), TypeError, "min_scale must be a number"),
        (lambda: priors.MixtureOfGaussians(2, init_spread="x"), TypeError, "init_spread"),
        (lambda: priors.FlowPrior(2, hidden=[True]), ValueError, r"hidden\[0\]"),
        (lambda: priors.FlowPrior(4, hidden=[2]), ValueError, "at least latent_dim=4"),
        (lambda: priors.VampPrior(_guide(), 3, input_shape=[5]), ValueError,
         r"input_shape gives pseudo-inputs of shape \(5,\).*reads inputs of shape \(4,\)"),
        (lambda: priors.VampPrior(_guide(), 3, init=torch.zeros(3, 5)), ValueError,
         r"init gives pseudo-inputs of shape \(5,\)"),
        (lambda: likelihoods.Gaussian(nets.MLP(2, [4], 4), scale="x"), TypeError,
         "scale must be a number"),
        (lambda: likelihoods.Laplace(nets.MLP(2, [4], 4), learn_scale="yes"), TypeError,
         "learn_scale must be True or False"),
    ],
)  # fmt: skip
def test_a_bad_argument_of_a_part_is_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_vamp_prior_on_a_conv_encoder_takes_image_shaped_pseudo_inputs():
    guide = guides.DiagonalNormal(nets.ConvEncoder((1, 8, 8), out_features=8), 2)
    prior = priors.VampPrior(guide, 3, init=torch.rand(3, 1, 8, 8))
    assert prior().event_shape == (2,)


def test_networks_name_the_input_width_they_expect():
    with pytest.raises(ValueError, match=r"MLP expects inputs of shape \(\*batch, 3\)"):
        nets.MLP(3, [4])(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"ConvDecoder expects inputs of shape \(\*batch, 2\)"):
        nets.ConvDecoder(2, (1, 8, 8))(torch.zeros(2, 3))


@pytest.mark.parametrize(
    "prior",
    [
        priors.StandardNormal(3),
        priors.LearnedNormal(3),
        priors.MixtureOfGaussians(3, 2),
        priors.FlowPrior(3),
        priors.VampPrior(guides.DiagonalNormal(nets.MLP(4, [4]), 3), 2),
    ],
    ids=lambda p: type(p).__name__,
)
def test_priors_name_latents_of_the_wrong_size_or_kind(prior):
    with pytest.raises(ValueError, match=r"z must have shape \(\*batch, 3\), got \(2, 5\)"):
        prior.log_prob(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="z must have a floating dtype"):
        prior.log_prob(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        prior.log_prob([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"q must have event shape \(3,\), got \(2,\)"):
        prior.kl_from(_guide()(torch.zeros(2, 4)))


def test_networks_and_likelihoods_name_inputs_of_the_wrong_dtype_or_batch():
    with pytest.raises(
        TypeError, match="MLP expects inputs of dtype torch.float32, got torch.int64"
    ):
        _guide()(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="ConvEncoder expects inputs of dtype torch.float32"):
        nets.ConvEncoder((1, 8, 8))(torch.zeros(2, 64, dtype=torch.float64))
    with pytest.raises(TypeError, match="RecurrentEncoder expects a torch.Tensor"):
        nets.RecurrentEncoder(2, hidden_size=4)([[0.0, 0.0]])
    likelihood = likelihoods.Bernoulli(nets.MLP(2, [4], 6))
    with pytest.raises(ValueError, match=r"x has batch shape \(3,\).*against z's \(2,\)"):
        likelihood.log_prob(torch.zeros(3, 6), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="x must have a floating dtype, got torch.int64"):
        likelihood.log_prob(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 2))


def test_networks_leave_autocast_its_casts():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nets.MLP(4, [4], 2)(torch.zeros(2, 4, dtype=torch.bfloat16)).shape == (2, 2)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((0, [([4], 2)]), ValueError, "data_dim must be a positive integer"),
        ((6, []), ValueError, "layers must name at least one stochastic layer"),
        ((6, "ab"), ValueError, "layers must name at least one stochastic layer"),
        ((6, [3]), ValueError, r"layers\[0\] must be a pair"),
        ((6, [([], 2)]), ValueError, r"layers\[0\]\[0\] must hold at least one"),
        ((6, [([4], 0)]), ValueError, r"layers\[0\]\[1\] must be a positive integer"),
    ],
)
def test_hierarchical_mlp_names_the_bad_layer(args, error, match):
    with pytest.raises(error, match=match):
        HierarchicalVAE.mlp(*args)
    with pytest.raises(TypeError, match="likelihood must be a Likelihood class"):
        HierarchicalVAE.mlp(6, [([4], 2)], likelihood=3)
    with pytest.raises(TypeError, match="activation must be a callable"):
        HierarchicalVAE.mlp(6, [([4], 2)], activation=3)


def test_encode_and_decode_check_their_input_against_the_vae():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"x has event shape \(5,\), the model expects \(12,\)"):
        vae.encode(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the VAE's parameters"):
        vae.reconstruct(torch.zeros(2, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"z must have shape \(\*batch, 3\)"):
        vae.decode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="z holds NaN"):
        vae.decode(torch.full((2, 3), math.nan))
    # The encoder reads grey levels even where the likelihood wants binary data.
    assert vae.reconstruct(torch.full((2, 12), 0.5)).shape == (2, 12)


# --------------------------------------------------------------------------- evaluate


def _programs(vae):
    return vae.model, vae.guide


ALL_EVALUATE = [
    lambda vae, x: evaluate.log_weights(*_programs(vae), x, 2),
    lambda vae, x: evaluate.log_likelihood(*_programs(vae), x, 2),
    lambda vae, x: evaluate.elbo(*_programs(vae), x, 2),
    lambda vae, x: evaluate.iwae_bounds(*_programs(vae), x, (1, 2)),
    lambda vae, x: evaluate.elbo_terms(*_programs(vae), x),
]
GUIDE_ONLY = [
    lambda vae, x: evaluate.unit_activity(vae.guide, x),
    lambda vae, x: evaluate.active_units(vae.guide, x),
]


@pytest.mark.parametrize("function", ALL_EVALUATE + GUIDE_ONLY)
def test_evaluation_checks_x_against_the_vae(function):
    vae = small_vae()
    with pytest.raises(ValueError, match=r"x has event shape \(5,\), the model expects \(12,\)"):
        function(vae, torch.zeros(4, 5))
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the VAE's parameters"):
        function(vae, torch.zeros(4, 12, dtype=torch.float64))


@pytest.mark.parametrize("function", ALL_EVALUATE)
def test_evaluation_checks_x_against_the_likelihoods_support(function):
    """elbo_terms let Pyro's own error through before; every function names x now."""
    with pytest.raises(ValueError, match="x has values outside the support of the Bernoulli"):
        function(small_vae(), torch.full((4, 12), 0.5))


@pytest.mark.parametrize("function", GUIDE_ONLY)
def test_the_guide_alone_reads_grey_levels(function):
    """Only the likelihood has a support: the encoder reads grey levels like any input."""
    result = function(small_vae(), torch.rand(4, 12))
    if isinstance(result, dict):  # unit_activity: Var_x(E_q[z_u|x]) per latent site
        assert all(torch.isfinite(v).all() and (v >= 0).all() for v in result.values())
    else:  # active_units: a count of the 3 latent units
        assert 0 <= result <= 3


def test_evaluation_names_the_device_of_x():
    vae = small_vae().to("meta")
    with pytest.raises(ValueError, match="x is on cpu but the VAE is on meta"):
        evaluate.elbo(vae.model, vae.guide, binary_data(4), 2)


def test_evaluation_of_other_programs_names_x_that_does_not_fit():
    vae = small_vae()

    def model(x):
        vae.model(x)

    def guide(x):
        vae.guide(x)

    with pytest.raises(ValueError, match=r"x of shape \(4, 5\) does not fit the model and guide"):
        evaluate.log_likelihood(model, guide, torch.zeros(4, 5), 2)
    with pytest.raises(ValueError, match=r"x of shape \(4, 5\) does not fit the model and guide"):
        evaluate.unit_activity(guide, torch.zeros(4, 5))
    with pytest.raises(TypeError, match="model must be a Pyro program"):
        evaluate.elbo(3, guide, binary_data(4), 2)
    with pytest.raises(TypeError, match="guide must be a Pyro program"):
        evaluate.unit_activity(None, binary_data(4))


def test_the_aggregate_posterior_names_its_bad_arguments():
    encoder, x = _guide(), torch.rand(5, 4)
    with pytest.raises(TypeError, match="encoder must be a guide module"):
        latent.aggregate_posterior_log_prob(3, x, torch.zeros(2, 2))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        latent.aggregate_posterior_log_prob(encoder, x, [[0.0, 0.0]])
    with pytest.raises(TypeError, match="z must have a floating dtype"):
        latent.aggregate_posterior_log_prob(encoder, x, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="z has dtype torch.float64 but x has torch.float32"):
        latent.aggregate_posterior_log_prob(encoder, x, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x of shape \(5, 7\) does not fit the encoder"):
        latent.aggregate_posterior_log_prob(encoder, torch.rand(5, 7), torch.zeros(2, 2))
    for limit in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="limit must be a finite number > 0"):
            latent.grid(limit, 3)
    with pytest.raises(TypeError, match="limit must be a number"):
        latent.grid("2", 3)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        latent.grid(2.0, 0)


# --------------------------------------------------------------------------- plots


@pytest.mark.parametrize(
    "args, error, match",
    [
        (([[0.5] * 12], (1, 3, 4)), TypeError, "images must be a torch.Tensor"),
        ((torch.rand(3, 7), (1, 3, 4)), ValueError, r"do not hold images of shape \(1, 3, 4\)"),
        ((torch.rand(3, 12), "ab"), TypeError, "image_shape must be a shape"),
        ((torch.rand(3, 12), (1, 0, 12)), ValueError, "image_shape must be a shape"),
        ((torch.rand(3, 12), (1, 3, 4), 0), ValueError, "ncols must be a positive integer"),
        ((torch.rand(3, 12), (1, 3, 4), None, -1), ValueError, "pad must be an integer >= 0"),
    ],
)
def test_image_grids_name_their_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        plots.image_grid(*args)


@pytest.mark.parametrize(
    "name, match",
    [
        ("s.xyz", "path must end in an image format suffix"),
        ("noext", "path must end in an image format suffix"),
        ("a-folder", "is a folder; expected a file path"),
        ("a-file/s.png", "a-file is a file, not a folder"),
    ],
)
def test_figures_refuse_a_path_they_cannot_write(tmp_path, name, match):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    before = _listing(tmp_path)
    with pytest.raises(ValueError, match=match):
        plots.save_samples(small_vae(data_dim=16), (1, 4, 4), tmp_path / name, 4)
    assert _listing(tmp_path) == before


def test_a_figure_that_fails_to_write_leaves_no_folder_or_temporary_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(*args, **kwargs):
        raise OSError("disk full (test)")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.save_samples(small_vae(data_dim=16), (1, 4, 4), tmp_path / "a" / "b" / "s.png", 4)
    assert _listing(tmp_path) == set()


def test_figures_name_their_bad_arguments(tmp_path):
    vae, path = small_vae(data_dim=16), tmp_path / "f.png"
    with pytest.raises(TypeError, match="vae must be a pyro_vae.VAE"):
        plots.save_samples(3, (1, 4, 4), path)
    with pytest.raises(ValueError, match=r"images of shape \(4, 16\) do not hold images"):
        plots.save_samples(vae, (1, 3, 5), path, 4)
    with pytest.raises(ValueError, match=r"x has event shape \(12,\), the model expects \(16,\)"):
        plots.save_reconstructions(vae, torch.zeros(3, 12), (1, 4, 4), path)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        plots.save_reconstructions(vae, binary_data(3, 16), (1, 4, 4), path, num=0)
    with pytest.raises(TypeError, match="history must be a pyro_vae.History"):
        plots.save_learning_curves([1, 2], path)
    with pytest.raises(TypeError, match="comparison must be a Comparison"):
        plots.save_comparison({}, path)
    with pytest.raises(ValueError, match=r"rows\[0\] must be a dict with keys"):
        plots.save_gradient_stats([{"k": 1}], path)
    with pytest.raises(TypeError, match="vaes must be a dict of label -> pyro_vae.VAE"):
        plots.save_priors_and_aggregate_posteriors([vae], binary_data(3, 16), path)
    vae2 = small_vae(data_dim=16, latent_dim=2)
    with pytest.raises(ValueError, match="x has event shape"):
        plots.save_priors_and_aggregate_posteriors({"a": vae2}, torch.zeros(3, 5), path)
    assert not path.exists()


# --------------------------------------------------------------------------- data


def test_data_loading_names_a_bad_root_or_download(tmp_path):
    with pytest.raises(TypeError, match="root must be a path"):
        data.load("mnist", root=3)
    with pytest.raises(TypeError, match="download must be True or False"):
        data.load("mnist", root=tmp_path, download="no")


def test_a_corrupt_mnist_file_says_what_to_do_and_downloads_nothing(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    (tmp_path / "mnist.npz").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a zip archive.*delete it, or replace it"):
        data.load("mnist", "test", root=tmp_path)


# --------------------------------------------------------------------------- compare

COMPARE_SMALL = dict(objectives="elbo", epochs=1, batch_size=10, bound_ks=(1,), num_samples=2,
                     gradient_ks=(), progress=False)  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"train": torch.zeros(20, 5)}, ValueError, "train has event shape"),
        ({"valid": binary_data(10).double()}, TypeError, "valid has dtype torch.float64"),
        ({"test": torch.full((5, 12), 0.5)}, ValueError, "test has values outside the support"),
        ({"train": torch.full((20, 12), 255.0), "binarize": True}, ValueError,
         r"train must hold intensities in \[0, 1\]"),
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"lr": -1}, ValueError, "lr must be a positive number"),
        ({"seed": -1}, ValueError, r"seed must be an integer in \[0, 2\*\*32\)"),
        ({"device": "tpu"}, ValueError, "device must be"),
        ({"eval_batch_size": 0}, ValueError, "eval_batch_size must be a positive integer"),
        ({"progress": "yes"}, TypeError, "progress must be True or False"),
        ({"bound_ks": 5}, TypeError, "bound_ks must be a list of positive integers"),
    ],
)  # fmt: skip
def test_compare_names_a_bad_argument_before_any_work(tmp_path, kwargs, error, match):
    args = dict(train=binary_data(20), valid=binary_data(10), test=binary_data(5))
    args |= COMPARE_SMALL | {"out": tmp_path / "cmp"} | kwargs
    train = args.pop("train")
    with pytest.raises(error, match=match):
        pv.compare(small_vae(), train, **args)
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_a_file_as_its_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="out=.* is a file; expected a folder"):
        pv.compare(small_vae(), binary_data(20), valid=binary_data(10), test=binary_data(5),
                   out=tmp_path / "f", **COMPARE_SMALL)  # fmt: skip


# --------------------------------------------------------------------------- the CLI


def _parse(argv: list[str], cwd: Path):
    """(exit code, stderr, parsed args or None) with the command itself stubbed."""
    parsed: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, f"_{argv[0]}", parsed.append)
        code, err = _run(argv, cwd)
    return code, err, (parsed[0] if parsed else None)


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
    before = _listing(tmp_path)
    target = str(tmp_path / out) if out else ""
    code, err = _run([command, *TINY, "--out", target, "--no-progress"], tmp_path)
    assert code == 2 and match.format(target) in _one_line(err)
    assert _listing(tmp_path) == before


def test_an_unwritable_out_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    code, err = _run(["train", *TINY, "--out", str(tmp_path / "run")], tmp_path)
    assert code == 2 and "cannot be written: no write permission" in _one_line(err)


def test_a_train_that_fails_after_creating_its_folder_removes_it(tmp_path):
    """An allocation that fails at the first step: one line, and the new folder is gone."""
    argv = ["train", *TINY, "--num-particles", HUGE, "--no-progress", "--out"]
    code, err = _run([*argv, str(tmp_path / "new" / "run")], tmp_path)
    assert code == 2 and "out of memory" in _one_line(err)
    assert _listing(tmp_path) == set()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "keep.txt").write_text("mine")
    code, err = _run([*argv, str(tmp_path / "kept")], tmp_path)
    assert code == 2 and _listing(tmp_path) == {tmp_path / "kept", tmp_path / "kept" / "keep.txt"}


def test_a_compare_that_fails_while_training_removes_its_folder(tmp_path):
    argv = ["compare", *TINY, *TINY_COMPARE, "--objectives", f"elbo,iwae:k={HUGE}"]
    code, err = _run([*argv, "--no-progress", "--out", str(tmp_path / "cmp")], tmp_path)
    assert code == 2 and "out of memory" in _one_line(err)
    assert _listing(tmp_path) == set()


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
    before = _listing(files["folder"].parent)
    code, err = _run([command, str(files[name])], tmp_path)
    assert code == 2 and match in _one_line(err)
    assert _listing(files["folder"].parent) == before


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
    before = _listing(tmp_path)
    code, err = _run(["sample", str(files["checkpoint"]), "--out", str(tmp_path / out)], tmp_path)
    assert code == 2 and match in _one_line(err)
    assert _listing(tmp_path) == before


def test_sample_to_an_unwritable_place_is_one_line(files, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    code, err = _run(
        ["sample", str(files["checkpoint"]), "--out", str(tmp_path / "s.png")], tmp_path
    )
    assert code == 2 and "--out=" in err and "no write permission" in _one_line(err)
    assert _listing(tmp_path) == set()


def test_sample_creates_the_folders_of_its_out(files, tmp_path):
    target = tmp_path / "new" / "deep" / "s.png"
    code, err = _run(
        ["sample", str(files["checkpoint"]), "--num", "4", "--out", str(target)], tmp_path
    )
    assert code == 0, err
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_a_corrupt_mnist_file_in_the_data_dir_is_one_line_saying_what_to_do(files, tmp_path):
    argv = ["train", *TINY, "--dataset", "mnist", "--data-dir", str(files["mnist_dir"])]
    code, err = _run([*argv, "--out", str(tmp_path / "run")], tmp_path)
    line = _one_line(err)
    assert code == 2 and "delete it, or replace it with a good copy of mnist.npz" in line
    assert not (tmp_path / "run").exists()


def test_mnist_that_is_nowhere_says_where_to_put_it_offline(tmp_path):
    argv = ["train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "none")]
    code, err = _run([*argv, "--out", str(tmp_path / "run")], tmp_path)
    line = _one_line(err)
    assert code == 2 and "Place mnist.npz" in line and "offline (test)" in line
    assert _listing(tmp_path) == set()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"latent_dim": 0}, "config['latent_dim'] must be a positive integer"),
        ({"hidden": "16"}, "config['hidden'] must be a list"),
        ({"image_shape": [1, 8]}, "config['image_shape'] must be a shape of 3 positive"),
        ({"prior": "gauss"}, "config['prior'] must be one of"),
        ({"scale": -1}, "config['scale'] must be a positive finite number"),
        ({"learn_scale": "no"}, "config['learn_scale'] must be true or false"),
        ({"components": 2.5}, "config['components'] must be a positive integer"),
    ],
)
def test_build_vae_names_the_bad_config_key(change, match):
    config = {"dataset": "digits", "image_shape": [1, 8, 8], "prior": "standard-normal",
              "guide": "diagonal-normal", "likelihood": "bernoulli", "scale": 0.1,
              "learn_scale": False, "net": "mlp", "hidden": [16], "latent_dim": 3,
              "binarization": "dynamic"}  # fmt: skip
    cli.build_vae(config)
    with pytest.raises((ValueError, TypeError), match=re.escape(match)):
        cli.build_vae(config | change)
    with pytest.raises(TypeError, match="config must be a dict"):
        cli.build_vae([1])


# ----------------------------------------------------------- fit, checkpoints, gradients


def test_fit_names_a_learning_rate_too_large_for_float32():
    with pytest.raises(ValueError, match="lr"):
        pv.fit(small_vae(), binary_data(20), epochs=1, lr=1e300, progress=False)


@pytest.mark.parametrize("seed", [-1, 2**32, 2.5, True])
def test_fit_names_a_bad_seed(seed):
    with pytest.raises((ValueError, TypeError), match=r"\bseed\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, seed=seed, progress=False)


def test_fit_names_validation_data_of_another_dtype():
    with pytest.raises(TypeError, match="valid has dtype"):
        pv.fit(small_vae(), binary_data(20), valid=binary_data(10).double(), epochs=1,
               progress=False)  # fmt: skip


def test_fit_names_an_out_that_is_not_a_path():
    with pytest.raises(TypeError, match=r"\bout\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, out=3, progress=False)


def test_fit_refuses_an_empty_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"\bout\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, out="", progress=False)


def test_fit_names_an_out_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"\bout\b"):
        pv.fit(small_vae(), binary_data(20), epochs=1, out=tmp_path / "f" / "run",
               progress=False)  # fmt: skip


def test_loading_a_text_file_as_a_checkpoint_is_a_value_error(tmp_path):
    (tmp_path / "c.pt").write_text("hello\n")
    with pytest.raises(ValueError, match="c.pt"):
        checkpoints.load(tmp_path / "c.pt")


def test_gradient_stats_names_x_of_the_wrong_shape():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"\bx\b"):
        pv.gradients.gradient_stats(objectives.make("elbo"), vae.model, vae.guide,
                                    torch.zeros(4, 5), 2)  # fmt: skip
