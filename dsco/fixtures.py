"""Offline stand-ins for the full-scale path, made on the spot: a small ImageFolder tree in ImageNet
wnid layout and tiny random checkpoints of the real model classes, saved to local folders exactly as
a user's downloads would be.

Entry point: ``make(folder, name="imagenette", ...) -> dict``: the ``-p`` parameters to pass, e.g.
``dsco run --dataset imagenette -p root F/imagenette -p backbone_path F/dit -p vae_path F/vae
-p teacher_path F/teacher -p image_size 8``. CI runs the whole smoke batch that way, and ``dsco
fixtures`` makes the same folders for a user who wants to try the path without downloading anything.

- :func:`imagenet_tree`: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` for every
  pinned class of the dataset (``data/classes/<name>.csv``); each class's images share a colour and
  a stripe orientation plus noise, so a classifier can learn something; sizes vary (as ImageNet's
  do).
- :func:`tiny_checkpoints`: diffusers ``DiTTransformer2DModel`` (learned σ, 1,000 ImageNet classes,
  a 4×4×4 latent) and ``AutoencoderKL`` (downsampling ×2: 8-px images) with ``save_pretrained``, and
  a narrow timm ResNet-18 with ``timm.models.save_for_hf`` -- random weights, seeded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The tiny DiT and VAE: the test configurations of dsco.dit, with DiT's 1,000 ImageNet classes.
TINY_IMAGE_SIZE = 8


def imagenet_tree(
    root, name: str = "imagenette", train: int = 10, val: int = 4, seed: int = 0
) -> Path:
    """Write a small ImageFolder tree for ``name``'s pinned classes under ``root``; returns
    ``root``."""
    from PIL import Image

    from .folders import class_table

    root = Path(root)
    rng = np.random.default_rng(seed)
    for row in class_table(name):
        colour = rng.uniform(40, 215, size=3)
        for split, n in (("train", train), ("val", val)):
            folder = root / split / row["wnid"]
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(10, 15)), int(rng.integers(10, 15))
                yy, xx = np.mgrid[0:h, 0:w]
                stripes = 40 * np.sin((xx if row["label"] % 2 else yy) * (1 + row["label"] % 3))
                img = colour + stripes[..., None] + rng.normal(0, 20, size=(h, w, 3))
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
                    folder / f"{row['wnid']}_{i}.JPEG"
                )
    return root


def tiny_checkpoints(folder, num_classes: int = 10, seed: int = 0) -> dict:
    """Save a tiny random DiT, VAE and timm teacher under ``folder``; returns their ``-p``
    parameters."""
    import timm
    import torch
    from timm.models import save_for_hf

    from . import backbones, dit

    folder = Path(folder)
    bb = backbones.load(
        "dit-xl-2-256",
        random_weights=True,
        seed=seed,
        config=dict(dit.TINY_DIT, num_embeds_ada_norm=1000),
        vae_config=dit.TINY_VAE,
    )
    bb.model.save_pretrained(folder / "dit")
    bb.vae.save_pretrained(folder / "vae")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = timm.create_model(
            "resnet18",
            pretrained=False,
            num_classes=num_classes,
            channels=(8, 16, 32, 64),
            stem_width=8,
        )
    save_for_hf(teacher, str(folder / "teacher"), safe_serialization=True)
    return {
        "backbone_path": str(folder / "dit"),
        "vae_path": str(folder / "vae"),
        "teacher_path": str(folder / "teacher"),
        "image_size": bb.latent_shape[1] * bb.image_factor,
    }


def make(folder, name: str = "imagenette", train: int = 10, val: int = 4, seed: int = 0) -> dict:
    """The tree (``folder/<name>``) and the checkpoints (``folder/dit``, ``vae``, ``teacher``);
    returns the ``-p`` parameters of ``dsco run --dataset <name>``."""
    from .folders import class_table

    root = imagenet_tree(Path(folder) / name, name, train, val, seed)
    return {"root": str(root), **tiny_checkpoints(folder, len(class_table(name)), seed)}


def command(name: str, params: dict, profile: str = "smoke") -> str:
    """The ``dsco run`` command line for ``params``."""
    return f"dsco run --dataset {name} --profile {profile} " + " ".join(
        f"-p {k} {v}" for k, v in params.items()
    )


def folder_tree(
    root, classes: int = 3, per_class: int = 14, size: int = 12, mode: str = "L", seed: int = 0
) -> Path:
    """A small ``folder`` dataset: ``root/<class>/<i>.png``, ``per_class`` images of
    ``size``×``size`` per class (grey with ``mode="L"``, colour with ``"RGB"``); each class is a bar
    at its own position plus noise, so a classifier can learn it. Returns ``root`` (pass it as ``-p
    root``)."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.normal(40, 15, size=(size, size))
            img[:, (c * size) // classes : (c * size) // classes + max(2, size // classes)] += 160
            if mode == "RGB":
                img = np.stack([img, np.roll(img, c, 0), img[::-1]], -1)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root
