"""A dataset's models: where they come from, where notebook 00 writes the ones it trains, and how
they are loaded.

Entry points, each taking a :class:`dsco.datasets.Dataset` (which calls them from its
``backbone()`` / ``teacher()`` methods and keeps what they load):

- :func:`load_backbone` -- the backbone of the dataset's recipe: *shipped* in ``data/models/``
  (``digits``' pixel DDPM, ``mnist``'s latent recipe), *trained* by notebook 00 into
  ``build/models/`` (``folder``: the latent recipe on the user's tree) or *pretrained* (DiT-XL/2 +
  SD-VAE from the user's ``backbone_path`` / ``vae_path``); checked against the dataset
  (:func:`dsco.validation.check_backbone_shape`);
- :func:`load_teacher` -- the shipped teacher, the latent recipe's teacher, the user's timm
  checkpoint (``teacher_path``) or the one notebook 00 trained.

Where trained models live (:data:`BUILD_MODELS`, never ``data/models/``), one folder per dataset:

- :func:`model_prefix` -- ``build/models/<name>/<profile>-<key>/<name>``: the common prefix of a
  trained latent recipe's files (``<prefix>_teacher``, ``_vae``, ``_ddpm``: safetensors + JSON card,
  and ``_report.json``); :func:`recipe_prefix` is the same prefix for a shipped recipe
  (``data/models/<prefix>``) or a trained one, and names notebook 00 when a trained file is missing;
- :func:`teacher_file` -- ``build/models/<name>/teacher-<profile>-<key>/``: a timm teacher
  trained by notebook 00 (timm's own layout).

``<key>`` is :meth:`dsco.datasets.Dataset.key` (the dataset, its profile's classes, image size and
the user's parameters). :func:`digest` is a cheap digest of everything under
``build/models/<name>/``: the runner keys the notebooks after notebook 00 with it, so a retrain
re-executes them.
"""

from __future__ import annotations

from pathlib import Path

from . import ROOT, tree_digest
from .errors import DatasetError

#: Where notebook 00 writes the models it trains (never ``data/models/``), one folder per dataset.
BUILD_MODELS = ROOT / "build" / "models"


def load_backbone(ds, device: str = "cpu"):
    """The backbone of ``ds`` on ``device`` (see the module docstring), checked against ``ds``."""
    from . import backbones, validation

    recipe = ds.entry.backbone
    if recipe["name"] == "latent-ddpm":
        bb = backbones.load(recipe["name"], recipe_prefix(ds, "ddpm"), device=device)
    elif recipe["kind"] == "shipped":
        bb = backbones.load(recipe["name"], device=device)
    else:
        validation.need(ds, "backbone_path")
        bb = backbones.load(
            recipe["name"],
            ds.params["backbone_path"],
            vae_path=ds.params.get("vae_path"),
            device=device,
        )
    validation.check_backbone_shape(
        ds, bb.num_classes, bb.latent_shape, getattr(bb, "image_factor", 1)
    )
    return bb


def load_teacher(ds, device: str = "cpu"):
    """The teacher classifier of ``ds`` (logits for images in [-1, 1]) on ``device``: the shipped
    one (``digits``), the latent recipe's (``mnist``, ``folder``), the timm checkpoint at
    ``teacher_path``, or the one notebook 00 trained (:func:`teacher_file`); a missing one raises
    :class:`~dsco.errors.DatasetError` naming notebook 00."""
    from . import teacher as teacher_mod

    recipe = ds.entry.teacher
    if recipe.get("with") == "latent":  # trained with the latent recipe (mnist, folder)
        return teacher_mod.load_teacher(
            f"{recipe_prefix(ds, 'teacher')}_teacher.safetensors", device=device
        )
    if recipe["kind"] == "shipped":
        from .checkpoints import MODELS_DIR

        return teacher_mod.load_teacher(MODELS_DIR / recipe["file"], device=device)
    path = ds.params.get("teacher_path") or teacher_file(ds)
    if not Path(path).exists():
        raise DatasetError(
            f"no teacher for {ds.name}: pass -p teacher_path (a timm "
            f"{recipe['arch']} checkpoint with {ds.num_classes} classes) or run "
            f"notebook 00 first (dsco run --dataset {ds.name} --only 00), which "
            f"trains one into {path}"
        )
    return teacher_mod.load_timm_teacher(path, recipe["arch"], ds.num_classes, device)


def model_prefix(ds) -> Path:
    """Where notebook 00 writes the models it trains for a ``trained`` recipe (``<prefix>_vae``,
    ...)."""
    return BUILD_MODELS / ds.name / f"{ds.profile}-{ds.key()}" / ds.name


def recipe_prefix(ds, part: str | None = None) -> Path:
    """The common prefix of the latent recipe's files (``<prefix>_teacher``, ``_vae``, ``_ddpm``:
    safetensors + JSON card): shipped in ``data/models/`` (``mnist``) or trained by notebook 00
    (``folder``, :func:`model_prefix`). With ``part``, a trained file that is missing raises naming
    notebook 00."""
    recipe = ds.entry.backbone
    if recipe["kind"] == "shipped":
        from .checkpoints import MODELS_DIR

        return MODELS_DIR / recipe["prefix"]
    prefix = model_prefix(ds)
    if part and not Path(f"{prefix}_{part}.safetensors").is_file():
        raise DatasetError(
            f"no trained {part} for {ds.name} under {prefix.parent}: run notebook "
            f"00 first (dsco run --dataset {ds.name} --only 00 with the same -p "
            "parameters)"
        )
    return prefix


def teacher_file(ds) -> Path:
    """The folder where notebook 00 saves the timm teacher it trains for ``ds`` and its profile."""
    return BUILD_MODELS / ds.name / f"teacher-{ds.profile}-{ds.key()}"


def digest(name: str) -> str:
    """A cheap digest of every file under ``build/models/<name>/`` (:func:`dsco.tree_digest`: paths,
    sizes and modification times, not the bytes): what notebook 00 trained for the dataset ``name``,
    in any profile. A retrain rewrites the files and so changes it."""
    return tree_digest(BUILD_MODELS / name)
