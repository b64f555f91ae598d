"""Tests for dsco.data: digits split, per-class access, random real subsets, lazy sets of
ImageFolder trees, class names, batches and every DatasetError of the sets (tiny generated PNG
tree)."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from test_folders import NETTE, WOOF, make_tree

from dsco import data
from dsco.data import DatasetError


@pytest.fixture
def nette(tmp_path):
    return make_tree(tmp_path / "nette", NETTE)


# ---------------------------------------------------------------- digits
def test_digits_sizes_shape_range():
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    assert (len(tr), len(te)) == (1347, 450)
    assert (
        tr.x.shape == (1347, 1, 8, 8) and tr.x.dtype == torch.float32 and tr.y.dtype == torch.long
    )
    assert tr.x.min() == -1 and tr.x.max() == 1 and te.x.min() >= -1 and te.x.max() <= 1
    assert tr.classes == [str(c) for c in range(10)] and (tr.name, tr.split, te.split) == (
        "digits",
        "train",
        "test",
    )
    assert tr.counts().tolist() == [133, 136, 133, 137, 136, 136, 136, 134, 131, 135]
    assert te.counts().tolist() == [45, 46, 44, 46, 45, 46, 45, 45, 43, 45]


def test_digits_split_is_stratified_partition():
    from sklearn.datasets import load_digits

    d = load_digits()
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    total = np.bincount(d.target)
    assert np.all(np.abs(tr.counts().numpy() - 0.75 * total) <= 1)  # stratified: 3/4 of every class

    def rows(s):
        return Counter((bytes(xi.numpy().tobytes()), int(yi)) for xi, yi in zip(s.x, s.y))

    full = Counter(
        (torch.from_numpy(im).float().div(8).sub(1).unsqueeze(0).numpy().tobytes(), int(t))
        for im, t in zip(d.images, d.target)
    )
    assert rows(tr) + rows(te) == full  # train and test partition the 1,797 images


def test_digits_deterministic_and_val_alias():
    a, b, v = data.load("digits", "test"), data.load("digits", "test"), data.load("digits", "val")
    assert (
        torch.equal(a.x, b.x)
        and torch.equal(a.y, b.y)
        and torch.equal(a.x, v.x)
        and v.split == "test"
    )


def test_per_class_subset_and_indices():
    tr = data.load("digits", "train")
    x3 = tr.per_class(3)
    assert x3.shape == (137, 1, 8, 8) and torch.equal(x3, tr.x[tr.y == 3])
    sub = tr.subset([5, 0, 7])
    assert (
        torch.equal(sub.x, tr.x[[5, 0, 7]])
        and torch.equal(sub.y, tr.y[[5, 0, 7]])
        and len(sub) == 3
    )
    x, y = tr[4]
    assert x.shape == (1, 8, 8) and int(y) == int(tr.y[4])
    assert tr.in_memory() is tr


def test_class_out_of_range_error():
    with pytest.raises(DatasetError, match=r"use 0\.\.9"):
        data.load("digits", "train").per_class(10)


def test_sample_per_class_balanced_seeded():
    tr = data.load("digits", "train")
    a, b, c = (
        tr.sample_per_class(5, seed=0),
        tr.sample_per_class(5, seed=0),
        tr.sample_per_class(5, seed=1),
    )
    assert a.counts().tolist() == [5] * 10
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert sorted(a.y.tolist()) == a.y.tolist()  # ordered by class
    full = {(xi.numpy().tobytes(), int(yi)) for xi, yi in zip(tr.x, tr.y)}
    assert all((xi.numpy().tobytes(), int(yi)) in full for xi, yi in zip(a.x, a.y))  # real images
    assert len({xi.numpy().tobytes() for xi in a.x}) == 50  # drawn without replacement
    assert (
        tr.sample_per_class(131, seed=0).counts().tolist() == [131] * 10
    )  # the smallest class, whole


def test_sample_per_class_ipc_too_large():
    with pytest.raises(
        DatasetError, match=r"smallest class '8' has 131 images; use 1 <= ipc <= 131"
    ):
        data.load("digits", "train").sample_per_class(132, seed=0)


def test_unknown_dataset_and_split():
    with pytest.raises(
        DatasetError, match="use one of digits, mnist, folder, imagenette, imagewoof, imagenet1k"
    ):
        data.load("cifar10", "train")
    with pytest.raises(DatasetError, match="use one of train, test, val"):
        data.load("digits", "validation")


# ---------------------------------------------------------------- ImageFolder trees
def test_folder_loads_with_pinned_label_order(tmp_path):
    root = make_tree(tmp_path, NETTE + WOOF + ["n09999999"], n_train=2)  # one extra folder, ignored
    woof = data.load("imagewoof", "train", tmp_path, size=16)
    assert isinstance(woof, data.FolderSet) and len(woof) == 20 and woof.wnids == WOOF
    assert woof.classes[:3] == ["Australian terrier", "Border terrier", "Samoyed"]
    for f, y in zip(woof.files, woof.y.tolist()):
        assert f.split("/")[-2] == WOOF[y]  # label follows the CSV, not sorted wnids
    x, y = woof[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    nette = data.load("imagenette", "test", root)  # "test" reads val/, default size 256
    assert nette.split == "test" and len(nette) == 10 and nette.classes[0] == "tench"
    assert all("/val/" in f for f in nette.files)
    assert nette[0][0].shape == (3, 256, 256)


def test_folder_per_class_subset_sample_in_memory(nette):
    ds = data.load("imagenette", "train", nette, size=16)
    assert ds.per_class(2).shape == (3, 3, 16, 16)
    s = ds.sample_per_class(2, seed=0)
    assert isinstance(s, data.FolderSet) and s.counts().tolist() == [2] * 10
    assert s.files == ds.sample_per_class(2, seed=0).files
    m = s.in_memory()
    assert (
        isinstance(m, data.ImageSet)
        and m.x.shape == (20, 3, 16, 16)
        and torch.equal(m.x[0], s[0][0])
    )
    with pytest.raises(DatasetError, match=r"has 3 images; use 1 <= ipc <= 3"):
        ds.sample_per_class(4, seed=0)


def test_error_corrupt_image(nette):
    bad = nette / "train" / NETTE[0] / "broken.JPEG"
    bad.write_bytes(b"this is not a jpeg")
    ds = data.load("imagenette", "train", nette, size=16)
    i = ds.files.index(str(bad))
    with pytest.raises(
        DatasetError, match=r"corrupt or unreadable image .*broken\.JPEG .*delete or replace"
    ):
        ds[i]
    cut = nette / "train" / NETTE[0] / "truncated.jpg"  # a real JPEG, cut in half
    Image.fromarray(np.full((64, 64, 3), 127, np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    ds = data.load("imagenette", "train", nette, size=16)
    with pytest.raises(
        DatasetError, match=r"corrupt or unreadable image .*truncated\.jpg \(OSError\)"
    ):
        ds[ds.files.index(str(cut))]


# ---------------------------------------------------------------- class names, batches
def test_class_names():
    assert data.class_names("digits") == [str(c) for c in range(10)]
    names = data.class_names("imagenette")
    assert names[:2] == ["tench", "English springer"] and len(names) == 10
    assert data.class_names("imagewoof")[0] == "Australian terrier"


def test_batches_of_every_kind_of_set(nette):
    tr = data.load("digits", "train").subset(torch.arange(10))
    out = list(data.batches(tr, 4))
    assert [len(y) for _, y in out] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in out]), tr.x) and torch.equal(
        torch.cat([y for _, y in out]), tr.y
    )
    pairs = list(data.batches((tr.x, tr.y), 6))
    assert [len(x) for x, _ in pairs] == [6, 4] and torch.equal(pairs[1][0], tr.x[6:])
    lazy = data.load("imagenette", "train", nette, size=8)
    got = list(data.batches(lazy, 8))
    assert [len(y) for _, y in got] == [8, 8, 8, 6]
    x = torch.cat([b for b, _ in got])
    assert torch.equal(x, lazy.in_memory().x) and torch.equal(
        torch.cat([y for _, y in got]), lazy.y
    )  # in order


def test_replacing_writes_atomically_and_cleans_up_a_failed_write(tmp_path):
    import os

    from dsco import replacing

    path = tmp_path / "entry.json"
    with replacing(path) as tmp:
        assert tmp.name == f"entry.json.tmp{os.getpid()}" and not path.exists()
        tmp.write_text("first")
    assert path.read_text() == "first" and not tmp.exists()
    with pytest.raises(RuntimeError, match="interrupted"):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "first" and list(tmp_path.iterdir()) == [path]
