"""The latent recipe (dsco.recipes, dsco.latent_ddpm.LatentDDPM), the mnist loader and the shipped
mnist models."""

import json

import pytest
import torch

from dsco import (
    backbones,
    checkpoints,
    data,
    datasets,
    fixtures,
    latent_ddpm,
    models,
    prepare,
    recipes,
)
from dsco import teacher as teacher_mod


@pytest.fixture(scope="module")
def folder_ds(tmp_path_factory):
    root = fixtures.folder_tree(tmp_path_factory.mktemp("tree") / "t", per_class=12)
    return datasets.get("folder", "smoke", root=str(root))


@pytest.fixture(scope="module")
def trained(folder_ds, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("models") / "folder"
    return prefix, recipes.train(folder_ds, prefix, recipes.TINY, progress=False)


def test_latent_side_rounds_up_for_the_unets_downsampling():
    assert recipes.latent_side(28, 3, 3) == 32 and recipes.latent_side(12, 2, 2) == 12
    assert recipes.latent_side(13, 2, 2) == 16 and recipes.latent_side(32, 3, 3) == 32


def test_train_writes_three_hash_checked_models_and_a_report(trained, folder_ds):
    prefix, report = trained
    for part in ("teacher", "vae", "ddpm"):
        card = json.loads(prefix.with_name(f"{prefix.name}_{part}.json").read_text())
        weights = prefix.with_name(f"{prefix.name}_{part}.safetensors")
        assert card["sha256"] == checkpoints.sha256(weights)
        assert card["data_split"]["dataset"] == "folder" and "wall_time_s" in card["training"]
    assert set(report) >= {
        "teacher_accuracy",
        "psnr_db",
        "teacher_accuracy_reconstructed",
        "consistency",
    }
    assert 0 <= report["consistency"] <= 1 and report["psnr_db"] > 0
    assert json.loads(prefix.with_name(f"{prefix.name}_report.json").read_text()) == report
    vae = json.loads(prefix.with_name(f"{prefix.name}_vae.json").read_text())
    assert vae["image_shape"] == [1, 12, 12] and vae["scaling_factor"] > 0


def test_the_latent_backbone_has_the_interface_of_dit(trained, folder_ds):
    prefix, _ = trained
    bb = backbones.load("latent-ddpm", prefix)
    x = folder_ds.test().x[:3]
    z = bb.encode(x)
    assert z.shape == (3, *bb.latent_shape) and bb.latent_shape == (4, 6, 6)
    assert bb.decode(z).shape == x.shape and bb.image_factor == 2 and bb.num_classes == 3
    zt = bb.q_sample(z, 500, torch.randn_like(z))
    mu, sigma = bb.mean_std(zt, int(bb.timesteps[0]), 1)
    assert mu.shape == z.shape and sigma.shape == z.shape
    padded = bb.pad(x)
    assert padded.shape[-1] == bb.side and padded.min() >= -1


def test_a_corrupt_latent_checkpoint_is_refused(trained, tmp_path):
    import shutil

    prefix, _ = trained
    copy = tmp_path / "m"
    for f in prefix.parent.glob(f"{prefix.name}_*"):
        shutil.copy(f, tmp_path / f.name.replace(prefix.name, "m"))
    (tmp_path / "m_ddpm.safetensors").write_bytes(b"broken")
    with pytest.raises(checkpoints.CheckpointError, match="SHA-256"):
        backbones.load("latent-ddpm", copy)
    with pytest.raises(ValueError, match="needs path="):
        backbones.load("latent-ddpm")


def test_retraining_one_part_keeps_the_others(trained, folder_ds):
    prefix, _ = trained
    before = {
        p: checkpoints.sha256(prefix.with_name(f"{prefix.name}_{p}.safetensors"))
        for p in ("vae", "ddpm")
    }
    report = recipes.train(
        folder_ds,
        prefix,
        dict(recipes.TINY, teacher=dict(epochs=1, shift=1)),
        parts=("teacher",),
        progress=False,
    )
    after = {
        p: checkpoints.sha256(prefix.with_name(f"{prefix.name}_{p}.safetensors"))
        for p in ("vae", "ddpm")
    }
    assert (
        before == after
        and json.loads(prefix.with_name(f"{prefix.name}_teacher.json").read_text())["training"][
            "epochs"
        ]
        == 1
    )
    assert report["teacher_accuracy"] == teacher_mod.accuracy(
        teacher_mod.load_teacher(prefix.with_name(f"{prefix.name}_teacher.safetensors")),
        folder_ds.test(),
    )


def test_prepare_trains_a_folder_recipe_once_into_build_models(folder_ds, monkeypatch, tmp_path):
    monkeypatch.setattr(models, "BUILD_MODELS", tmp_path / "models")
    monkeypatch.setitem(recipes.RECIPES, "tiny", recipes.TINY)
    bb, info = prepare.backbone(folder_ds)
    assert info["trained"] and info["report"]["consistency"] == info["trained"]["consistency"]
    assert str(folder_ds.model_prefix()).startswith(str(tmp_path / "models"))
    clf, t_info = prepare.teacher(folder_ds)
    assert t_info["card"]["data_split"]["dataset"] == "folder"
    rec = prepare.reconstruction(folder_ds, bb, clf)
    assert rec["reconstructed"].shape == folder_ds.test().x.shape
    _, again = prepare.backbone(folder_ds)
    assert "trained" not in again  # the second run reuses the trained models


def test_mnist_loader_splits_the_shipped_digits():
    tr, te = data.load("mnist", "train"), data.load("mnist", "test")
    assert (len(tr), len(te)) == (4000, 1000) and tr.x.shape[1:] == (1, 28, 28)
    assert tr.counts().tolist() == [400] * 10 and te.counts().tolist() == [100] * 10
    assert tr.x.min() >= -1 and tr.x.max() <= 1 and torch.equal(tr.x, data.load("mnist", "train").x)


def test_the_shipped_mnist_recipe_loads_and_meets_its_bars():
    ds = datasets.get("mnist", "smoke")
    bb, clf = ds.backbone(), ds.teacher()
    assert isinstance(bb, latent_ddpm.LatentDDPM) and bb.latent_shape == (4, 8, 8)
    assert bb.image_shape == (1, 28, 28)
    report = json.loads((checkpoints.MODELS_DIR / "mnist_report.json").read_text())
    bars = ds.entry.bars
    assert (
        report["teacher_accuracy"] >= bars["teacher"]
        and report["consistency"] >= bars["consistency"]
    )
    assert (
        100 * (report["teacher_accuracy"] - report["teacher_accuracy_reconstructed"])
        <= bars["reconstruction_drop"]
    )
    assert (
        sum(report["wall_time_s"].values()) <= 90 * 60
    )  # the training budget on this 2-core CPU
    x = ds.test().x[:8]
    assert (
        teacher_mod.accuracy(clf, x, ds.test().y[:8]) >= 0.75
        and bb.decode(bb.encode(x)).shape == x.shape
    )
