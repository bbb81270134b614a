"""Representative subsets: seeded, class-balanced (or shuffled), the same in every process."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pyro_vae import data


def test_a_subset_of_mnist5k_test_holds_every_class_equally():
    """The split is stored in label order: its first 100 rows are all 0s, the subset's not."""
    labels = data.load_labels("mnist5k", "test")
    assert labels[:100].unique().tolist() == [0]
    rows = data.subset_rows("mnist5k", "test", 100)
    assert len(rows.unique()) == 100
    assert torch.bincount(labels[rows], minlength=10).tolist() == [10] * 10
    assert labels[rows[:10]].tolist() == list(range(10))  # classes take turns


def test_subsets_nest_and_every_prefix_is_balanced():
    labels = data.load_labels("mnist5k", "test")
    rows = data.subset_rows("mnist5k", "test", 95, seed=3)
    assert torch.equal(data.subset_rows("mnist5k", "test", 40, seed=3), rows[:40])
    for n in (1, 7, 23, 95):
        counts = torch.bincount(labels[rows[:n]], minlength=10)
        assert counts.max() - counts.min() <= 1, n


def test_the_seed_fixes_the_subset():
    first = data.subset_rows("mnist5k", "test", 50, seed=1)
    torch.manual_seed(123)  # the global stream plays no part
    assert torch.equal(data.subset_rows("mnist5k", "test", 50, seed=1), first)
    assert not torch.equal(data.subset_rows("mnist5k", "test", 50, seed=2), first)


def test_the_subset_is_the_same_in_another_process():
    code = (
        "from pyro_vae import data; "
        "print(data.subset_rows('mnist5k', 'test', 30, seed=7).tolist()); "
        "print(data.shuffled_rows(1000, 30, seed=7).tolist())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.splitlines() == [
        str(data.subset_rows("mnist5k", "test", 30, seed=7).tolist()),
        str(data.shuffled_rows(1000, 30, seed=7).tolist()),
    ]


def test_a_subset_of_some_classes_keeps_only_them_and_indexes_the_whole_split():
    labels = data.load_labels("mnist5k", "test")
    rows = data.subset_rows("mnist5k", "test", 31, classes=[2, 7, 9])
    assert labels[rows].tolist()[:6] == [2, 7, 9, 2, 7, 9]
    assert torch.bincount(labels[rows], minlength=10)[[2, 7, 9]].tolist() == [11, 10, 10]
    everything = data.subset_rows("mnist5k", "test", None, classes=[4])
    assert sorted(everything.tolist()) == (labels == 4).nonzero().flatten().tolist()


def test_balanced_rows_give_a_class_that_runs_out_turns_to_the_others():
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 2])
    rows = data.balanced_rows(labels, 5, seed=0)
    assert labels[rows].tolist() == [0, 1, 2, 0, 0]
    assert len(data.balanced_rows(labels, None)) == 7 == len(data.balanced_rows(labels, 100))


def test_shuffled_rows_are_a_seeded_draw_without_replacement():
    rows = data.shuffled_rows(50, 20, seed=4)
    assert len(rows.unique()) == 20 and rows.max() < 50 and not torch.equal(rows, torch.arange(20))
    assert torch.equal(rows, data.shuffled_rows(50, 20, seed=4))
    assert sorted(data.shuffled_rows(5, None).tolist()) == [0, 1, 2, 3, 4]


def test_subsets_refuse_bad_arguments():
    with pytest.raises(ValueError, match="num must be a positive integer, got 0"):
        data.balanced_rows(torch.tensor([0, 1]), 0)
    with pytest.raises(ValueError, match="1-D integer tensor of class labels"):
        data.balanced_rows(torch.rand(4), 2)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        data.shuffled_rows(4, 2, seed=-1)
    with pytest.raises(ValueError, match="num_rows must be an integer >= 0"):
        data.shuffled_rows(-1, 2)
    with pytest.raises(ValueError, match="unknown split"):
        data.subset_rows("mnist5k", "tests", 10)
