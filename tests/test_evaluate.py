"""Tests for dsco.evaluate: evaluate() and its cache (grids of evaluations: tests/test_grids.py; the
architectures and the training loop: tests/test_architectures.py, tests/test_training.py)."""

import math

import pytest
import torch
from torch import nn

from dsco import evaluate as ev
from dsco import training
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
    with pytest.raises(ev.EvaluateError, match="evaluate needs test_set="):
        ev.evaluate((small_test.x, small_test.y), "convnet", tiny(), repeats=1, cache=False)


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
