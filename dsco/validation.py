"""Checking a user's dataset parameters before anything runs.

Entry point: ``check(ds) -> ds`` for a :class:`dsco.datasets.Dataset` (``ds.check()`` calls it;
``dsco run`` and ``dsco concentrate`` call it before any notebook or computation starts). It
loads no weights: it reads folders, class lists and the backbone's and teacher's configuration
files, and raises :class:`~dsco.errors.DatasetError` (a ``ValueError``), one line naming the fix:

- a ``folder`` dataset: ``-p root`` is given and its smallest class has enough training images for
  the profile's largest IPC (:meth:`~dsco.datasets.Dataset.max_ipc`); the tree itself (classes,
  sizes, modes, corrupt images) is checked when it is read (:func:`dsco.folders.folder_layout`);
- an ImageNet dataset: ``-p root`` and ``-p backbone_path`` are given, the root holds every pinned
  class (:func:`dsco.folders.check_tree`), the DiT's and the VAE's configurations fit the dataset
  (:func:`check_backbone_shape`) and a ``teacher_path`` checkpoint has the dataset's classes;
- the embedded datasets: nothing to check.

:func:`need` (a parameter is given) and :func:`check_backbone_shape` (a loaded backbone fits the
dataset) are also what :mod:`dsco.models` checks when it loads a model.
"""

from __future__ import annotations

from .errors import DatasetError


def check(ds):
    """Validate the user's parameters of ``ds`` without loading weights (see the module docstring);
    returns ``ds``."""
    if ds.entry.kind == "folder":
        need(ds, "root")
        _check_class_sizes(ds)
    if ds.entry.kind == "imagenet":
        from . import folders

        need(ds, "root")
        need(ds, "backbone_path")
        folders.check_tree(ds.name, ds.params["root"])
        _check_backbone_config(ds)
        if ds.params.get("teacher_path"):
            _check_teacher_classes(ds)
    return ds


def need(ds, name: str) -> None:
    """Raise, naming the fix, if the ``-p`` parameter ``name`` (``root``, ``backbone_path``) is
    missing."""
    if ds.params.get(name):
        return
    folder = ds.entry.kind == "folder"
    what = {
        "root": "the ImageFolder root "
        + ("holding <class>/<images>" if folder else "holding train/<wnid>/ and val/<wnid>/"),
        "backbone_path": "a DiT-XL/2 folder or hub id (e.g. facebook/DiT-XL-2-256)",
    }[name]
    example = "" if folder else " -p backbone_path /models/DiT-XL-2-256"
    raise DatasetError(
        f"dataset {ds.name!r} needs -p {name} ({what}): dsco run --dataset "
        f"{ds.name} -p root /data/{ds.name}{example}"
    )


def check_backbone_shape(ds, num_classes, latent_shape, factor, vae_channels=None) -> None:
    """A backbone with ``num_classes`` classes and ``latent_shape`` latents that decode ``factor``
    times larger fits ``ds``: one class per label (ImageNet datasets: DiT's 1,000 ImageNet-1k
    classes), the VAE's latent channels (when given) are the DiT's, and the decoded images have the
    dataset's image size."""
    imagenet = ds.entry.kind == "imagenet"
    want = 1000 if imagenet else ds.num_classes
    if int(num_classes) != want:
        how = "it is conditioned on ImageNet-1k class indices" if imagenet else "one per class"
        raise DatasetError(
            f"the backbone has {num_classes} classes but {ds.name} needs {want} "
            f"({how}): pass a backbone trained for this dataset"
        )
    c, h, _ = (int(s) for s in latent_shape)
    if vae_channels is not None and vae_channels != c:
        raise DatasetError(
            f"the VAE has {vae_channels} latent channels but the DiT expects {c}: "
            "pass the matching -p vae_path"
        )
    if imagenet and h * factor != ds.image_size:
        raise DatasetError(
            f"the backbone's latent {c}×{h}×{h} decodes to {h * factor} px images "
            f"but {ds.name} is loaded at image_size {ds.image_size}: pass -p "
            f"image_size {h * factor} (or a backbone for {ds.image_size} px)"
        )


def _check_class_sizes(ds) -> None:
    """Every class of a folder dataset has as many training images as the profile's largest IPC."""
    counts, most = ds.train().counts(), ds.max_ipc()
    if int(counts.min()) < most:
        small = ds.classes[int(counts.argmin())]
        raise DatasetError(
            f"class {small!r} has {int(counts.min())} training images but the "
            f"{ds.profile} profile uses up to {most} per class: add images (at "
            f"least {most} per class for training)"
        )


def _check_backbone_config(ds) -> None:
    """The DiT's and the VAE's configuration files (no weights) fit the dataset."""
    from . import dit

    cfg, vae = dit.dit_configs(ds.params["backbone_path"], ds.params.get("vae_path"))
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    shape = (cfg["in_channels"], cfg["sample_size"], cfg["sample_size"])
    check_backbone_shape(
        ds, cfg["num_embeds_ada_norm"], shape, factor, vae_channels=vae["latent_channels"]
    )


def _check_teacher_classes(ds) -> None:
    """The timm checkpoint at ``teacher_path`` has one output per class of the dataset."""
    from . import teacher as teacher_mod

    path = ds.params["teacher_path"]
    n = teacher_mod.timm_num_classes(path, ds.entry.teacher["arch"])
    if n != ds.num_classes:
        raise DatasetError(
            f"teacher {path} has {n} classes but {ds.name} has {ds.num_classes}: "
            f"pass a teacher trained on {ds.name}, or leave teacher_path out so "
            "that notebook 00 trains one"
        )
