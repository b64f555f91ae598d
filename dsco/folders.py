"""Image trees on disk: scanning and checking the ImageFolder trees the datasets read
(:mod:`dsco.data` turns what they list into lazy sets).

Entry points: :func:`folder_layout` (a ``folder`` dataset), :func:`class_table`, :func:`check_tree`
and :func:`tree_split` (the ImageNet ones). Every bad tree raises :class:`DatasetError`, one line
naming the fix.

``folder`` -- any tree ``root/<class>/*`` (split here, a seeded stratified 20 % of every class
    is the test split) or ``root/train/<class>/*`` + ``root/val/<class>/*``; classes are the sorted
    folder names. :func:`folder_layout` opens every image once and refuses mixed sizes or channel
    counts.

``imagenette``, ``imagewoof``, ``imagenet1k`` -- ImageFolder trees of original-ImageNet wnid folders
    ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*`` (split ``"test"`` reads ``val/``).
    ImageNette and ImageWoof take their label order, names and ImageNet-1k indices from the pinned
    lists ``data/classes/<name>.csv`` (columns ``label,wnid,name,imagenet_index``); other folders
    under the root are ignored, so a full ImageNet root works too. ImageNet-1k takes the sorted
    wnid folder names under ``root/train`` (the standard ImageNet-1k label order); its class names
    are the wnids themselves (no names file is shipped). Scanning a tree costs one directory walk.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from . import ROOT
from .errors import DatasetError

CLASS_DIR = ROOT / "data" / "classes"
FOLDER_TEST_SIZE = 0.2
FOLDER_SEED = 0
_LAYOUT = "train/<wnid>/*.JPEG and val/<wnid>/*"
_GREY = {"1", "L", "I", "F", "I;16", "LA"}
_LAYOUTS: dict = {}


def folder_layout(root) -> dict:
    """Scan and check a ``folder`` dataset: ``root/<class>/*`` (split here: a seeded stratified
    :data:`FOLDER_TEST_SIZE` of every class is the test split) or ``root/train/<class>/*`` with
    ``root/val/<class>/*`` (or ``test/``). Every image is opened and verified. Returns ``{"classes",
    "train", "test"}`` (lists of ``(path, label)``), ``"mode"`` ("L" or "RGB") and ``"size"`` (h,
    w). Raises :class:`DatasetError` naming the fix for: fewer than 2 classes, an empty class, a
    corrupt image (the file), images of mixed sizes or channel counts (which), a class too small to
    split."""
    root = _need_root("folder", root)
    key = str(root.resolve())
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _scan_folder(root)
    return _LAYOUTS[key]


def class_table(name: str, root=None) -> list[dict]:
    """The class list of an ImageFolder dataset in label order: dicts with ``label``, ``wnid``,
    ``name``, ``imagenet_index``. Pinned CSV for imagenette/imagewoof; sorted wnid folders under
    ``root/train`` for imagenet1k (names are the wnids)."""
    if name in ("imagenette", "imagewoof"):
        with open(CLASS_DIR / f"{name}.csv", newline="") as f:
            return [
                {
                    "label": int(r["label"]),
                    "wnid": r["wnid"],
                    "name": r["name"],
                    "imagenet_index": int(r["imagenet_index"]),
                }
                for r in csv.DictReader(f)
            ]
    if name != "imagenet1k":
        raise DatasetError(f"no class table for {name!r}: use imagenette, imagewoof or imagenet1k")
    train = Path(_need_root(name, root)) / "train"
    wnids = sorted(
        p.name for p in train.glob("n*") if p.is_dir() and re.fullmatch(r"n\d{8}", p.name)
    )
    if not wnids:
        raise DatasetError(
            f"no wnid folders (like n01440764) in {train}: pass root= the ImageNet-1k "
            f"folder holding {_LAYOUT}"
        )
    return [{"label": i, "wnid": w, "name": w, "imagenet_index": i} for i, w in enumerate(wnids)]


def check_tree(name: str, root) -> None:
    """Check an ImageFolder root before anything runs: ``train/`` and ``val/`` exist and hold a
    non-empty folder for every pinned class. Raises :class:`DatasetError` naming every missing
    wnid."""
    for split in ("train", "test"):
        tree_split(name, split, root)


def tree_split(name: str, split: str, root) -> tuple[list[str], torch.Tensor, list[dict]]:
    """The images of split ``split`` (``"train"``, or ``"test"``: ``val/``) of the ImageNet tree
    ``name`` at ``root``, checked: their files, their labels (a long tensor) and the
    :func:`class_table`. Raises :class:`DatasetError` naming every missing or empty class
    folder."""
    split_dir = _need_root(name, root) / ("train" if split == "train" else "val")
    if not split_dir.is_dir():
        raise DatasetError(f"no folder {split_dir}: pass root= the {name} folder holding {_LAYOUT}")
    table = class_table(name, root)
    missing = [r for r in table if not (split_dir / r["wnid"]).is_dir()]
    if missing:
        listed = ", ".join(f"{r['wnid']} ({r['name']})" for r in missing[:12]) + (
            " …" if len(missing) > 12 else ""
        )
        raise DatasetError(
            f"{len(missing)} class folder(s) missing under {split_dir}: {listed}; put those "
            f"classes' images there or fix root="
        )
    samples = make_dataset(
        str(split_dir),
        {r["wnid"]: r["label"] for r in table},
        extensions=IMG_EXTENSIONS,
        allow_empty=True,
    )
    y = torch.tensor([t for _, t in samples], dtype=torch.long)
    counts = torch.bincount(y, minlength=len(table))
    empty = [r for r in table if counts[r["label"]] == 0]
    if empty:
        raise DatasetError(
            f"empty class folder(s) under {split_dir}: {', '.join(r['wnid'] for r in empty[:12])} "
            f"hold no images ({'/'.join(IMG_EXTENSIONS)}); add their images or fix root="
        )
    return [p for p, _ in samples], y, table


def _need_root(name: str, root) -> Path:
    if root is None:
        raise DatasetError(
            f"dataset {name!r} needs root=: the folder holding {_LAYOUT} (ImageNet wnid folders)"
        )
    return Path(root).expanduser()


def _scan_folder(root: Path) -> dict:
    if not root.is_dir():
        raise DatasetError(
            f"no folder {root}: pass -p root a folder holding <class>/<images> "
            "(or train/<class>/ and val/<class>/)"
        )
    split_dirs = {
        "train": root / "train",
        "test": next((root / d for d in ("val", "test") if (root / d).is_dir()), None),
    }
    presplit = split_dirs["train"].is_dir()
    if presplit and split_dirs["test"] is None:
        raise DatasetError(
            f"{root} has train/ but no val/ (or test/): add the test split or put the class "
            "folders directly under the root (they are then split here)"
        )
    base = split_dirs["train"] if presplit else root
    classes = sorted(
        p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )
    if len(classes) < 2:
        raise DatasetError(
            f"{base} has {len(classes)} class folder(s): a dataset needs at least 2 (one folder of "
            "images per class)"
        )
    listing = {}
    for split, folder in (
        (("train", base), ("test", split_dirs["test"])) if presplit else (("all", base),)
    ):
        got = make_dataset(
            str(folder),
            {c: i for i, c in enumerate(classes)},
            extensions=IMG_EXTENSIONS,
            allow_empty=True,
        )
        counts = np.bincount([t for _, t in got], minlength=len(classes))
        empty = [classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise DatasetError(
                f"empty class folder(s) under {folder}: {', '.join(empty[:12])} hold no images "
                f"({'/'.join(IMG_EXTENSIONS)}); add images or remove the folder"
            )
        listing[split] = got
    sizes, modes = {}, {}
    for path, _ in (s for v in listing.values() for s in v):
        try:
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                sizes.setdefault((im.height, im.width), path)
                modes.setdefault(1 if im.mode in _GREY else 3, path)
        except (OSError, SyntaxError, ValueError) as e:
            raise DatasetError(
                f"corrupt or unreadable image {path} ({type(e).__name__}): "
                "delete or replace the file"
            ) from None
    if len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise DatasetError(
            f"images of mixed sizes: {a[0]}×{a[1]} ({pa}) and {b[0]}×{b[1]} ({pb}): resize every "
            "image to one size"
        )
    if len(modes) > 1:
        raise DatasetError(
            f"images with mixed channel counts: grey ({modes[1]}) and colour ({modes[3]}): "
            "convert every image to one mode (all grey or all RGB)"
        )
    if presplit:
        train, test = listing["train"], listing["test"]
    else:
        from sklearn.model_selection import train_test_split

        labels = np.array([t for _, t in listing["all"]])
        small = [classes[c] for c in range(len(classes)) if (labels == c).sum() < 2]
        if small:
            raise DatasetError(
                f"class(es) {', '.join(small)} have fewer than 2 images: the train/test split "
                "needs at least 2 per class; add images"
            )
        tr, te = train_test_split(
            np.arange(len(labels)),
            test_size=FOLDER_TEST_SIZE,
            stratify=labels,
            random_state=FOLDER_SEED,
        )
        train, test = ([listing["all"][i] for i in sorted(idx)] for idx in (tr, te))
    return {
        "classes": classes,
        "train": train,
        "test": test,
        "mode": "L" if 1 in modes else "RGB",
        "size": next(iter(sizes)),
    }
