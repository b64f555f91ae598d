"""Tests for dsco.grids: grid() (its rows, seeds, replicates, workers and what a dataset fixes) and
summary()."""

import numpy as np
import pytest
import torch

from dsco import datasets, grids, surrogates, training
from dsco import evaluate as ev
from dsco.data import load


@pytest.fixture(scope="module")
def train():
    return load("digits", "train")


@pytest.fixture(scope="module")
def small_test():
    test = load("digits", "test")
    return test.subset(torch.arange(0, len(test), 3))  # 150 images, all classes


def test_grid_rows_seeds_and_workers_agree(tmp_path):
    train = load("digits", "train")
    sets = {
        ("random", 1): train.sample_per_class(1, 0),
        ("random", 2): train.sample_per_class(2, 0),
    }
    p = training.get_protocol("hard", "smoke", epochs=2, flip=False)
    test = load("digits", "test")
    df = grids.grid(
        sets,
        ["convnet"],
        p,
        repeats=2,
        seed=5,
        names=("method", "ipc"),
        progress=False,
        test_set=test,
        cache_dir=tmp_path,
        width=8,
    )
    assert len(df) == 4 and list(df.columns[:5]) == [
        "method",
        "ipc",
        "arch",
        "protocol",
        "run_seed",
    ]
    assert df.run_seed.tolist() == [5, 6, 5, 6] and df.ipc.tolist() == [1, 1, 2, 2]
    one = ev.evaluate(
        sets[("random", 2)],
        "convnet",
        p,
        repeats=2,
        seed=5,
        progress=False,
        cache_dir=tmp_path,
        test_set=test,
        width=8,
    )
    assert df.acc.tolist()[2:] == one.accs and all(one.cached)
    par = grids.grid(
        sets,
        ["convnet"],
        p,
        repeats=2,
        seed=5,
        names=("method", "ipc"),
        progress=False,
        workers=2,
        test_set=test,
        cache_dir=tmp_path / "fresh",
        width=8,
    )
    assert par.acc.tolist() == df.acc.tolist()
    table = grids.summary(df, "method", ["arch", "ipc"])
    mean, std = np.mean(one.accs), np.std(one.accs)
    assert table.loc["random", ("convnet", 2)] == f"{mean:.1f} ± {std:.1f}"
    assert df.replicate.tolist() == [0, 1, 0, 1]  # without replicate sets: the training varies


def test_grid_replicates_train_each_set_once_with_its_own_seed(tmp_path):
    """Replicate r: the set made from seed + r, trained once with seed + r; methods pair by r."""
    train, test = load("digits", "train"), load("digits", "test")
    p = training.get_protocol("hard", "smoke", epochs=2, flip=False)
    sets = {("random", 1, r): train.sample_per_class(1, 5 + r) for r in range(3)}
    df = grids.grid(
        sets,
        ["convnet"],
        p,
        seed=5,
        names=("method", "ipc", "replicate"),
        progress=False,
        test_set=test,
        cache_dir=tmp_path,
        width=8,
    )
    assert df.replicate.tolist() == [0, 1, 2] and df.run_seed.tolist() == [5, 6, 7]
    for r in range(3):
        one = ev.evaluate(
            sets[("random", 1, r)],
            "convnet",
            p,
            repeats=1,
            seed=5 + r,
            progress=False,
            cache_dir=tmp_path,
            test_set=test,
            width=8,
        )
        assert one.cached == [True] and one.accs == [df.acc[r]]  # the same training
    made = surrogates.make_all(
        ["random"],
        [1],
        5,
        replicates=3,
        dataset=datasets.get("digits"),
        cache_dir=tmp_path / "sets",
        progress=False,
    )
    again = grids.grid(
        made,
        ["convnet"],
        p,
        seed=5,
        names=("method", "ipc", "replicate"),
        progress=False,
        test_set=test,
        cache_dir=tmp_path,
        width=8,
    )
    assert again.acc.tolist() == df.acc.tolist() and again.cached.all()  # Surrogates taken as sets
    with pytest.raises(ev.EvaluateError, match="trained once"):
        grids.grid(
            sets,
            ["convnet"],
            p,
            repeats=2,
            names=("method", "ipc", "replicate"),
            test_set=test,
            progress=False,
        )


def test_grid_bad_input(small_test):
    with pytest.raises(ev.EvaluateError, match="unknown architecture"):
        grids.grid({"a": None}, ["vgg"])
    with pytest.raises(ev.EvaluateError, match="grid needs test_set= .* or dataset="):
        grids.grid({"a": None}, ["convnet"])
    with pytest.raises(ev.EvaluateError, match="names="):
        grids.grid({("a", 1): None}, ["convnet"], test_set=small_test)


def test_grid_takes_what_the_dataset_fixes(train, tmp_path):
    from dsco import datasets

    ds = datasets.get("digits", "smoke")
    sets = {"random": train.sample_per_class(1, 0)}
    df = grids.grid(sets, ["convnet"], "hard", dataset=ds, cache_dir=tmp_path, progress=False)
    # repeats (1), the smoke step budget (40 steps: 40 epochs of one batch) and the width (16) come
    # from ds
    assert len(df) == ds.budget.replicates == 1
    assert df.epochs.tolist() == [training.epochs_for(1, "smoke")] == [40]
    assert df.steps.tolist() == [40] and not df.cached.any()
    one = ev.evaluate(
        sets["random"],
        "convnet",
        ds.protocol("hard"),
        repeats=1,
        test_set=ds.test(),
        cache_dir=tmp_path,
        progress=False,
        width=16,
    )
    assert one.cached == [True] and one.accs == df.acc.tolist()  # the very same run
    wide = grids.grid(
        sets, ["convnet"], "hard", dataset=ds, cache_dir=tmp_path, progress=False, width=8
    )
    assert not wide.cached.any()  # an explicit arch kwarg wins over the profile's
    paper = grids.grid(
        sets,
        ["convnet"],
        training.get_protocol("hard", epochs=1, flip=False),
        dataset=ds,
        repeats=2,
        cache_dir=tmp_path,
        progress=False,
    )
    assert paper.run_seed.tolist() == [0, 1] and paper.epochs.tolist() == [
        1,
        1,
    ]  # a Protocol is taken as given


def test_summary_numbers_long_frame():
    import pandas as pd

    df = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b", "b"],
            "arch": ["x", "x", "y", "x", "x"],
            "acc": [10.0, 20.0, 30.0, 40.0, 41.0],
        }
    )
    long = grids.summary(df, "method", "arch", numbers=True)
    assert list(long.columns) == ["method", "arch", "mean", "std", "n"]
    assert long.values.tolist() == [
        ["a", "x", 15.0, 5.0, 2],
        ["a", "y", 30.0, 0.0, 1],
        ["b", "x", 40.5, 0.5, 2],
    ]
    text = grids.summary(df, "method", "arch")
    assert (
        text.loc["a", "x"] == "15.0 ± 5.0"
        and text.loc["b", "x"] == "40.5 ± 0.5"
        and pd.isna(text.loc["b", "y"])
    )
    flat = grids.summary(df, ["method", "arch"], None, digits=2)
    assert flat.loc[("b", "x")] == "40.50 ± 0.50"
