"""A published configuration, in full: :class:`Recipe` (the recipes themselves: :mod:`.recipes`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyro_vae.infer import objectives
from pyro_vae.train import schedules
from pyro_vae.train.options import FitOptions

__all__ = ["Recipe"]

# The smoke test: the same recipe on the embedded digits, for a few seconds.
_SMOKE = {
    "dataset": "mnist5k", "epochs": 2, "eval_samples": 10, "eval_examples": 100,
    "test_every": 1, "test_samples": 5, "test_examples": 50,
}  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """A published configuration.

    Attributes:
        name: the recipe's name (``pyro-vae reproduce NAME``).
        reference: the paper, and where in it the figures stand.
        model: the registry config of the network (:func:`pyro_vae.registry.build_vae`).
        published: objective spec -> the paper's test −log p(x) in nats, for each
            objective the recipe offers (``None``: the paper has no such row;
            compared with ``compare_with`` instead).
        compare_with: objective -> the published objective it is measured against.
        default_objective: the objective when none is named.
        train_split: the training data (the paper's 60,000 images: ``train+valid``).
        valid_split, patience: early stopping on the validation images (``None``: none).
        valid_objective: the validation loss (``None``: the training objective). With a
            KL warm-up it must be the plain bound: the warm-up's loss rises with β, which
            would stop a run during the warm-up.
        epochs, batch_size, lr, lr_schedule, adam_betas, adam_eps: the optimisation.
        eval_samples: K of the final test log p(x) (the paper's 5000).
        eval_examples: test images of the final score (``None``: all 10,000).
        test_every, test_samples, test_examples: the anytime curve (K and a
            class-balanced subset of the test images), logged every N epochs.
        output_bias_from_data: start the Bernoulli decoder's output bias at the logit
            of the mean training image (:func:`pyro_vae.init.output_bias_from_data_`).
        notes: what differs from the paper, said plainly.
    """

    name: str
    reference: str
    model: dict[str, Any]
    published: dict[str, float | None]
    default_objective: str
    compare_with: dict[str, str] = field(default_factory=dict)
    dataset: str = "mnist"
    train_split: str = "train+valid"
    valid_split: str | None = None
    patience: int | None = None
    valid_objective: str | None = None
    epochs: int = 3280
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: str = "burda2015"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-4
    eval_samples: int = 5000
    eval_examples: int | None = None
    test_every: int = 20
    test_samples: int = 1000
    test_examples: int = 1000
    output_bias_from_data: bool = False
    notes: str = ""

    def paper_value(self, objective: str) -> tuple[float | None, str]:
        """The published −log p(x) that ``objective`` is compared with, and its row's name."""
        spec = objectives.parse(objective).label
        if spec not in self.published:
            raise ValueError(
                f"recipe {self.name!r} has no objective {spec!r}; choose one of: "
                f"{', '.join(self.published)}"
            )
        against = self.compare_with.get(spec, spec)
        return self.published[against], against

    def fit_options(self, objective: str, epochs: int | None = None) -> FitOptions:
        """The recipe's training options with ``objective``: dynamic binarisation,
        seed 0, and the paper's optimisation (``epochs``: a shorter budget, such as
        a smoke test's)."""
        return FitOptions(
            objective=objective, valid_objective=self.valid_objective, patience=self.patience,
            epochs=epochs if epochs is not None else self.epochs, batch_size=self.batch_size,
            lr=self.lr, lr_schedule=self.lr_schedule, adam_betas=self.adam_betas,
            adam_eps=self.adam_eps, binarize=True, seed=0,
        )  # fmt: skip

    def plan(self, smoke_test: bool = False) -> dict[str, Any]:
        """The budget and protocol of a run: ``dataset``, ``epochs``, ``eval_samples``,
        ``eval_examples``, ``test_every``, ``test_samples`` and ``test_examples``, the
        recipe's or, with ``smoke_test``, those of a few seconds on the embedded digits.

        Raises:
            ValueError: the recipe's learning-rate schedule and its epochs disagree.
        """
        plan = {
            "dataset": self.dataset, "epochs": self.epochs, "eval_samples": self.eval_samples,
            "eval_examples": self.eval_examples, "test_every": self.test_every,
            "test_samples": self.test_samples, "test_examples": self.test_examples,
        }  # fmt: skip
        if smoke_test:
            return plan | _SMOKE
        schedule = schedules.parse(self.lr_schedule)
        if schedule.epochs is not None and schedule.epochs != self.epochs:
            raise ValueError(  # a recipe whose schedule and budget disagree is a typo
                f"recipe {self.name!r}: its schedule has {schedule.epochs} epochs, "
                f"its budget {self.epochs}"
            )
        return plan
