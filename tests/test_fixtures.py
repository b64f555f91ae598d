"""Tests for dsco.fixtures: the offline ImageNet-layout tree and tiny checkpoints are what a user's
downloads would be (torchvision's ImageFolder reads the tree, dsco.backbones and dsco.teacher load
the checkpoints), and the same seed makes the same files."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torchvision.datasets import ImageFolder

from dsco import backbones, data, dit, fixtures, folders
from dsco import teacher as T


def test_tree_is_an_imagefolder_of_the_pinned_wnids(nette_params):
    root = Path(nette_params["root"])
    wnids = [r["wnid"] for r in folders.class_table("imagenette")]
    train, val = ImageFolder(str(root / "train")), ImageFolder(str(root / "val"))
    assert train.classes == sorted(wnids) and val.classes == sorted(wnids)
    assert len(train) == 10 * 10 and len(val) == 10 * 4
    sizes = {train[i][0].size for i in range(0, len(train), 7)}
    assert len(sizes) > 1 and all(
        10 <= w <= 14 and 10 <= h <= 14 for w, h in sizes
    )  # sizes vary, as ImageNet's
    assert all(p.endswith(".JPEG") for p, _ in train.samples)
    # the package reads it in the pinned label order
    s = data.load("imagenette", "train", root, size=8)
    assert s.wnids == wnids and s.counts().tolist() == [10] * 10


def test_checkpoints_load_as_a_user_download(nette_params):
    assert nette_params["image_size"] == fixtures.TINY_IMAGE_SIZE == 8
    bb = backbones.load(
        "dit-xl-2-256",
        nette_params["backbone_path"],
        vae_path=nette_params["vae_path"],
        local_files_only=True,
    )
    assert isinstance(bb, dit.DiT) and bb.num_classes == 1000 and bb.latent_shape == (4, 4, 4)
    assert bb.latent_shape[1] * bb.image_factor == nette_params["image_size"]
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert bb.decode(bb.encode(x)).shape == (2, 3, 8, 8)
    clf = T.load_timm_teacher(nette_params["teacher_path"], "resnet18", 10)
    assert clf.num_classes == 10 and T.timm_num_classes(nette_params["teacher_path"]) == 10
    assert clf(x).shape == (2, 10)
    assert fixtures.command("imagenette", nette_params).startswith(
        "dsco run --dataset imagenette --profile smoke -p root "
    )


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_deterministic_given_the_seed(tmp_path):
    a = fixtures.make(tmp_path / "a", train=2, val=1, seed=3)
    fixtures.make(tmp_path / "b", train=2, val=1, seed=3)
    fixtures.make(tmp_path / "c", train=2, val=1, seed=4)
    fa, fb, fc = (_files(tmp_path / s) for s in "abc")
    assert set(fa) == set(fb) == set(fc) and len([f for f in fa if f.endswith(".JPEG")]) == 10 * 3
    images = [f for f in fa if f.endswith(".JPEG")]
    assert all(fa[f].read_bytes() == fb[f].read_bytes() for f in images)
    assert any(fa[f].read_bytes() != fc[f].read_bytes() for f in images)
    for name in ("dit", "vae", "teacher"):
        (wa,), (wb,), (wc,) = (
            [p for k, p in f.items() if k.startswith(name + "/") and k.endswith(".safetensors")]
            for f in (fa, fb, fc)
        )
        sa, sb, sc = load_file(wa), load_file(wb), load_file(wc)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert any(
            not torch.equal(sa[k], sc[k])
            for k in sa
            if sa[k].is_floating_point() and sa[k].numel() > 1
        )
    assert {k: v for k, v in a.items() if not k.endswith(("root", "path"))} == {"image_size": 8}


def test_imagewoof_tree(tmp_path):
    root = fixtures.imagenet_tree(tmp_path / "woof", "imagewoof", train=1, val=1)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(
        r["wnid"] for r in folders.class_table("imagewoof")
    )
    with pytest.raises(data.DatasetError, match="no class table"):
        fixtures.imagenet_tree(tmp_path / "x", "digits")
