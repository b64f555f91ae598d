"""Tests for dsco.prepare (notebook 00's logic): smoke training writes only under build/models (here
a tmp folder), never data/models; class consistency and the latent encoding; the ImageNet path on
the offline fixture, with and without a user teacher."""

import pytest
import torch

from dsco import ROOT, backbones, checkpoints, datasets, digits_ddpm, encoded, models, prepare
from dsco import teacher as T


def _shipped_state():
    """Size and modification time of every file in data/models/ (what the smoke profile must not
    touch)."""
    return {
        p.name: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(checkpoints.MODELS_DIR.iterdir())
    }


@pytest.fixture
def smoke_models(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "SMOKE_MODELS", tmp_path / "models")
    return tmp_path / "models"


def test_digits_smoke_trains_into_build_models_only(smoke_models):
    before = _shipped_state()
    ds = datasets.get("digits", "smoke")
    clf, info = prepare.teacher(ds)
    assert (
        info["recipe"] == "shipped"
        and len(info["history"]["loss"]) == ds.budget.models["teacher_epochs"]
    )
    assert info["trained_to"] == str(smoke_models / "digits_teacher_smoke.safetensors")
    assert (smoke_models / "digits_teacher_smoke.safetensors").is_file()
    assert (smoke_models / "digits_teacher_smoke.json").is_file()
    assert (
        clf is ds.teacher() and info["test_accuracy"] >= 0.97
    )  # the shipped teacher is what is used
    assert info["source"] == "data/models/digits_teacher.safetensors"
    assert info["card"]["sha256"] == checkpoints.sha256(T.TEACHER_WEIGHTS)
    assert info["parameters"] > 0
    bb, info = prepare.backbone(ds)
    assert info["recipe"] == "shipped" and info["name"] == "digits-ddpm"
    assert len(info["history"]["loss"]) == ds.budget.models["backbone_epochs"]
    assert info["trained_to"] == str(smoke_models / "digits_ddpm_smoke.safetensors")
    assert (smoke_models / "digits_ddpm_smoke.safetensors").is_file() and bb is ds.backbone()
    assert info["card"]["sha256"] == checkpoints.sha256(digits_ddpm.DIGITS_WEIGHTS)
    assert _shipped_state() == before  # data/models/ untouched
    smoke = backbones.load(
        "digits-ddpm", smoke_models / "digits_ddpm_smoke.safetensors"
    )  # a valid checkpoint
    assert smoke.num_classes == 10
    with pytest.raises(ValueError, match="profile='paper'"):
        prepare.backbone(ds, retrain=True)
    assert _shipped_state() == before


def test_class_consistency_and_encode_latents_digits(tmp_path):
    ds = datasets.get("digits", "smoke")
    bb, clf = ds.backbone(), ds.teacher()
    frame, samples = prepare.class_consistency(
        ds, bb, clf, guidances=(1.0, 4.0), n_per_class=2, num_steps=3, cache_dir=tmp_path
    )
    assert len(list(tmp_path.glob("*.pt"))) == 1  # one cache entry, read back by a rerun
    again, kept = prepare.class_consistency(
        ds, bb, clf, guidances=(1.0, 4.0), n_per_class=2, num_steps=3, cache_dir=tmp_path
    )
    assert again.equals(frame) and all(torch.equal(kept[g], samples[g]) for g in samples)
    prepare.class_consistency(ds, bb, clf, (1.0, 4.0), 2, num_steps=3, seed=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2  # another seed, another entry
    assert list(frame.columns) == ["guidance", "class", "consistency"] and len(frame) == 2 * 10
    assert frame["class"].tolist() == list(range(10)) * 2 and sorted(samples) == [1.0, 4.0]
    assert frame["consistency"].between(0, 1).all()
    assert set(frame["consistency"]) <= {0.0, 0.5, 1.0}  # shares of 2 samples per class
    assert samples[4.0].shape == (20, 1, 8, 8) and samples[4.0].abs().max() <= 1
    lat, _ = backbones.sample(
        bb, list(range(10)), 2, seed=0, guidance=4.0, num_steps=3, progress=False
    )
    assert torch.equal(samples[4.0], lat.clamp(-1, 1))  # digits decode is the identity
    enc = prepare.encode_latents(ds, bb)
    assert enc["images"].tolist() == ds.train().counts().tolist() and enc[
        "latent"
    ].unique().tolist() == ["1×8×8"]
    assert enc["class"].tolist() == ds.classes and (enc["seconds"] >= 0).all()


def test_imagenette_fixture_with_user_teacher(nette_ds, nette_params, tmp_path, monkeypatch):
    monkeypatch.setattr(encoded, "CACHE_DIR", tmp_path / "latents")
    bb, info = prepare.backbone(nette_ds)
    assert info["recipe"] == "pretrained" and info["path"] == nette_params["backbone_path"]
    assert (
        info["vae_path"] == nette_params["vae_path"]
        and info["parameters"] > 0
        and info["history"] is None
    )
    clf, info = prepare.teacher(nette_ds)
    assert info["source"] == nette_params["teacher_path"] and info["history"] is None
    assert 0 <= info["test_accuracy"] <= 1 and isinstance(clf, T.TimmTeacher)
    frame, samples = prepare.class_consistency(
        nette_ds, bb, clf, guidances=(4.0,), n_per_class=1, num_steps=2, cache_dir=tmp_path
    )
    assert (
        len(frame) == 10
        and frame["consistency"].between(0, 1).all()
        and samples[4.0].shape == (10, 3, 8, 8)
    )
    enc = prepare.encode_latents(nette_ds, bb)
    assert (
        len(enc) == 10
        and enc["images"].tolist() == [10] * 10
        and enc["latent"].unique().tolist() == ["4×4×4"]
    )
    assert (
        len(list((tmp_path / "latents").glob("*.safetensors"))) == 10
    )  # one cache entry per class
    again = prepare.encode_latents(nette_ds, bb)  # read back from the cache
    assert again["images"].tolist() == enc["images"].tolist()


def test_imagenette_fixture_trains_a_teacher_without_teacher_path(
    nette_params, tmp_path, monkeypatch
):
    monkeypatch.setattr(models, "BUILD_MODELS", tmp_path / "models")
    params = {k: v for k, v in nette_params.items() if k != "teacher_path"}
    ds = datasets.get("imagenette", "smoke", **params)
    clf, info = prepare.teacher(ds)
    folder = ds.teacher_file()
    assert folder.parent.parent == tmp_path / "models" and info["trained_to"] == info[
        "source"
    ] == str(folder)
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "training.json",
    }
    assert len(info["history"]["loss"]) == ds.budget.models["teacher_epochs"]
    assert info["history"]["model_args"] == ds.budget.models["teacher_args"]
    assert clf.num_classes == 10 and 0 <= info["test_accuracy"] <= 1
    # a later run with the same data and settings reuses it
    again, info2 = prepare.teacher(datasets.get("imagenette", "smoke", **params))
    assert info2["history"] is None and info2["source"] == str(folder)
    x = ds.test().x[:4]
    assert torch.equal(again(x), clf(x))
    assert not (ROOT / "data" / "models" / "imagenette").exists()
