"""Tests for dsco.folders: the pinned class lists, ImageFolder trees of ImageNet classes and their
errors, the tree check, and folder datasets of any tree (tiny generated PNG trees)."""

import csv

import numpy as np
import pytest
from PIL import Image

from dsco import data, folders
from dsco.errors import DatasetError

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


# ---------------------------------------------------------------- pinned class lists
@pytest.mark.parametrize(
    "name,wnids,idx", [("imagenette", NETTE, NETTE_IDX), ("imagewoof", WOOF, WOOF_IDX)]
)
def test_pinned_class_tables(name, wnids, idx):
    rows = folders.class_table(name)
    with open(folders.CLASS_DIR / f"{name}.csv", newline="") as f:
        assert csv.DictReader(f).fieldnames == ["label", "wnid", "name", "imagenet_index"]
    assert [r["label"] for r in rows] == list(range(10))
    assert [r["wnid"] for r in rows] == wnids and [r["imagenet_index"] for r in rows] == idx
    # ImageNet-1k indices are the ranks of the sorted wnids: the two orders must agree
    assert sorted(wnids) == [w for _, w in sorted(zip(idx, wnids))]


# ---------------------------------------------------------------- ImageFolder trees: errors
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


# ---------------------------------------------------------------- tree check
def test_check_tree_passes_and_names_every_missing_wnid(nette, tmp_path):
    assert folders.check_tree("imagenette", nette) is None
    for w in (NETTE[1], NETTE[8]):
        for f in (nette / "val" / w).iterdir():
            f.unlink()
        (nette / "val" / w).rmdir()
    with pytest.raises(DatasetError) as e:
        folders.check_tree("imagenette", nette)
    msg = str(e.value)
    assert (
        "2 class folder(s) missing" in msg
        and f"{NETTE[1]} (English springer)" in msg
        and NETTE[8] in msg
    )
    assert "\n" not in msg
    with pytest.raises(DatasetError, match="needs root="):
        folders.check_tree("imagewoof", None)
    other = make_tree(tmp_path / "other", ["n09999999"], n_train=1)  # none of the pinned classes
    with pytest.raises(DatasetError, match=r"10 class folder\(s\) missing .*n01440764 \(tench\)"):
        folders.check_tree("imagenette", other)


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
    lay = folders.folder_layout(root)
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
        folders.folder_layout(tmp_path / "t")
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
