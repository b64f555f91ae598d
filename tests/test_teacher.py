"""Tests for dsco.teacher: training learns, shipped weights verify, temperature softens; timm
teachers."""

import copy
import json
from types import SimpleNamespace

import pytest
import rounding
import torch

from dsco import checkpoints, data
from dsco import teacher as T


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", "train"), data.load("digits", "test")


def test_tiny_training_run_learns(digits):
    train, test = digits
    kw = dict(epochs=3, batch_size=32, lr=5e-3, config=dict(widths=(16, 32, 32)), progress=False)
    model, hist = T.train_teacher(train, **kw)
    acc = T.accuracy(model, test.x, test.y)
    assert acc > 0.4  # chance is 0.1 (measured 0.60 for this 3-epoch run)
    assert hist["loss"][-1] < hist["loss"][0] and len(hist["train_accuracy"]) == 3
    _, hist2 = T.train_teacher(train.subset(torch.arange(100)), **dict(kw, epochs=1))
    _, hist3 = T.train_teacher(train.subset(torch.arange(100)), **dict(kw, epochs=1))
    assert hist2["loss"] == hist3["loss"]  # same seed => same run


def test_train_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        T.train_teacher(
            SimpleNamespace(x=torch.zeros(4, 3, 8, 8), y=torch.zeros(4).long()), epochs=1
        )
    with pytest.raises(ValueError, match="labels"):
        T.train_teacher(
            SimpleNamespace(x=torch.zeros(4, 1, 8, 8), y=torch.full((4,), 12)), epochs=1
        )


