"""Tests for dsco.doping: confusion-score orientation (Eq. 31), the Dope Trigger (Eq. 30),
per-class / global selection, concentration, and the ImageFolder export round trip."""

import json

import numpy as np
import pytest
import torch

from dsco import data, doping
from dsco.data import ImageSet
from dsco.doping import DopingError

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


# --- Dope Trigger (Eq. 30) -----------------------------------------------------------------


def test_dope_trigger_table_and_firing_point():
    # M = 10, 50, 100, 200, 400 samples; gains 200/40=5, 150/50=3, 150/100=1.5, 150/200=0.75
    t = doping.dope_trigger([1, 5, 10, 20, 40], [50, 250, 400, 550, 700], num_classes=10)
    assert t.table["m_to"].tolist() == [50, 100, 200, 400]
    assert np.allclose(t.table["gain"], [5, 3, 1.5, 0.75])
    assert t.fires_at == 20 and t.num_classes == 10
    # gain exactly 1 fires ("<= 1"); per-class units via num_classes=1
    assert doping.dope_trigger([1, 2, 4], [10, 13, 15], num_classes=1).fires_at == 2
    assert doping.dope_trigger([1, 2], [0, 50], num_classes=10).fires_at is None


def _counts(curves):
    """One row per replicate and schedule point: N_M of the replicate's curve."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"replicate": r, "ipc": ipc, "N": n}
            for r, curve in enumerate(curves)
            for ipc, n in curve.items()
        ]
    )


def _gains(curves):
    return doping.trigger_gains(_counts(curves), num_classes=10)


def test_trigger_gains_stack_one_eq30_table_per_replicate():
    gains = doping.trigger_gains(
        _counts([{1: 50, 5: 250, 10: 400}, {1: 40, 5: 260, 10: 380}]), num_classes=10
    )
    assert gains["replicate"].tolist() == [0, 0, 1, 1]
    assert np.allclose(gains["gain"], [5, 3, 5.5, 2.4]) and not gains["fires"].any()
    with pytest.raises(DopingError, match="empty"):
        doping.trigger_gains(_counts([]), num_classes=10)


def test_trigger_findings_judge_the_replicates_with_the_rules():
    schedule = [1, 5, 10, 20, 40]
    # diminishing returns, the last gain (IPC 20 -> 40, ΔM = 200) about 0.75: both claims hold
    falling = [
        dict(zip(schedule, [50 + d, 250 + d, 400 + d, 550 + 2 * d, 700 + 3 * d])) for d in range(5)
    ]
    v = doping.trigger_findings(_gains(falling))
    fires, down = v.values()
    assert {type(x).__name__ for x in v.values()} == {"Verdict"}
    assert fires.verdict == "holds" and "ΔN/ΔM of IPC 20→40 below 1" in fires.rule
    assert down.verdict == "holds" and "trend" in down.rule
    # rising gains that never reach 1: both claims fail
    rising = [dict(zip(schedule, [0 + d, 20 + d, 70 + 2 * d, 270 + d, 1000 + d])) for d in range(5)]
    fires, down = doping.trigger_findings(_gains(rising)).values()
    assert fires.verdict == "does not hold" and down.verdict == "does not hold"
    # two replicates decide nothing
    few = doping.trigger_findings(_gains(falling[:2]))
    assert {x.verdict for x in few.values()} == {"not measured"}
    # identical replicates: the count's resolution (one sample over ΔM) keeps the interval open
    same = doping.trigger_findings(_gains([{1: 0, 2: 10, 3: 19}] * 3))
    assert list(same.values())[0].verdict == "within noise"  # last gain 0.9 ± the floor 1/10
    flat = doping.trigger_findings(_gains([{1: 0, 2: 10, 3: 20}] * 3))
    assert list(flat.values())[1].verdict == "within noise"  # equal gains, floored sd: not 0/0
    with pytest.raises(DopingError, match="trigger_gains"):
        doping.trigger_findings(_gains(falling).drop(columns="m_to"))


def test_dope_trigger_on_a_concave_curve():
    # N(M) = 2000 (1 - exp(-M / 400)), M = 10 * IPC: slope 5 exp(-M/400) <= 1 for M >= 400 ln 5 ~
    # 644, so the secant over [M1, M1 + 10] first drops <= 1 at IPC 64 (M1 = 640, M2 = 650).
    ipc = np.arange(1, 120)
    n = 2000 * (1 - np.exp(-ipc * 10 / 400))
    t = doping.dope_trigger(ipc, n, num_classes=10)
    assert (np.diff(t.table["gain"]) < 0).all()
    assert t.fires_at == 64


def test_dope_trigger_bad_input():
    with pytest.raises(DopingError, match="equal length"):
        doping.dope_trigger([1, 5, 10], [3, 4], num_classes=10)
    with pytest.raises(DopingError, match="strictly increasing"):
        doping.dope_trigger([5, 1], [3, 4], num_classes=10)
    with pytest.raises(DopingError, match="num_classes"):
        doping.dope_trigger([1, 5], [3, 4], num_classes=0)


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


# --- export / read_export ------------------------------------------------------------------


def test_export_round_trip_hashes_and_tamper(digits_train, tmp_path):
    s = digits_train.sample_per_class(3, seed=0)
    out = doping.export(s, tmp_path / "set", method="random", parameters={"ipc": 3}, seeds=[0])
    m = json.loads((out / "manifest.json").read_text())
    assert m["method"] == "random" and m["seeds"] == [0] and "torch" in m["packages"]
    assert m["counts"] == {str(c): 3 for c in range(10)} and len(m["files"]) == 30
    assert m["class_folders"][3] == "03_3" and m["files"][0]["path"].startswith("00_0/")
    back = doping.read_export(out)
    assert torch.equal(back.y, s.y) and back.classes == s.classes
    # uint8 quantisation: within half a grey level (0.5 / 127.5); a second round trip is exact
    assert (back.x - s.x).abs().max() <= 0.5 / 127.5 + 1e-6
    again = doping.read_export(
        doping.export(back, tmp_path / "again", method="copy", parameters={}, seeds=0)
    )
    assert torch.equal(again.x, back.x)
    png = out / m["files"][4]["path"]
    png.write_bytes(png.read_bytes() + b"\0")
    with pytest.raises(DopingError, match=f"SHA-256 mismatch for .*{m['files'][4]['path']}"):
        doping.read_export(out)
    assert len(doping.read_export(out, verify=False)) == 30


def test_export_rgb_clamps_and_refuses_nonempty(tmp_path):
    x = torch.rand(4, 3, 5, 6) * 2.4 - 1.2  # some values outside [-1, 1]
    y = torch.tensor([1, 0, 1, 1])
    out = doping.export(
        (x, y),
        tmp_path / "rgb",
        method="dsco",
        parameters={"g": 4.0},
        seeds=[1, 2],
        classes=["cat", "dog/wolf"],
    )
    m = json.loads((out / "manifest.json").read_text())
    assert (
        doping.class_folder(5, "", 1000) == "005"
        and doping.class_folder(3, "three", 10) == "03_three"
    )
    assert m["class_folders"] == ["00_cat", "01_dog-wolf"] and m["n_clamped"] == int(
        (x.abs() > 1).sum()
    )
    back = doping.read_export(out)
    assert (back.x - x.clamp(-1, 1)).abs().max() <= 0.5 / 127.5 + 1e-6 and torch.equal(back.y, y)
    (out / "00_cat" / "stray.png").write_bytes(b"x")
    with pytest.raises(DopingError, match="stray.png is not in manifest"):
        doping.read_export(out)
    with pytest.raises(DopingError, match="not an empty folder"):
        doping.export((x, y), out, method="dsco", parameters={}, seeds=0)


def test_export_failure_leaves_nothing(tmp_path):
    with pytest.raises(DopingError, match="C = 1 or 3"):
        doping.export(
            (torch.zeros(2, 2, 4, 4), torch.tensor([0, 1])),
            tmp_path / "bad",
            method="m",
            parameters={},
            seeds=0,
        )
    with pytest.raises(DopingError, match="pass classes="):
        doping.export(
            (torch.zeros(2, 1, 4, 4), torch.tensor([0, 5])),
            tmp_path / "bad",
            method="m",
            parameters={},
            seeds=0,
            classes=["a", "b"],
        )
    with pytest.raises(
        TypeError
    ):  # fails mid-write (manifest not JSON-able keys) -> no partial tree
        doping.export(
            (torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])),
            tmp_path / "bad",
            method="m",
            parameters={(1, 2): 3},
            seeds=0,
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DopingError, match="manifest.json"):
        doping.read_export(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(DopingError, match="not a dsco export"):
        doping.read_export(tmp_path)


def test_torchvision_imagefolder_reads_export(digits_train, tmp_path):
    from torchvision.datasets import ImageFolder

    s = digits_train.sample_per_class(2, seed=1)
    out = doping.export(s, tmp_path / "tv", method="random", parameters={}, seeds=[1])
    ds = ImageFolder(str(out))
    assert len(ds) == 20 and len(ds.classes) == 10
    assert [int(c.split("_")[0]) for c in ds.classes] == list(range(10))
    by_file = {p.split("/")[-1]: t for p, t in ds.samples}
    assert [by_file[f"{i:02d}.png"] for i in range(20)] == s.y.tolist()


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
