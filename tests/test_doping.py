"""Tests for dsco.doping: confusion-score orientation (Eq. 31), per-class / global selection,
concentration, the student's confusion scores and their cache, and the cost of Doping."""

import numpy as np
import pytest
import torch

from dsco import data, doping
from dsco.data import ImageSet
from dsco.errors import DopingError

# --- confusion scores (Eq. 31) -------------------------------------------------------------


def test_confusion_scores_rank_the_disagreeing_sample_first():
    teacher = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
    student = torch.tensor(
        [
            [0.8, 0.1, 0.1],  # agrees, confident
            [0.1, 0.7, 0.2],  # agrees
            [0.6, 0.1, 0.3],  # DISAGREES: teacher says 2, student says 0
            [0.45, 0.4, 0.15],
        ]
    )  # agrees, barely
    s = doping.confusion_scores(student, teacher)
    # negation of the printed Eq. 31: max_{c != c_T} p_S(c) - p_S(c_T)
    assert torch.allclose(s, torch.tensor([0.1 - 0.8, 0.2 - 0.7, 0.6 - 0.3, 0.4 - 0.45]))
    assert s[2] > 0 and (s[[0, 1, 3]] < 0).all()
    assert s.argsort(descending=True).tolist() == [2, 3, 1, 0]
    assert doping.select(s, torch.zeros(4, dtype=torch.long), 1).tolist() == [2]


def test_confusion_scores_bad_input():
    p = torch.full((3, 4), 0.25)
    with pytest.raises(DopingError, match="same N"):
        doping.confusion_scores(p, p[:2])
    with pytest.raises(DopingError, match="same N"):
        doping.confusion_scores(p[0], p[0])
    with pytest.raises(DopingError, match="apply softmax"):
        doping.confusion_scores(torch.randn(3, 4), p)


# --- selection and concentration -----------------------------------------------------------


def test_select_per_class_and_global():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6])
    per = doping.select(scores, labels, 2)
    assert per.tolist() == [0, 1, 6, 5, 9, 7]  # ties (7, 8 at .5) keep dataset order
    assert torch.bincount(labels[per]).tolist() == [2, 2, 2]
    glob = doping.select(scores, labels, 2, per_class=False)
    assert glob.tolist() == [0, 1, 2, 9, 7, 8]  # global top 6, class 1 gets none
    assert doping.select(scores, labels, 0).numel() == 0
    assert torch.equal(doping.select(scores, labels, 2), per)  # deterministic


def test_select_errors_name_the_fix():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    scores = torch.rand(8)
    with pytest.raises(DopingError, match=r"class 1's size \(2 samples\).*ipc_real <= 2"):
        doping.select(scores, labels, 3)
    with pytest.raises(DopingError, match="equal length"):
        doping.select(scores[:5], labels, 1)
    with pytest.raises(DopingError, match="exceeds the 8 real"):
        doping.select(scores, labels, 3, per_class=False)
    with pytest.raises(DopingError, match="NaN"):
        doping.select(torch.full((8,), float("nan")), labels, 1)


@pytest.fixture(scope="module")
def digits_train():
    return data.load("digits", "train")


def test_concentrate_sizes_and_labels(digits_train):
    real = digits_train
    synthetic = ImageSet(
        torch.zeros(20, 1, 8, 8), torch.arange(10).repeat(2), list(real.classes), "dsco", "train"
    )
    scores = torch.linspace(0, 1, len(real))
    sel = doping.select(scores, real.y, 3)
    conc = doping.concentrate(synthetic, real, sel)
    assert len(conc) == 20 + 30 and conc.x.shape[1:] == (1, 8, 8)
    assert torch.bincount(conc.y).tolist() == [5] * 10
    assert torch.equal(conc.x[20:], real.x[sel]) and torch.equal(conc.y[:20], synthetic.y)
    with pytest.raises(DopingError, match="outside"):
        doping.concentrate(synthetic, real, [len(real)])
    with pytest.raises(DopingError, match="differ in shape"):
        doping.concentrate(
            ImageSet(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), list(real.classes)), real, sel
        )


# --- confusion_of / dope: the two steps of every high-IPC notebook
# ------------------------------------


def test_dope_sizes_and_exclude(digits_train):
    real = digits_train
    synthetic = ImageSet(
        torch.zeros(20, 1, 8, 8),
        torch.arange(10).repeat_interleave(2),
        list(real.classes),
        "dsco",
        "train",
    )
    scores = torch.rand(len(real), generator=torch.Generator().manual_seed(0)) * 2 - 1
    conc, sel = doping.dope(synthetic, scores, real, target_ipc=5)
    assert len(conc) == 50 and torch.bincount(conc.y).tolist() == [5] * 10 and len(sel) == 30
    assert torch.equal(sel, doping.select(scores, real.y, 3)) and torch.equal(
        conc.x[20:], real.x[sel]
    )
    assert conc.name == "dsco+doped" and torch.equal(conc.x[:20], synthetic.x)
    # the real samples a random real part already holds are never picked twice
    exclude = sel[::3]
    conc2, sel2 = doping.dope(synthetic, scores, real, target_ipc=5, exclude=exclude)
    assert (
        not set(exclude.tolist()) & set(sel2.tolist())
        and torch.bincount(conc2.y).tolist() == [5] * 10
    )
    kept = [i for i in sel.tolist() if i not in set(exclude.tolist())]
    assert set(kept) <= set(sel2.tolist())  # the rest of the choice stands
    assert (
        doping.dope(synthetic, scores, real, target_ipc=2)[1].numel() == 0
    )  # already at the target
    g, gsel = doping.dope(synthetic, scores, real, target_ipc=5, per_class=False)
    assert len(g) == 50 and torch.equal(gsel, doping.select(scores, real.y, 3, per_class=False))


