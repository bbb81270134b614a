"""Recipes: published VAE configurations, in full, that ``reproduce`` trains and scores.

A :class:`Recipe` states everything a paper's number depends on: the network
(through the registry's config, :func:`pyro_vae.registry.build_vae`), the
likelihood, the data and binarisation, the objective, the optimiser and its
learning-rate schedule, the batch size, the epochs, the evaluation protocol and
the published figure. :func:`reproduce` trains one into a run folder, which
survives any interruption (``resume=True`` goes on exactly where it stopped; a
run refuses to resume under another recipe or objective), logs an anytime test
curve, and at the end scores it with the paper's protocol and writes its row of
``REPRODUCTION.md`` (:mod:`pyro_vae.lab._reproduction`).

    pv.recipes.reproduce("burda2015-1layer", "iwae:k=5", out="runs/iwae5", data_dir="/data")

Runs compare while they train: :func:`anytime_curve` reads a run folder's anytime
curve as it stands, and :func:`at_equal_epochs` sets two runs side by side at the
epochs both measured, with a projection of one still training from a finished
reference (:mod:`pyro_vae.lab._orderings`)::

    pair = pv.recipes.at_equal_epochs(
        pv.recipes.anytime_curve("runs/burda2015-1layer_elbo"),
        pv.recipes.anytime_curve("runs/burda2015-2layer_elbo"),
    )
    pair.differences, pair.projection()

References:
    1. Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders.
       ICLR 2016 (arXiv:1509.00519): Table 1, section 5 and appendix C.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from pyro_vae import _defaults, data
from pyro_vae.infer import objectives
from pyro_vae.lab._orderings import AnytimeCurve, EqualEpochs, Projection, at_equal_epochs
from pyro_vae.lab._recipe import Recipe
from pyro_vae.lab._reproduction import Reproduction, device_name, final_scores, write_results
from pyro_vae.lab._run_files import read_json, read_log, scored_epoch
from pyro_vae.models import init
from pyro_vae.models.registry import build_vae
from pyro_vae.models.vae import VAE
from pyro_vae.train import checkpoints
from pyro_vae.train._fit import fit
from pyro_vae.train._history import History
from pyro_vae.train._run_folder import RunFolder
from pyro_vae.train.runs import saved_history

__all__ = [
    "Recipe", "RECIPES", "Reproduction", "get", "names", "reproduce",
    "AnytimeCurve", "EqualEpochs", "Projection", "anytime_curve", "at_equal_epochs",
]  # fmt: skip


_MNIST = {"dataset": "mnist", "image_shape": [1, 28, 28], "binarization": "dynamic"}
_PARTS = {"prior": "standard-normal", "guide": "diagonal-normal", "likelihood": "bernoulli"}
_MLP = {"net": "mlp", "activation": "tanh", "scale": _defaults.LIKELIHOOD_SCALE}
_MLP |= {"learn_scale": False}
_BURDA = (
    "Burda, Grosse & Salakhutdinov (2015), Importance weighted autoencoders, Table 1 "
    "(MNIST, test −log p(x) with K = 5000)"
)
_BURDA_NOTES = (
    "As the paper's code (github.com/yburda/iwae): batch 20, dynamic binarisation, no early "
    "stopping, Glorot-uniform weights, zero biases and the decoder's output bias at the "
    "logit of the mean training image. Differences: all 60,000 training images (the code "
    "holds out 400), reshuffled every epoch (the code keeps one order), the exact rates "
    "0.001·10^(−i/7) (the code rounds them to two digits), and the Gaussians' scale is "
    "softplus + 1e-4 (the code's is exp)."
)
_ONE_LAYER = {**_MNIST, **_PARTS, **_MLP, "init": "glorot", "hidden": [200, 200]}
_ONE_LAYER |= {"latent_dim": 50}
_TWO_LAYER = {**_ONE_LAYER, "latent_dim": 100, "layers": [[[200, 200], 100], [[100, 100], 50]]}


def _burda_table(
    vae1: float, vae5: float, vae50: float, iwae5: float, iwae50: float
) -> dict[str, float | None]:
    """A row of Burda et al.'s Table 1: VAE at k = 1, 5, 50 and IWAE at k = 5, 50 (IWAE at
    k = 1 is the VAE); DReG has no figure there and is compared with IWAE at its k."""
    return {
        "elbo": vae1, "elbo:k=5": vae5, "elbo:k=50": vae50, "iwae:k=5": iwae5,
        "iwae:k=50": iwae50, "iwae-dreg:k=5": None, "iwae-dreg:k=50": None,
    }  # fmt: skip


_DREG = {"iwae-dreg:k=5": "iwae:k=5", "iwae-dreg:k=50": "iwae:k=50"}
# The paper's code (optimizers.py, iwae.py) runs Adam with β₁ = 0.99 where the paper says 0.9,
# on the gradient summed over the batch of 20, where pv.fit's loss is the mean: Adam's update
# m / (√v + ε) is the same on a gradient 20× smaller with ε/20.
_CODE_ADAM = {"adam_betas": (0.99, 0.999), "adam_eps": 1e-4 / 20}
_CODE_NOTES = (
    "The paper's published code where it differs from the paper's text: Adam with β₁ = 0.99 "
    "(the text: 0.9) on the gradient summed over the batch of 20, which with ε = 1e-4 is "
    "Adam on pv.fit's mean gradient with ε = 5e-6. Otherwise as burda2015-1layer. Still "
    "different: the code starts Adam's second moments at 1 (a warm-up over its first few "
    "thousand steps), not 0."
)

RECIPES: dict[str, Recipe] = {
    "burda2015-1layer": Recipe(
        "burda2015-1layer",
        _BURDA + ", one stochastic layer: 784-200-200-50, tanh",
        _ONE_LAYER,
        _burda_table(86.76, 86.47, 86.35, 85.54, 84.78),
        "elbo",
        compare_with=_DREG,
        batch_size=20,
        output_bias_from_data=True,
        notes=_BURDA_NOTES,
    ),
    "burda2015-2layer": Recipe(
        "burda2015-2layer",
        _BURDA + ", two stochastic layers: 784-200-200-100-100-100-50, tanh",
        _TWO_LAYER,
        _burda_table(85.33, 85.01, 84.78, 83.89, 82.90),
        "elbo",
        compare_with=_DREG,
        batch_size=20,
        output_bias_from_data=True,
        notes=_BURDA_NOTES,
    ),
}

RECIPES["burda2015-1layer-code"] = replace(
    RECIPES["burda2015-1layer"],
    name="burda2015-1layer-code",
    reference=_BURDA + ", one stochastic layer, with the optimiser of the paper's code",
    notes=_BURDA_NOTES + " " + _CODE_NOTES,
    **_CODE_ADAM,
)

_VAMP = (
    "Tomczak & Welling (2018), VAE with a VampPrior, Table 2 (MNIST, dynamic binarisation, "
    "test −log p(x) with K = 5000), one stochastic layer: gated 784-300-300-40 MLPs"
)
_VAMP_NOTES = (
    "The paper's gated units, He-normal weights (as its code), warm-up (β from 0 to 1 over "
    "100 epochs), Adam at 5e-4, batch 100, up to 2000 epochs with early stopping after 50 "
    "without improvement of the validation ELBO (β = 1, as the code's). Differences: the "
    "guide's scale is softplus + 1e-4 (the paper clips the log-variance to [-6, 2]), the "
    "pseudo-inputs are not clipped to [0, 1], "
    "and the optimiser is Adam (the code normalises each gradient first)."
)
_GATED = {**_MNIST, **_PARTS, **_MLP, "activation": "gated", "hidden": [300, 300]}
_GATED |= {"latent_dim": 40, "init": "he"}
_WARMUP = "elbo:warmup_steps=50000"  # 100 epochs of 500 steps (50,000 images, batch 100)
_VAMP_BUDGET = {
    "train_split": "train", "valid_split": "valid", "valid_objective": "elbo", "patience": 50,
    "epochs": 2000,
    "lr": 5e-4, "lr_schedule": "constant", "adam_eps": 1e-8, "notes": _VAMP_NOTES,
}  # fmt: skip
RECIPES["vampprior2018"] = Recipe(
    "vampprior2018",
    _VAMP + ", the VampPrior with 500 pseudo-inputs",
    {**_GATED, "prior": "vamp", "components": 500},
    {_WARMUP: 85.57},
    _WARMUP,
    **_VAMP_BUDGET,
)
RECIPES["vampprior2018-standard"] = Recipe(
    "vampprior2018-standard",
    _VAMP + ", the standard normal prior (the paper's baseline)",
    _GATED,
    {_WARMUP: 88.56},
    _WARMUP,
    **_VAMP_BUDGET,
)


def names() -> tuple[str, ...]:
    """The recipes' names."""
    return tuple(RECIPES)


