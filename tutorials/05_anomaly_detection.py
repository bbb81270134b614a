r"""Tutorial 5: what a VAE's likelihood and bottleneck are good for — anomalies and denoising.

**Part 1: anomaly detection.** A VAE trained on "normal" data is a density model
p(x) of that data. Inputs unlike it should get a low log p(x), so the score

.. math::

    s(x) = -\log p(x),

estimated by importance sampling with K draws from q(z|x), is an anomaly detector:
flag x when s(x) exceeds a threshold. Here the normal data are the digits 0–4 and
the anomalies the digits 5–9, which the model never saw. A threshold trades false
alarms against misses; the ROC curve draws the true-positive rate (anomalies caught)
against the false-positive rate (normal digits flagged) for every threshold, and its
area, the AUC, is the probability that a random anomaly scores higher than a random
normal digit (0.5: no better than chance, 1: perfect). The cheaper score -ELBO(x) =
-log p(x) + KL(q(z|x) ‖ p(z|x)) adds the guide's error to the likelihood: it rises
also for inputs the guide encodes badly, which on unseen classes it usually does.

Two caveats the numbers below show. First, likelihood measures how *unlikely*
an input is, which depends on its complexity as much as on its class: a digit
with few strokes (a 1, a 7) costs few nats under any model of digits, so
unseen-but-simple classes score low and unseen-but-complex ones high; the
per-class table prints each class's mean number of lit pixels beside its score.
Nalisnick et al. (2019) found deep generative models giving *higher* likelihood
to out-of-distribution data for this reason. Second, the classes here overlap
(a 4 and a 9, a 3 and a 5), so an AUC of 1 is not to be expected.

**Part 2: denoising.** The encoder maps an image to a point of a 16-dimensional
latent space and the decoder maps it back onto the set of images the model can
produce, so the reconstruction E[x | z = loc q(z|x̃)] of a damaged image x̃ is a
projection of it onto the learned manifold of digits: damage the model cannot
express is removed. When the damaged pixels are known (missing pixels, an
occluding patch), they can be imputed instead: keep the observed pixels, fill
the missing ones from the reconstruction, and repeat — the iterated
reconstruction of Rezende et al. (2014), here with means in place of samples.
A VAE trained on all digits denoises four kinds of damage at five levels; the
mean squared errors against the clean images are printed and drawn. At level 0
the "denoised" error is the model's own reconstruction error, the floor that
blind denoising cannot go below: under light noise the damaged image is closer
to the clean one than any reconstruction, and the bottleneck pays only once the
damage is heavy. Knowing *where* the damage is changes that: imputation keeps
every intact pixel. It suits missing pixels and salt and pepper, whose damaged
pixels carry nothing; for Gaussian noise the "mask" is nearly every pixel, each
still carrying information, and discarding them helps only when the noise is strong.

References:
    1. E. Nalisnick et al. Do deep generative models know what they don't know? ICLR 2019.
    2. D. J. Rezende, S. Mohamed, D. Wierstra. Stochastic backpropagation and approximate
       inference in deep generative models. ICML 2014.

Run::

    python tutorials/05_anomaly_detection.py [--out runs/tutorial05] [--epochs 30] [--smoke-test]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import torch

import pyro_vae as pv
from pyro_vae.analysis.applications import (
    anomaly_scores,
    denoise,
    denoising_errors,
    roc_auc,
    roc_curve,
)

LATENT_DIM, HIDDEN = 16, [400]
IMAGE_SHAPE = (1, 28, 28)
KINDS = ("gaussian", "salt-and-pepper", "dropout", "occlusion")
LEVELS = (0.0, 0.1, 0.2, 0.3, 0.5)
# The damage shown as examples: (kind, level, whether its mask is known and used).
EXAMPLES = (
    ("gaussian", 0.3, False),
    ("salt-and-pepper", 0.2, False),
    ("dropout", 0.5, True),
    ("occlusion", 0.25, True),
)
IMPUTATION_SWEEPS = 10
DESCRIPTIONS = {
    "gaussian": "Gaussian noise, σ = {:g}",
    "salt-and-pepper": "salt and pepper on {:.0%} of the pixels",
    "dropout": "{:.0%} of the pixels missing",
    "occlusion": "a square patch over {:.0%} of the image",
}


def build_vae() -> pv.VAE:
    return pv.VAE(
        prior=pv.priors.StandardNormal(LATENT_DIM),
        likelihood=pv.likelihoods.Bernoulli(pv.nets.MLP(LATENT_DIM, HIDDEN, 784)),
        guide=pv.guides.DiagonalNormal(pv.nets.MLP(784, HIDDEN), latent_dim=LATENT_DIM),
    )


def train(train_x: torch.Tensor, valid_x: torch.Tensor, epochs: int) -> pv.VAE:
    """A VAE on grey levels binarised afresh per batch, keeping its best validation epoch."""
    pyro.set_rng_seed(0)
    vae = build_vae()
    pyro.clear_param_store()
    pv.fit(
        vae,
        train_x,
        valid=valid_x,
        epochs=epochs,
        batch_size=100,
        binarize=True,
        seed=0,
        progress=False,
    )
    return vae.eval()


# --- Part 1: anomaly detection --------------------------------------------------------------


def detection_rate(normal: torch.Tensor, anomalous: torch.Tensor, max_fpr: float) -> float:
    """The share of anomalies caught by the threshold that flags at most ``max_fpr`` of normals."""
    fpr, tpr, _ = roc_curve(normal, anomalous)
    return tpr[fpr <= max_fpr].max().item()


def part1_anomalies(data: dict, args: argparse.Namespace, out: Path) -> list[Path]:
    print("Part 1: a VAE of the digits 0-4 scores the test digits 0-9")
    seen = data["train_labels"] < 5
    tic = time.perf_counter()
    vae = train(data["train"][seen], data["valid"][data["valid_labels"] < 5], args.epochs)
    print(
        f"  trained on {int(seen.sum())} images of the digits 0-4 in "
        f"{time.perf_counter() - tic:.0f} s"
    )
    test, labels = data["test"], data["test_labels"]
    pyro.set_rng_seed(0)
    scores = {
        "-log p(x)": anomaly_scores(vae.model, vae.guide, test, num_samples=args.num_samples),
        "-ELBO": anomaly_scores(
            vae.model, vae.guide, test, num_samples=args.elbo_samples, score="elbo"
        ),
    }
    normal = labels < 5
    print(f"  {'score':<11}{'ROC AUC':>9}{'caught at 5% false alarms':>28}")
    for name, s in scores.items():
        auc = roc_auc(s[normal], s[~normal])
        caught = detection_rate(s[normal], s[~normal], 0.05)
        print(f"  {name:<11}{auc:9.3f}{caught:28.1%}")

    lit = test.sum(1)  # lit pixels of the binarised image: how much there is to explain
    print(f"\n  {'digit':<7}{'seen':<6}{'n':>5}{'-log p(x)':>11}{'-ELBO':>9}{'lit pixels':>12}")
    for digit in range(10):
        rows = labels == digit
        print(
            f"  {digit:<7}{'yes' if digit < 5 else 'no':<6}{int(rows.sum()):5d}"
            f"{scores['-log p(x)'][rows].mean():11.1f}{scores['-ELBO'][rows].mean():9.1f}"
            f"{lit[rows].mean():12.1f}"
        )
    r = torch.corrcoef(torch.stack([scores["-log p(x)"], lit]))[0, 1].item()
    print(f"  correlation of -log p(x) with the lit pixels over all test digits: {r:.2f}\n")

    s = scores["-log p(x)"]
    order = torch.argsort(s)
    extremes = torch.cat([test[order[:12]], test[order[-12:]]])
    figure_labels = ("digits 0-4 (seen)", "digits 5-9 (unseen)")
    return [
        pv.plots.save_anomaly_scores(
            s[normal], s[~normal], out / "anomaly_scores.png", labels=figure_labels
        ),
        pv.plots.save_anomaly_scores(
            scores["-ELBO"][normal],
            scores["-ELBO"][~normal],
            out / "anomaly_scores_elbo.png",
            labels=figure_labels,
            score_name="−ELBO (nats)",
        ),
        pv.plots.save_image_grid(
            extremes,
            IMAGE_SHAPE,
            out / "most_and_least_anomalous.png",
            ncols=12,
            title="the test digits of lowest −log p(x) (top) and highest (bottom)",
        ),
    ]


# --- Part 2: denoising ----------------------------------------------------------------------


def print_errors(rows: list[dict]) -> None:
    print(
        f"  {'kind':<17}{'level':>6}{'changed':>9}{'corrupted':>11}{'denoised':>10}"
        f"{'imputed':>9}   (mean squared error per pixel)"
    )
    for row in rows:
        print(
            f"  {row['kind']:<17}{row['level']:6.2f}{row['changed_fraction']:9.1%}"
            f"{row['corrupted_mse']:11.4f}{row['denoised_mse']:10.4f}{row['imputed_mse']:9.4f}"
        )


def examples(vae: pv.VAE, clean: torch.Tensor, sweeps: int) -> tuple[dict, dict]:
    """Each kind of damage of :data:`EXAMPLES` on ``clean``, and what the VAE makes of it."""
    corrupted, denoised = {}, {}
    for kind, level, masked in EXAMPLES:
        generator = torch.Generator().manual_seed(0)
        damaged, mask = pv.applications.corrupt(
            clean, kind, level, image_shape=IMAGE_SHAPE, generator=generator
        )
        label = DESCRIPTIONS[kind].format(level)
        if masked:
            label += f" (mask known: {sweeps} imputation sweeps)"
            repaired = denoise(vae, damaged, mask=mask, num_iterations=sweeps)
        else:
            repaired = denoise(vae, damaged)
        corrupted[label], denoised[label] = damaged, repaired
    return corrupted, denoised


def part2_denoising(data: dict, args: argparse.Namespace, out: Path) -> list[Path]:
    print("Part 2: a VAE of all digits denoises grey-level test images")
    tic = time.perf_counter()
    vae = train(data["train"], data["valid"], args.epochs)
    print(f"  trained on {len(data['train'])} images in {time.perf_counter() - tic:.0f} s")
    clean = data["test_grey"]
    rows = denoising_errors(
        vae, clean, KINDS, args.levels, image_shape=IMAGE_SHAPE, seed=0, num_iterations=args.sweeps
    )
    print_errors(rows)
    shown = clean[torch.linspace(0, len(clean) - 1, 10).round().long()]
    corrupted, denoised = examples(vae, shown, args.sweeps)
    return [
        pv.plots.save_denoising(
            shown,
            corrupted,
            denoised,
            IMAGE_SHAPE,
            out / "denoising_examples.png",
            title="denoising with a VAE of all digits",
        ),
        pv.plots.save_denoising_errors(rows, out / "denoising_errors.png"),
    ]


def load(smoke_test: bool) -> dict:
    """mnist5k: grey-level training images, statically binarised validation and test images."""
    data = {
        "train": pv.data.load("mnist5k", "train"),
        "train_labels": pv.data.load_labels("mnist5k", "train"),
        "valid": pv.data.load("mnist5k", "valid", binarize="static"),
        "valid_labels": pv.data.load_labels("mnist5k", "valid"),
        "test": pv.data.load("mnist5k", "test", binarize="static"),
        "test_grey": pv.data.load("mnist5k", "test"),
        "test_labels": pv.data.load_labels("mnist5k", "test"),
    }
    if smoke_test:  # a few images of every digit per split
        for split, per_digit in (("train", 20), ("valid", 5), ("test", 10)):
            labels = data[f"{split}_labels"]
            keep = torch.cat([torch.nonzero(labels == d).flatten()[:per_digit] for d in range(10)])
            for key in [k for k in data if k.startswith(split)]:
                data[key] = data[key][keep]
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tutorial05", help="folder for the figures")
    parser.add_argument("--epochs", type=int, default=30, help="epochs for each model")
    parser.add_argument(
        "--num-samples", type=int, default=500, help="importance samples K for the -log p(x) scores"
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="tiny run that only checks the tutorial works"
    )
    args = parser.parse_args()
    args.elbo_samples, args.levels, args.sweeps = 100, LEVELS, IMPUTATION_SWEEPS
    if args.smoke_test:
        args.epochs, args.num_samples, args.elbo_samples = 1, 5, 5
        args.levels, args.sweeps = (0.0, 0.3), 2
    out = Path(args.out)
    tic = time.perf_counter()
    data = load(args.smoke_test)
    written = part1_anomalies(data, args, out) + part2_denoising(data, args, out)
    print("wrote " + ", ".join(str(p) for p in written))
    print(f"total {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