def test_confusion_of_scores_every_real_sample(digits_train):
    from dsco import teacher, training

    train = digits_train.sample_per_class(2, 0)
    real = digits_train.subset(torch.arange(0, 200, 4))  # 50 real samples
    clf = teacher.load_teacher()
    p = training.get_protocol("hard", "smoke", epochs=2, flip=False)
    s = doping.confusion_of(train, "convnet", real, clf, p, seed=1, cache=False, width=8)
    assert s.shape == (50,) and bool(((s >= -1) & (s <= 1)).all())
    same = doping.confusion_of(train, "convnet", real, clf, p, seed=1, cache=False, width=8)
    assert torch.equal(s, same)  # seeded
    other = doping.confusion_of(train, "convnet", real, clf, p, seed=2, cache=False, width=8)
    assert not torch.equal(s, other)
    # Eq. 31 of the student train_student trains, against the teacher's class
    student = doping.train_student(train, "convnet", 10, p, clf, seed=1, width=8)
    assert torch.equal(
        s,
        doping.confusion_scores(
            teacher.predict_proba(student, real), teacher.predict_proba(clf, real)
        ),
    )


def test_confusion_of_trains_a_student_once_per_key(digits_train, tmp_path, monkeypatch):
    from dsco import teacher, training

    train = digits_train.sample_per_class(2, 0)
    real = digits_train.subset(torch.arange(0, 200, 4))
    clf = teacher.load_teacher()
    p = training.get_protocol("hard", "smoke", epochs=2, flip=False)
    trained = []
    student = doping.train_student
    monkeypatch.setattr(
        doping, "train_student", lambda *a, **k: trained.append(k) or student(*a, **k)
    )
    args = dict(seed=1, cache_dir=tmp_path, width=8)
    s = doping.confusion_of(train, "convnet", real, clf, p, **args)
    assert len(trained) == 1 and len(list(tmp_path.glob("*.pt"))) == 1
    assert torch.equal(s, doping.confusion_of(train, "convnet", real, clf, p, **args))  # read back
    assert len(trained) == 1
    # what defines the scores is in the key: the seed, the first part, the scored set, the width
    doping.confusion_of(train, "convnet", real, clf, p, **(args | {"seed": 2}))
    doping.confusion_of(digits_train.sample_per_class(2, 1), "convnet", real, clf, p, **args)
    doping.confusion_of(train, "convnet", real.subset(torch.arange(40)), clf, p, **args)
    doping.confusion_of(train, "convnet", real, clf, p, **(args | {"width": 16}))
    assert len(trained) == 5 and len(list(tmp_path.glob("*.pt"))) == 5
    doping.confusion_of(train, "convnet", real, clf, p, **(args | {"cache": False}))
    assert len(trained) == 6 and len(list(tmp_path.glob("*.pt"))) == 5


def _two_per_class(real):
    """A stand-in synthetic set: two blank images per class of ``real``."""
    return ImageSet(
        torch.zeros(20, 1, 8, 8),
        torch.arange(10).repeat_interleave(2),
        list(real.classes),
        "dsco",
        "train",
    )


def test_selection_times_time_only_the_count_dependent_stages(digits_train):
    real = digits_train
    synthetic = _two_per_class(real)
    scores = torch.rand(len(real), generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = doping.selection_times(scores, synthetic, real, [0, 1, 5], rounds=3)
    assert t[["round", "doped_ipc"]].values.tolist() == [
        [r, k] for r in range(3) for k in (0, 1, 5)
    ]
    assert t["doped_samples"].tolist() == [0, 10, 50] * 3
    assert np.allclose(t["seconds"], t["select_s"] + t["concentrate_s"])
    assert (t["seconds"] > 0).all()
    with pytest.raises(DopingError, match="at least one"):
        doping.selection_times(scores, synthetic, real, [1], rounds=0)


def test_stage_costs_label_once_and_time_the_selection_per_count(digits_train):
    real = digits_train.subset(torch.arange(0, 200, 2))
    synthetic = _two_per_class(real)
    torch.manual_seed(0)
    student, teacher = (
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)) for _ in range(2)
    )
    cost = doping.stage_costs(student, teacher, synthetic, real, [0, 1, 2], repeats=2)
    assert list(cost.columns) == [
        "doped_ipc",
        "doped_samples",
        "label_s",
        "scores_s",
        "select_s",
        "concentrate_s",
    ]
    assert cost["doped_samples"].tolist() == [0, 10, 20]
    assert cost["label_s"].nunique() == 1 and cost["scores_s"].nunique() == 1  # timed once
    assert (cost[["select_s", "concentrate_s"]] > 0).all().all()