def get(name: str) -> Recipe:
    """The recipe called ``name``.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]


def reproduce(
    name: str,
    objective: str | None = None,
    *,
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    max_minutes: float | None = None,
    device: str | torch.device | None = None,
    table: str | os.PathLike | None = "REPRODUCTION.md",
    smoke_test: bool = False,
    progress: bool = True,
) -> Reproduction:
    """Trains recipe ``name`` with ``objective`` into the run folder ``out`` and scores it.

    Arguments:
        name: a recipe of :data:`RECIPES`.
        objective: one of the recipe's objectives (default: its ``default_objective``).
        out: the run folder.
        data_dir: where full MNIST is (as ``pyro_vae.data.load``'s ``root``).
        resume: continue the run in ``out`` (it must be of the same recipe and objective).
        max_minutes: stop at the first checkpoint past this wall-clock budget; resume later.
        device: ``"cpu"`` or ``"cuda"`` (default: the CPU).
        table: the Markdown file that gets the run's row (``None``: none).
        smoke_test: the recipe on the embedded ``mnist5k`` for 2 epochs with tiny
            evaluations: checks the whole path in seconds; its row says so.
        progress: print progress.

    Returns:
        a :class:`Reproduction` with the history, and the final scores once the run has
        trained all its epochs (``None`` before).

    Raises:
        ValueError: an unknown recipe or objective, a run of another recipe or
            objective in ``out``, or bad data.
        FileNotFoundError: full MNIST is not in ``data_dir`` and cannot be downloaded.
        KeyboardInterrupt: Ctrl-C (or SIGTERM under ``pyro-vae``), in training or in the
            final scoring; ``table`` first gets the row of the run's last checkpoint, marked
            in progress, and ``resume=True`` goes on from that checkpoint.
    """
    recipe = get(name)
    objective = objectives.parse(objective or recipe.default_objective).label
    recipe.paper_value(objective)  # refuses an objective the recipe does not offer
    plan = recipe.plan(smoke_test)
    train, valid, test, anytime = _recipe_data(recipe, plan, data_dir, smoke_test)
    # The recipe first: resuming under another one names it before any part of the model.
    config = {"recipe": name, "smoke_test": smoke_test, **recipe.model, "dataset": plan["dataset"]}
    folder = RunFolder(out)
    with folder.lock():
        torch.manual_seed(0)
        vae = build_vae(config)
        if recipe.output_bias_from_data:  # a resumed run then loads its own parameters
            init.output_bias_from_data_(vae, train)
        options = recipe.fit_options(objective, plan["epochs"]).replace(config=config)

        def result_of(history: History, scores: dict[str, Any] | None) -> Reproduction:
            device_used = device_name(next(vae.parameters()).device)  # where fit moved it
            return Reproduction(
                recipe, objective, history, scores, Path(out), smoke_test, plan, device_used
            )

        try:
            history = fit(
                vae, train, options, valid=valid, device=device, out=out, resume=resume,
                test=test[anytime], test_every=plan["test_every"],
                test_samples=plan["test_samples"], max_minutes=max_minutes, progress=progress,
            )  # fmt: skip
            if history.out_of_time:
                scores = None
            else:
                scores = _score(vae, test, history, plan, data_dir, folder)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM under the command line
            _write_saved_row(folder, table, result_of)
            raise
        result = result_of(history, scores)
        write_results(result, table)
    return result


def _score(
    vae: VAE,
    test: torch.Tensor,
    history: History,
    plan: dict[str, Any],
    data_dir: str | os.PathLike | None,
    folder: RunFolder,
) -> dict[str, Any]:
    """The final scores (:func:`final_scores`) on the plan's evaluation rows of ``test``,
    computed again unless the run was resumed with nothing to train."""
    rows = data.subset_rows(plan["dataset"], "test", plan["eval_examples"], root=data_dir)
    recompute = not history.nothing_to_do
    return final_scores(
        vae, test[rows], plan["eval_samples"], folder, recompute=recompute,
        epoch=history.kept_epoch,
    )  # fmt: skip


def _recipe_data(
    recipe: Recipe, plan: dict[str, Any], data_dir: str | os.PathLike | None, smoke_test: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """``(train, valid, test, anytime)``: the training images (binarised per step), the
    validation and test images (binarised once) and the rows of ``test`` that the anytime
    estimate uses; ``valid`` is ``None`` where the recipe validates on nothing."""
    dataset = plan["dataset"]
    train = data.load(dataset, "train" if smoke_test else recipe.train_split, root=data_dir)
    test = data.load(dataset, "test", binarize="static", root=data_dir)
    anytime = data.subset_rows(dataset, "test", plan["test_examples"], root=data_dir)
    valid = None
    if recipe.valid_split is not None:
        valid = data.load(dataset, recipe.valid_split, binarize="static", root=data_dir)
    return train, valid, test, anytime


def _write_saved_row(
    folder: RunFolder,
    table: str | os.PathLike | None,
    result_of: Callable[[History, dict[str, Any] | None], Reproduction],
) -> None:
    """After an interrupt: the row of the run's last checkpoint, in progress, which is what
    a resumed run starts from; nothing without a checkpoint or where the table cannot be
    written (the interrupt matters more than the row)."""
    saved = _saved_history(folder)
    if saved is not None:
        with suppress(OSError):
            write_results(result_of(saved, None), table)


def _saved_history(folder: RunFolder) -> History | None:
    """The epochs that the run folder's last checkpoint holds, or ``None`` without one."""
    path = folder.path / "checkpoint.pt"
    try:
        return saved_history(path, checkpoints.load(path))
    except (OSError, checkpoints.CheckpointError):
        return None


def anytime_curve(path: str | os.PathLike) -> AnytimeCurve:
    """The anytime test −log p(x) of the recipe run in folder ``path``, as it stands.

    It reads the folder's ``config.json``, ``log.csv`` and ``metrics.json`` (if
    scored), so a run that is training can be read: each file is replaced whole.

    Raises:
        FileNotFoundError: ``path`` holds no ``config.json`` or ``log.csv``.
        ValueError: the folder is not a run of ``reproduce`` (its config names no
            recipe), names an unknown recipe or objective, or holds a damaged file.
    """
    folder = Path(path)
    for name in ("config.json", "log.csv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} holds no {name}: it is not a run folder")
    config = read_json(folder / "config.json")
    if "recipe" not in config or "objective" not in config:
        raise ValueError(f"{folder} is not a recipe run (its config names no recipe)")
    recipe, objective = get(config["recipe"]), config["objective"]
    paper, _ = recipe.paper_value(objective)
    smoke_test = bool(config.get("smoke_test"))
    plan = recipe.plan(smoke_test)
    trained, points = read_log(folder / "log.csv")
    metrics = folder / "metrics.json"
    final = scored = None
    if metrics.is_file():
        scores = read_json(metrics)
        final, scored = scores.get("nll"), scored_epoch(folder, scores)
    protocol = {key: plan[key] for key in ("dataset", "test_examples", "test_samples")}
    return AnytimeCurve(
        recipe.name, objective, tuple(e for e, _, _ in points), tuple(v for _, _, v in points),
        tuple(h for _, h, _ in points), trained, plan["epochs"], final, paper,
        protocol | {"smoke_test": smoke_test}, folder, scored,
    )  # fmt: skip
