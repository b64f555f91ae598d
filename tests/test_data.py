"""Tests for dsco.data: digits split, per-class access, random real subsets, ImageFolder trees,
every DatasetError, and the latent cache (tiny generated PNG tree, tiny random AutoencoderKL)."""

import copy
import csv
from collections import Counter

import numpy as np
import pytest
import rounding
import torch
from PIL import Image

from dsco import data
from dsco.data import DatasetError

NETTE = (
    "n01440764 n02102040 n02979186 n03000684 n03028079 n03394916 n03417042 n03425413 "
    "n03445777 n03888257"
).split()
NETTE_IDX = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
WOOF = (
    "n02096294 n02093754 n02111889 n02088364 n02086240 n02089973 n02087394 n02115641 "
    "n02099601 n02105641"
).split()
WOOF_IDX = [193, 182, 258, 162, 155, 167, 159, 273, 207, 229]


def make_tree(root, wnids, n_train=3, n_val=1, size=(20, 16), seed=0):
    """A tiny ImageFolder tree of random-colour PNGs: root/{train,val}/<wnid>/*.png."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for w in wnids:
            (root / split / w).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                px = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(px).save(root / split / w / f"{w}_{k}.png")
    return root


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


# ---------------------------------------------------------------- pinned class lists
@pytest.mark.parametrize(
    "name,wnids,idx", [("imagenette", NETTE, NETTE_IDX), ("imagewoof", WOOF, WOOF_IDX)]
)
def test_pinned_class_tables(name, wnids, idx):
    rows = data.class_table(name)
    with open(data.CLASS_DIR / f"{name}.csv", newline="") as f:
        assert csv.DictReader(f).fieldnames == ["label", "wnid", "name", "imagenet_index"]
    assert [r["label"] for r in rows] == list(range(10))
    assert [r["wnid"] for r in rows] == wnids and [r["imagenet_index"] for r in rows] == idx
    # ImageNet-1k indices are the ranks of the sorted wnids: the two orders must agree
    assert sorted(wnids) == [w for _, w in sorted(zip(idx, wnids))]


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


def test_imagenet1k_uses_sorted_wnid_folders(tmp_path):
    make_tree(tmp_path, ["n03000684", "n01440764", "n02102040"], n_train=1)
    (tmp_path / "train" / "README").mkdir()  # not a wnid: ignored
    ds = data.load("imagenet1k", "val", tmp_path, size=8)
    assert ds.wnids == ["n01440764", "n02102040", "n03000684"] == ds.classes and ds.y.tolist() == [
        0,
        1,
        2,
    ]


def test_error_missing_root(tmp_path):
    with pytest.raises(
        DatasetError, match=r"'imagenette' needs root=: the folder holding train/<wnid>/\*\.JPEG"
    ):
        data.load("imagenette", "train")
    with pytest.raises(
        DatasetError, match=r"no folder .*nowhere/train: pass root= the imagewoof folder"
    ):
        data.load("imagewoof", "train", tmp_path / "nowhere")


def test_error_no_wnid_folders_imagenet1k(tmp_path):
    (tmp_path / "train" / "cats").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no wnid folders .*pass root= the ImageNet-1k folder"):
        data.load("imagenet1k", "train", tmp_path)


def test_error_class_folder_missing(nette):
    (nette / "val" / NETTE[4] / f"{NETTE[4]}_0.png").unlink()
    (nette / "val" / NETTE[4]).rmdir()
    with pytest.raises(
        DatasetError, match=rf"1 class folder\(s\) missing under .*val: {NETTE[4]} \(church\); put"
    ):
        data.load("imagenette", "test", nette)


def test_error_empty_class(nette):
    for f in (nette / "train" / NETTE[7]).iterdir():
        f.unlink()
    (nette / "train" / NETTE[7] / "notes.txt").write_text("not an image")
    with pytest.raises(
        DatasetError, match=rf"empty class folder\(s\) under .*train: {NETTE[7]} hold no images"
    ):
        data.load("imagenette", "train", nette)


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


# ---------------------------------------------------------------- latent cache
def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(8,),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).eval()


class Counting:
    """An ``encode(x) -> z`` callable that counts how many images it has encoded."""

    def __init__(self, vae):
        self.vae, self.seen = vae, 0

    def __call__(self, x):
        self.seen += len(x)
        return self.vae.encode(x).latent_dist.mean * 0.18215


def test_latent_cache_hit_and_miss(nette, tmp_path):
    cache = tmp_path / "cache"
    enc = Counting(tiny_vae())
    ds = data.load("imagenette", "train", nette, size=16)
    kw = dict(encoder_id="tiny-vae-seed0", cache_dir=cache, batch_size=2, progress=False)
    z = data.encode_class(ds, 1, enc, **kw)
    assert (
        z.shape == (3, 4, 16, 16) and enc.seen == 3 and len(list(cache.glob("*.safetensors"))) == 1
    )
    # batches of 2 + 1 against one batch of 3: another batch shape, equal up to float rounding
    # (tests/rounding.py); here |Δ| = 9e-8 against a float32-vs-float64 error of 9e-8 (tolerance
    # 5e-6)
    with torch.no_grad():
        whole = enc(ds.per_class(1))
        vae64 = copy.deepcopy(enc.vae).double()
        whole64 = vae64.encode(ds.per_class(1).double()).latent_dist.mean * 0.18215
    tol = rounding.tolerance(whole, whole64)
    rounding.assert_within(z, whole, tol, "encoded in batches of 2")
    rounding.assert_distinct(z, enc(ds.per_class(2)), tol, "another class")
    enc.seen = 0
    assert (
        torch.equal(data.encode_class(ds, 1, enc, **kw), z) and enc.seen == 0
    )  # hit: encoder not called
    assert (
        torch.equal(data.latents("imagenette", "train", 1, enc, nette, size=16, **kw), z)
        and enc.seen == 0
    )
    data.encode_class(ds, 1, enc, **(kw | {"encoder_id": "other-vae"}))  # miss: another encoder
    assert enc.seen == 3
    data.latents("imagenette", "train", 1, enc, nette, size=8, **kw)  # miss: another transform
    assert enc.seen == 6
    data.encode_class(ds, 2, enc, **kw)  # miss: another class
    assert enc.seen == 9
    data.encode_class(
        data.load("imagenette", "test", nette, size=16), 1, enc, **kw
    )  # miss: another split
    assert enc.seen == 10
    Image.new("RGB", (16, 16), (9, 9, 9)).save(nette / "train" / NETTE[1] / "new.png")
    z4 = data.latents(
        "imagenette", "train", 1, enc, nette, size=16, **kw
    )  # miss: another file list
    assert z4.shape[0] == 4 and enc.seen == 14
    assert len(list(cache.glob("*.safetensors"))) == 6 and not list(cache.glob("*.tmp"))


def test_encode_class_needs_encoder_id(nette, tmp_path):
    ds = data.load("imagenette", "train", nette, size=16)
    with pytest.raises(DatasetError, match="needs encoder_id="):
        data.encode_class(ds, 0, lambda x: x, cache_dir=tmp_path, progress=False)


def test_encode_in_memory_set_uncached(tmp_path):
    tr = data.load("digits", "train")
    z = data.latents(
        "digits", "train", 5, lambda x: 2 * x, cache_dir=tmp_path, batch_size=50, progress=False
    )
    assert torch.equal(z, 2 * tr.per_class(5)) and not list(tmp_path.iterdir())


# ---------------------------------------------------------------- class names, tree check, batches
def test_class_names():
    assert data.class_names("digits") == [str(c) for c in range(10)]
    names = data.class_names("imagenette")
    assert names[:2] == ["tench", "English springer"] and len(names) == 10
    assert data.class_names("imagewoof")[0] == "Australian terrier"


def test_check_tree_passes_and_names_every_missing_wnid(nette, tmp_path):
    assert data.check_tree("imagenette", nette) is None
    for w in (NETTE[1], NETTE[8]):
        for f in (nette / "val" / w).iterdir():
            f.unlink()
        (nette / "val" / w).rmdir()
    with pytest.raises(DatasetError) as e:
        data.check_tree("imagenette", nette)
    msg = str(e.value)
    assert (
        "2 class folder(s) missing" in msg
        and f"{NETTE[1]} (English springer)" in msg
        and NETTE[8] in msg
    )
    assert "\n" not in msg
    with pytest.raises(DatasetError, match="needs root="):
        data.check_tree("imagewoof", None)
    other = make_tree(tmp_path / "other", ["n09999999"], n_train=1)  # none of the pinned classes
    with pytest.raises(DatasetError, match=r"10 class folder\(s\) missing .*n01440764 \(tench\)"):
        data.check_tree("imagenette", other)


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


# --- folder datasets (any ImageFolder tree)
# -------------------------------------------------------------
def _tree(root, sizes=None, modes=None, per_class=4, classes=("a", "b")):
    from PIL import Image

    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (sizes or {}).get((c, i), 6)
            mode = (modes or {}).get((c, i), "L")
            Image.new(mode, (size, size), color=40 * k if mode == "L" else (40 * k, 0, 0)).save(
                root / c / f"{i}.png"
            )
    return root


def test_folder_layout_splits_a_tree_and_loads_grey_or_rgb(tmp_path):
    root = _tree(tmp_path / "t", per_class=5)
    lay = data.folder_layout(root)
    assert lay["classes"] == ["a", "b"] and lay["mode"] == "L" and lay["size"] == (6, 6)
    assert len(lay["train"]) == 8 and len(lay["test"]) == 2  # a seeded stratified 20 % test split
    tr = data.load("folder", "train", root)
    assert (
        tr[0][0].shape == (1, 6, 6)
        and tr.counts().tolist() == [4, 4]
        and data.class_names("folder", root) == ["a", "b"]
    )
    rgb = _tree(tmp_path / "rgb", modes={(c, i): "RGB" for c in "ab" for i in range(4)})
    assert data.load("folder", "test", rgb).in_memory().x.shape[1] == 3
    pre = tmp_path / "pre"
    _tree(pre / "train"), _tree(pre / "val", per_class=2)
    assert len(data.load("folder", "test", pre)) == 4  # val/ is the test split


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda r: _tree(r, classes=("only",)), r"1 class folder\(s\): a dataset needs at least 2"),
        (
            lambda r: (_tree(r), (r / "c").mkdir()),
            r"empty class folder\(s\) under .*: c hold no images",
        ),
        (
            lambda r: (_tree(r), (r / "a" / "9.png").write_bytes(b"not a png")),
            r"corrupt or unreadable image .*a/9.png",
        ),
        (
            lambda r: _tree(r, sizes={("b", 2): 7}),
            r"images of mixed sizes: 6×6 .* and 7×7 .*b/2.png",
        ),
        (
            lambda r: _tree(r, modes={("a", 1): "RGB"}),
            r"mixed channel counts: grey .* and colour .*a/1.png",
        ),
        (
            lambda r: _tree(r, per_class=1),
            r"fewer than 2 images: the train/test split needs at least 2",
        ),
        (lambda r: (_tree(r), (r / "train").mkdir()), r"has train/ but no val/"),
    ],
)
def test_a_bad_folder_is_one_line_naming_the_fix(tmp_path, make, match):
    make(tmp_path / "t")
    with pytest.raises(DatasetError, match=match) as err:
        data.folder_layout(tmp_path / "t")
    assert "\n" not in str(err.value)


def test_a_folder_class_smaller_than_the_profiles_ipcs_is_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    from dsco import datasets, models

    monkeypatch.setattr(models, "BUILD_MODELS", tmp_path / "models")
    ds = datasets.get("folder", "smoke", root=str(_tree(tmp_path / "t", per_class=6)))
    smallest = int(ds.train().counts().min())  # 6 images per class, less the seeded test share
    assert smallest < 8
    with pytest.raises(
        DatasetError,
        match=rf"has {smallest} training images but the smoke profile uses up to 8 per class",
    ):
        ds.check()
    assert not (tmp_path / "models").exists()
    with pytest.raises(DatasetError, match="needs -p root"):
        datasets.get("folder", "smoke").check()


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
