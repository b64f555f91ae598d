"""Tests for dsco.evaluate: evaluate() and its cache, grid(), summary() (the architectures and the
training loop: tests/test_architectures.py, tests/test_training.py)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dsco import datasets, surrogates, training
from dsco import evaluate as ev
from dsco.architectures import build
from dsco.data import load


@pytest.fixture(scope="module")
def train():
    return load("digits", "train")


@pytest.fixture(scope="module")
def test():
    return load("digits", "test")


@pytest.fixture(scope="module")
def small_test(test):
    return test.subset(torch.arange(0, len(test), 3))  # 150 images, all classes


def assert_accuracy_on(acc: float, test_set) -> None:
    """``acc`` is a percentage of ``test_set`` images: a whole number of them, not a per-batch mean
    or a fraction in [0, 1]."""
    count = acc * len(test_set) / 100
    assert count == pytest.approx(round(count), abs=1e-6) and 0 <= round(count) <= len(test_set)


def tiny(epochs=2, name="hard", **kw):
    """A short protocol for the digits sets of these tests (no flips: digits' registry entry)."""
    return training.get_protocol(name, epochs=epochs, **{"flip": False, **kw})


# --- evaluate() -------------------------------------------------------------------------------


def test_hard_label_training_beats_chance(train, test):
    res = ev.evaluate(
        train.sample_per_class(10, 0),
        "convnet",
        tiny(epochs=30),
        repeats=1,
        test_set=test,
        cache=False,
        progress=False,
    )
    assert res.accs[0] > 30.0  # chance is 10 %
    assert res.steps == 60 and res.epochs == 30 and res.metric == "final"
    assert res.wall_s[0] > 0 and res.peak_mem_mb[0] > 0


def test_soft_label_path_with_stand_in_teacher(train, small_test):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    surrogate = train.sample_per_class(2, 0)
    p = training.resolve(tiny(name="soft"), "digits", 1)
    out = training.train_model(
        build("convnet", 10),
        surrogate.x,
        surrogate.y,
        p,
        2,
        num_classes=10,
        teacher=teacher,
        test=(small_test.x, small_test.y),
    )
    assert math.isfinite(out["last_loss"]) and out["last_loss"] >= 0 and out["steps"] == 2
    res = ev.evaluate(
        surrogate,
        "convnet",
        tiny(name="soft"),
        repeats=1,
        test_set=small_test,
        teacher=teacher,
        cache=False,
        progress=False,
    )
    assert res.protocol == "soft"
    assert_accuracy_on(res.accs[0], small_test)
    with pytest.raises(ValueError, match="needs teacher="):
        ev.evaluate(
            surrogate, "convnet", tiny(name="soft"), repeats=1, test_set=small_test, cache=False
        )


def test_sgd_variant_runs(train, small_test):
    res = ev.evaluate(
        train.sample_per_class(2, 0),
        "resnet_ap10",
        tiny(name="sgd"),
        repeats=1,
        test_set=small_test,
        cache=False,
        progress=False,
    )
    assert res.protocol == "sgd"
    assert_accuracy_on(res.accs[0], small_test)


def test_evaluate_is_deterministic_per_seed(train, small_test):
    s = train.sample_per_class(3, 0)
    a, b = (
        ev.evaluate(
            s,
            "convnet",
            tiny(epochs=3),
            repeats=2,
            seed=5,
            test_set=small_test,
            cache=False,
            progress=False,
        )
        for _ in range(2)
    )
    assert a.accs == b.accs and a.seeds == [5, 6]
    state = torch.get_rng_state()
    ev.evaluate(
        (s.x, s.y),
        "convnet",
        tiny(epochs=1),
        repeats=1,
        test_set=small_test,
        cache=False,
        progress=False,
    )
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched


def test_cache_hit_skips_training(train, small_test, tmp_path, monkeypatch):
    s = train.sample_per_class(2, 1)
    kw = dict(test_set=small_test, cache_dir=tmp_path, progress=False)
    first = ev.evaluate(s, "convnet", tiny(), repeats=2, **kw)
    assert first.cached == [False, False] and len(list(tmp_path.glob("*.json"))) == 2

    def boom(*a, **k):
        raise AssertionError("trained although the runs are cached")

    monkeypatch.setattr(ev, "train_model", boom)
    again = ev.evaluate(s, "convnet", tiny(), repeats=2, **kw)
    assert again.cached == [True, True]
    assert (again.accs, again.wall_s, again.mean, again.std) == (
        first.accs,
        first.wall_s,
        first.mean,
        first.std,
    )
    with pytest.raises(AssertionError, match="trained although"):  # anything different trains again
        ev.evaluate(s, "convnet", tiny(epochs=3), repeats=1, **kw)
    with pytest.raises(AssertionError, match="trained although"):
        ev.evaluate(s, "convnet", tiny(), repeats=1, seed=7, **kw)
    with pytest.raises(AssertionError, match="trained although"):
        ev.evaluate(
            s, "convnet", tiny(), repeats=1, cache=False, test_set=small_test, progress=False
        )


def test_best_of_last_third_is_at_least_final(train, small_test):
    res = ev.evaluate(
        train.sample_per_class(5, 0),
        "convnet",
        tiny(epochs=9),
        repeats=1,
        test_set=small_test,
        best_of_last_third=True,
        cache=False,
        progress=False,
    )
    assert res.metric == "best_of_last_third"
    assert res.accs[0] >= res.final_accs[0]


def test_eval_result_uses_population_std():
    r = ev.EvalResult(
        "convnet",
        "hard",
        "final",
        1.0,
        1,
        1,
        [0, 1],
        [10.0, 20.0],
        [10.0, 20.0],
        [1.0, 1.0],
        [1.0, 1.0],
        [False, False],
        "cpu",
    )
    assert (r.mean, r.std) == (15.0, 5.0) and str(r) == "15.0 ± 5.0"
    assert r.to_dict()["accs"] == [10.0, 20.0]


def test_teacher_fingerprint_tells_teachers_apart():
    x = torch.randn(4, 1, 8, 8)
    torch.manual_seed(0)
    t1, t2 = nn.Linear(64, 10), nn.Linear(64, 10)
    f1 = lambda z: t1(z.flatten(1))  # noqa: E731 -- any callable returning logits works
    assert ev.teacher_fingerprint(f1, x) == ev.teacher_fingerprint(f1, x)
    assert ev.teacher_fingerprint(f1, x) != ev.teacher_fingerprint(lambda z: t2(z.flatten(1)), x)


def test_evaluate_rejects_bad_input(train, small_test):
    s = train.sample_per_class(1, 0)
    kw = dict(repeats=1, test_set=small_test, cache=False, progress=False)
    with pytest.raises(ValueError, match="unknown architecture"):
        ev.evaluate(s, "vgg", tiny(), **kw)
    with pytest.raises(ValueError, match="decode/resize the surrogate"):
        ev.evaluate((torch.zeros(2, 1, 16, 16), torch.tensor([0, 1])), "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        ev.evaluate((s.x, s.y + 5), "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match="one per image"):
        ev.evaluate((s.x, s.y[:3]), "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match="ImageSet"):
        ev.evaluate("digits", "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match="repeats must be"):
        ev.evaluate(s, "convnet", tiny(), **(kw | {"repeats": 0}))


def test_soft_labels_with_the_shipped_digits_teacher(train, small_test):
    from dsco import teacher as teacher_mod

    assert teacher_mod.TEACHER_WEIGHTS.is_file()  # shipped in data/models
    teacher = teacher_mod.load_teacher()
    s = train.sample_per_class(2, 0)
    assert ev.teacher_fingerprint(teacher, s.x) == ev.teacher_fingerprint(
        teacher_mod.load_teacher(), s.x
    )
    res = ev.evaluate(
        s,
        "convnet",
        tiny(name="soft"),
        repeats=1,
        test_set=small_test,
        teacher=teacher,
        cache=False,
        progress=False,
    )
    assert res.protocol == "soft"
    assert_accuracy_on(res.accs[0], small_test)


def test_grid_rows_seeds_and_workers_agree(tmp_path):
    train = load("digits", "train")
    sets = {
        ("random", 1): train.sample_per_class(1, 0),
        ("random", 2): train.sample_per_class(2, 0),
    }
    p = training.get_protocol("hard", "smoke", epochs=2, flip=False)
    test = load("digits", "test")
    df = ev.grid(
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
    par = ev.grid(
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
    table = ev.summary(df, "method", ["arch", "ipc"])
    mean, std = np.mean(one.accs), np.std(one.accs)
    assert table.loc["random", ("convnet", 2)] == f"{mean:.1f} ± {std:.1f}"
    assert df.replicate.tolist() == [0, 1, 0, 1]  # without replicate sets: the training varies


def test_grid_replicates_train_each_set_once_with_its_own_seed(tmp_path):
    """Replicate r: the set made from seed + r, trained once with seed + r; methods pair by r."""
    train, test = load("digits", "train"), load("digits", "test")
    p = training.get_protocol("hard", "smoke", epochs=2, flip=False)
    sets = {("random", 1, r): train.sample_per_class(1, 5 + r) for r in range(3)}
    df = ev.grid(
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
    again = ev.grid(
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
        ev.grid(
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
        ev.grid({"a": None}, ["vgg"])
    with pytest.raises(ev.EvaluateError, match="grid needs test_set= .* or dataset="):
        ev.grid({"a": None}, ["convnet"])
    with pytest.raises(ev.EvaluateError, match="names="):
        ev.grid({("a", 1): None}, ["convnet"], test_set=small_test)
    with pytest.raises(ev.EvaluateError, match="evaluate needs test_set="):
        ev.evaluate((small_test.x, small_test.y), "convnet", tiny(), repeats=1, cache=False)


def test_grid_takes_what_the_dataset_fixes(train, tmp_path):
    from dsco import datasets

    ds = datasets.get("digits", "smoke")
    sets = {"random": train.sample_per_class(1, 0)}
    df = ev.grid(sets, ["convnet"], "hard", dataset=ds, cache_dir=tmp_path, progress=False)
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
    wide = ev.grid(
        sets, ["convnet"], "hard", dataset=ds, cache_dir=tmp_path, progress=False, width=8
    )
    assert not wide.cached.any()  # an explicit arch kwarg wins over the profile's
    paper = ev.grid(
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
    long = ev.summary(df, "method", "arch", numbers=True)
    assert list(long.columns) == ["method", "arch", "mean", "std", "n"]
    assert long.values.tolist() == [
        ["a", "x", 15.0, 5.0, 2],
        ["a", "y", 30.0, 0.0, 1],
        ["b", "x", 40.5, 0.5, 2],
    ]
    text = ev.summary(df, "method", "arch")
    assert (
        text.loc["a", "x"] == "15.0 ± 5.0"
        and text.loc["b", "x"] == "40.5 ± 0.5"
        and pd.isna(text.loc["b", "y"])
    )
    flat = ev.summary(df, ["method", "arch"], None, digits=2)
    assert flat.loc[("b", "x")] == "40.50 ± 0.50"
