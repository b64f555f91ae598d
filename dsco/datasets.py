"""Datasets resolved for a run: a registry entry (:mod:`dsco.registry`) for one profile and the
user's parameters.

Entry point: ``get(name, profile="smoke", **params) -> Dataset``. Every notebook calls it once with
its ``parameters`` cell (``dataset``, ``profile`` and the user's ``root``, ``backbone_path``,
``vae_path``, ``teacher_path``, ``image_size``), and the package reads the returned
:class:`Dataset` instead of naming a dataset: :func:`dsco.surrogates.make`,
:func:`dsco.grids.grid` (through ``ds.test()`` and ``ds.protocol()``), the teacher,
``dsco bench`` and the book.

This module reads top to bottom: :func:`get` (and :func:`budget`); the :class:`Dataset` it returns
(what the dataset is, its splits and models, the training protocol, the paper's columns, its
description in words). What each dataset is -- loader, backbone, teacher, projector, paper
columns, NOpt defaults and one :class:`~dsco.budgets.Budget` per profile -- is its
:class:`~dsco.registry.Entry` in :data:`dsco.registry.REGISTRY`.

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

from .budgets import Budget
from .errors import DatasetError  # noqa: F401  (re-exported: datasets.DatasetError)
from .registry import REGISTRY, Entry

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
            from . import folders

            lay = folders.folder_layout(self.params.get("root"))
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
        from . import folders

        table = folders.class_table(self.name, self.params.get("root"))
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