def test_shift_translates_with_background_padding():
    x = torch.full((1, 1, 8, 8), -1.0)
    x[0, 0, 4, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    moved = [T._shift(x, 1, g) for _ in range(20)]
    assert all(m.shape == x.shape and int((m == 1).sum()) == 1 for m in moved)
    assert len({tuple(torch.nonzero(m[0, 0] == 1)[0].tolist()) for m in moved}) > 1
    assert torch.equal(T._shift(x, 0, g), x)


def test_shipped_teacher_verifies_hash_and_is_accurate(digits):
    _, test = digits
    model = T.load_teacher()
    card = json.loads(T.TEACHER_WEIGHTS.with_suffix(".json").read_text())
    assert card["sha256"] == checkpoints.sha256(T.TEACHER_WEIGHTS)
    assert T.accuracy(model, test.x, test.y) >= 0.97
    assert T.TEACHER_WEIGHTS.stat().st_size < 5_000_000


def test_load_teacher_hash_mismatch(tmp_path):
    model = T.build_teacher(dict(widths=(4, 4, 4)))
    path = tmp_path / "t.safetensors"
    T.save_teacher(model, dict(loss=[1.0], config=dict(T.TEACHER_CONFIG, widths=(4, 4, 4))), path)
    assert isinstance(T.load_teacher(path), torch.nn.Module)
    data_ = bytearray(path.read_bytes())
    data_[-1] ^= 0xFF
    path.write_bytes(bytes(data_))
    with pytest.raises(checkpoints.CheckpointError, match="SHA-256"):
        T.load_teacher(path)


def test_predict_proba_temperature():
    model = T.build_teacher(dict(widths=(4, 4, 4)))
    torch.nn.init.normal_(model[-1].weight, std=5.0)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    p1, p20 = T.predict_proba(model, x), T.predict_proba(model, x, temperature=20)
    assert p1.shape == (6, 10)
    torch.testing.assert_close(p1.sum(1), torch.ones(6))
    torch.testing.assert_close(p20.sum(1), torch.ones(6))
    assert torch.equal(p1.argmax(1), p20.argmax(1))  # same ranking
    assert bool((p20.max(1).values < p1.max(1).values).all())  # softer
    logits = model(x)
    torch.testing.assert_close(p20, torch.softmax(logits / 20, 1))
    # batches of 4 + 2 against one of 6: another batch shape, equal up to float rounding
    # (tests/rounding.py)
    p64 = torch.softmax(copy.deepcopy(model).double()(x.double()), 1)
    tol = rounding.tolerance(p1, p64)
    rounding.assert_within(T.predict_proba(model, x, batch_size=4), p1, tol, "batch_size=4")
    rounding.assert_distinct(
        T.predict_proba(model, x.flip(0), batch_size=4), p1, tol, "other images"
    )
    with pytest.raises(ValueError, match="temperature"):
        T.predict_proba(model, x, temperature=0)


# --- timm teachers (the ImageNet datasets)
# ----------------------------------------------------------

NARROW = dict(channels=(8, 16, 32, 64), stem_width=8)


def test_load_timm_teacher_from_a_save_for_hf_folder(nette_params):
    import timm

    path = nette_params["teacher_path"]
    clf = T.load_timm_teacher(path, "resnet18", 10)
    assert isinstance(clf, T.TimmTeacher) and clf.num_classes == 10 and not clf.training
    # the fixture's weights, seeded as dsco.fixtures makes them: the same model, the same logits
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = timm.create_model("resnet18", pretrained=False, num_classes=10, **NARROW).eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(clf(x), T.TimmTeacher(ref).eval()(x))  # same computation: bit for bit
    # images in [-1, 1] are mapped to [0, 1] and normalised by the model's own mean and std
    x01 = (x + 1) / 2
    mean, std = torch.tensor(ref.pretrained_cfg["mean"]), torch.tensor(ref.pretrained_cfg["std"])
    torch.testing.assert_close(clf(x), ref((x01 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_load_timm_teacher_from_a_state_dict_file(tmp_path, suffix):
    """A plain state dict of the full-width architecture (what a user's training script saves); its
    head must be the file's (timm drops a classifier whose class count differs from the config's
    1000)."""
    import timm
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("resnet18", pretrained=False, num_classes=7).eval()
        torch.nn.init.normal_(model.fc.weight, std=1.0)
    path = tmp_path / f"r18{suffix}"
    save_file(model.state_dict(), str(path)) if suffix == ".safetensors" else torch.save(
        model.state_dict(), path
    )
    assert T.timm_num_classes(path, "resnet18") == 7
    clf = T.load_timm_teacher(path, "resnet18", 7)
    assert torch.equal(clf.model.fc.weight, model.fc.weight)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(clf(x), T.TimmTeacher(model).eval()(x))


def test_timm_teacher_bad_checkpoints(tmp_path, nette_params):
    import timm
    from safetensors.torch import save_file

    with pytest.raises(
        checkpoints.CheckpointError, match="has 10 classes, the dataset 5: pass a teacher trained"
    ):
        T.load_timm_teacher(nette_params["teacher_path"], "resnet18", 5)
    narrow = timm.create_model("resnet18", pretrained=False, num_classes=10, **NARROW)
    save_file(
        narrow.state_dict(), str(tmp_path / "narrow.safetensors")
    )  # a file keeps no model_args
    with pytest.raises(checkpoints.CheckpointError) as e:
        T.load_timm_teacher(tmp_path / "narrow.safetensors", "resnet18", 10)
    assert "is not a timm resnet18 checkpoint" in str(e.value) and "\n" not in str(e.value)
    save_file({"w": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(checkpoints.CheckpointError, match="has no 'fc.weight'"):
        T.timm_num_classes(tmp_path / "other.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match="no teacher checkpoint"):
        T.load_timm_teacher(tmp_path / "missing", "resnet18")


def test_train_and_save_timm_teacher_round_trip(nette_params, tmp_path):
    train = data.load("imagenette", "train", nette_params["root"], size=8)
    kw = dict(epochs=1, batch_size=32, seed=0, model_args=NARROW, progress=False)
    model, hist = T.train_timm_teacher(train, "resnet18", **kw)
    assert isinstance(model, T.TimmTeacher) and model.num_classes == 10 and not model.training
    assert len(hist["loss"]) == 1 and hist["arch"] == "resnet18" and hist["model_args"] == NARROW
    _, again = T.train_timm_teacher(train, "resnet18", **kw)
    assert again["loss"] == hist["loss"]  # seeded: weights, order and augmentation
    folder = T.save_timm_teacher(model, hist, tmp_path / "models" / "teacher")
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "training.json",
    }
    assert [p.name for p in folder.parent.iterdir()] == ["teacher"]  # no partial folder left behind
    card = json.loads((folder / "training.json").read_text())
    assert card["sha256"] == checkpoints.sha256(folder / "model.safetensors")
    assert card["loss_curve"] == [round(hist["loss"][0], 5)]
    loaded = T.load_timm_teacher(folder, "resnet18", 10)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(loaded(x), model(x))  # same weights, same computation
    T.save_timm_teacher(model, hist, folder)  # overwrites in place
    assert T.timm_num_classes(folder) == 10


def test_predict_proba_and_accuracy_read_data_sets(nette_params):
    clf = T.load_timm_teacher(nette_params["teacher_path"], "resnet18", 10)
    lazy = data.load("imagenette", "test", nette_params["root"], size=8)
    mem = lazy.in_memory()
    p_lazy, p_mem = T.predict_proba(clf, lazy), T.predict_proba(clf, mem)
    # one batch of the same 40 images either way: the same computation, bit for bit
    assert (
        p_lazy.shape == (40, 10)
        and torch.equal(p_lazy, p_mem)
        and torch.equal(p_mem, T.predict_proba(clf, mem.x))
    )
    acc = T.accuracy(clf, lazy)
    assert acc == T.accuracy(clf, mem.x, mem.y) == float((p_mem.argmax(1) == mem.y).float().mean())
    model = T.build_teacher(dict(widths=(4, 4, 4)))
    digits = data.load("digits", "test")
    assert T.accuracy(model, digits) == T.accuracy(model, digits.x, digits.y)


def test_build_teacher_pools_and_head_options_keep_the_digits_layout():
    digits = T.build_teacher()
    assert [k for k in digits.state_dict()] == [k for k in T.load_teacher().state_dict()]
    wide = T.build_teacher(dict(pools=(1, 2), widths=(8, 16, 16), hidden=32))
    x = torch.randn(2, 1, 28, 28)
    assert wide(x).shape == (2, 10) and sum(isinstance(m, torch.nn.MaxPool2d) for m in wide) == 2
    assert any(isinstance(m, torch.nn.Dropout) for m in wide)
