"""Preparing a dataset (notebook 00): its backbone and teacher loaded or trained, checked, and the
real latents encoded once.

Entry points, each taking a :class:`dsco.datasets.Dataset`:

- :func:`backbone` -- the backbone of the dataset's recipe. *Shipped* (``digits``, ``mnist``): the
  checkpoints in ``data/models/`` (hash-checked); for ``digits`` the ``smoke`` profile also trains a
  few epochs into ``build/models/`` to show the training code runs, and ``retrain=True`` (``paper``
  profile only) retrains and overwrites the shipped files (for ``mnist``: the whole latent recipe,
  :mod:`dsco.recipes`). *Trained* (``folder``): the latent recipe trained on the user's tree into
  ``build/models/`` on the first run and reused after. *Pretrained* (the ImageNet datasets):
  DiT-XL/2 + SD-VAE from the user's paths.
- :func:`teacher` -- the shipped teacher, the user's timm checkpoint (``teacher_path``), or a timm
  ResNet-18 trained on the dataset's training split into ``build/models/<dataset>/`` (reused by a
  later run with the same data and settings).
- :func:`reconstruction` -- the autoencoder's check: PSNR, and the teacher on reconstructed test
  images (defined in :mod:`dsco.recipes`, whose check of a trained recipe uses it too).
- :func:`class_consistency` -- the share of guided vanilla samples that the teacher classifies as
  the class they were drawn for, per class and guidance (cached on disk: on ``mnist`` the paper
  profile's samples take about 4 minutes of one core).
- :func:`encode_latents` -- every class's real latents through the backbone's encoder, cached on
  disk for a folder dataset (:func:`dsco.encoded.encode_class`), with the time it took.

Each returns what it did in a small dict (``info``) that the notebook prints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from . import CACHE, ROOT, backbones, digits_ddpm, json_digest, recipes, replacing
from . import teacher as teacher_mod
from .encoded import encode_class
from .recipes import reconstruction  # noqa: F401  (notebook 00 calls it as prepare.reconstruction)

SMOKE_MODELS = ROOT / "build" / "models"


def backbone(ds, device: str = "cpu", retrain: bool = False, seed: int = 0):
    """``(backbone, info)`` for ``ds`` (see the module docstring); ``info`` has the training history
    of a smoke or retrain run (``history``) and the card of the loaded checkpoint (``card``)."""
    recipe, m = ds.entry.backbone, ds.budget.models
    if retrain and ds.profile != "paper" and recipe["kind"] == "shipped":
        raise ValueError("retrain=True overwrites the shipped weights and needs profile='paper'")
    info = {"recipe": recipe["kind"], "name": recipe["name"], "history": None, "card": None}
    if (
        recipe["name"] == "latent-ddpm"
    ):  # the latent recipe: shipped (mnist) or trained here (folder)
        prefix = ds.recipe_prefix()
        if retrain or (
            recipe["kind"] == "trained" and not Path(f"{prefix}_ddpm.safetensors").is_file()
        ):
            info["trained"] = recipes.train(
                ds, prefix, recipes.RECIPES[m["recipe"]], seed, device, progress=False
            )
        report = Path(f"{prefix}_report.json")
        info["report"] = json.loads(report.read_text()) if report.is_file() else None
        bb = ds.backbone(device)
        info["card"] = json.loads(Path(f"{prefix}_ddpm.json").read_text())
        info["vae_card"] = json.loads(Path(f"{prefix}_vae.json").read_text())
        return bb, info
    if recipe["kind"] == "shipped":
        train = ds.train()
        if ds.profile == "smoke" or retrain:
            sub = train.subset(torch.arange(m["backbone_subset"] or len(train)))
            new, hist = digits_ddpm.train_digits_ddpm(
                sub, epochs=m["backbone_epochs"], seed=seed, device=device, progress=False
            )
            target = SMOKE_MODELS / f"{ds.name}_ddpm_smoke.safetensors" if not retrain else None
            digits_ddpm.save_digits_ddpm(new, hist, target, data_split=_split(ds))
            info.update(history=hist, trained_to=str(target or digits_ddpm.DIGITS_WEIGHTS))
        bb = ds.backbone(device)
        info["card"] = json.loads(digits_ddpm.DIGITS_WEIGHTS.with_suffix(".json").read_text())
        return bb, info
    start = time.perf_counter()
    bb = ds.backbone(device)
    info.update(
        load_s=round(time.perf_counter() - start, 2),
        path=ds.params.get("backbone_path"),
        vae_path=ds.params.get("vae_path"),
        parameters=sum(p.numel() for p in bb.model.parameters()),
    )
    return bb, info


def teacher(ds, device: str = "cpu", retrain: bool = False, seed: int = 0):
    """``(teacher, info)`` for ``ds`` (see the module docstring); ``info["test_accuracy"]`` in [0,
    1]."""
    recipe, m = ds.entry.teacher, ds.budget.models
    info = {"recipe": recipe["kind"], "history": None}
    if recipe.get("with") == "latent":
        model = ds.teacher(
            device
        )  # trained with the backbone by the latent recipe (:func:`backbone`)
        card = Path(f"{ds.recipe_prefix()}_teacher.json")
        info.update(
            card=json.loads(card.read_text()), source=_rel(card.with_suffix(".safetensors"))
        )
    elif recipe["kind"] == "shipped":
        train, test = ds.train(), ds.test()
        if ds.profile == "smoke" or retrain:
            new, hist = teacher_mod.train_teacher(
                train, epochs=m["teacher_epochs"], seed=seed, device=device, progress=False
            )
            target = SMOKE_MODELS / f"{ds.name}_teacher_smoke.safetensors" if not retrain else None
            teacher_mod.save_teacher(
                new,
                hist,
                target,
                data_split=_split(ds),
                test_accuracy=teacher_mod.accuracy(new, test),
            )
            info.update(history=hist, trained_to=str(target or teacher_mod.TEACHER_WEIGHTS))
        model = ds.teacher(device)
        info["card"] = json.loads(teacher_mod.TEACHER_WEIGHTS.with_suffix(".json").read_text())
        info.setdefault("source", _rel(teacher_mod.TEACHER_WEIGHTS))
    elif ds.params.get("teacher_path"):
        model = ds.teacher(device)
        info.update(source=ds.params["teacher_path"])
    else:
        folder = ds.teacher_file()
        if retrain or not folder.exists():
            new, hist = teacher_mod.train_timm_teacher(
                ds.train(),
                recipe["arch"],
                epochs=m["teacher_epochs"],
                seed=seed,
                device=device,
                model_args=m.get("teacher_args"),
            )
            teacher_mod.save_timm_teacher(new, hist, folder)
            info.update(history=hist, trained_to=str(folder))
        model = ds.teacher(device)
        info.update(source=_rel(folder))
    info["test_accuracy"] = teacher_mod.accuracy(model, ds.test())
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return model, info


#: Where :func:`class_consistency` keeps its results.
CACHE_DIR = CACHE / "consistency"


def class_consistency(
    ds,
    bb,
    clf,
    guidances=(1.0, 2.0, 4.0),
    n_per_class: int = 5,
    num_steps: int = 50,
    seed: int = 0,
    cache_dir=None,
):
    """Draw ``n_per_class`` vanilla samples of every class at each guidance
    (:func:`dsco.backbones.sample`, decoded) and ask the teacher ``clf`` which class each one is.
    Returns ``(per_class, samples)``: a frame with ``guidance, class, consistency`` (share
    classified as their class) and ``{guidance: decoded images}`` (class by class).

    The result is cached in ``cache_dir`` (default :data:`CACHE_DIR`), keyed by the backbone's and
    the teacher's weights (:func:`dsco.nopt.fingerprint`), the classes, the arguments and the
    device, so that a rerun of notebook 00 reads it back instead of sampling again."""
    from .nopt import fingerprint

    key = [fingerprint(bb), fingerprint(clf), list(ds.class_ids), list(guidances)]
    key += [n_per_class, num_steps, seed, str(getattr(bb, "device", "cpu"))]
    digest = json_digest(key)
    path = Path(cache_dir or CACHE_DIR) / f"{digest[:32]}.pt"
    if path.is_file():
        hit = torch.load(path, weights_only=True)
        return pd.DataFrame(hit["rows"]), hit["samples"]
    rows, samples = [], {}
    for g in guidances:
        lat, lab = backbones.sample(
            bb,
            ds.class_ids,
            n_per_class,
            seed=seed,
            guidance=g,
            num_steps=num_steps,
            progress=False,
        )
        with torch.no_grad():
            x = torch.cat(
                [
                    bb.decode(lat[i : i + 64].to(bb.device)).float().cpu()
                    for i in range(0, len(lat), 64)
                ]
            )
        samples[g] = x.clamp(-1, 1)
        pred = teacher_mod.predict_proba(clf, samples[g]).argmax(1)
        labels = torch.arange(ds.num_classes).repeat_interleave(n_per_class)
        for c in range(ds.num_classes):
            rows.append(
                {
                    "guidance": g,
                    "class": c,
                    "consistency": float((pred[labels == c] == c).float().mean()),
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:  # an interrupted run never leaves a half-written entry
        torch.save({"rows": rows, "samples": samples}, tmp)
    return pd.DataFrame(rows), samples


def encode_latents(ds, bb) -> pd.DataFrame:
    """Every class's real training latents through ``bb.encode`` (cached on disk for a folder
    dataset, keyed by the backbone's weights): one row per class with its count, latent shape and
    seconds (0 s: read from the cache)."""
    from .nopt import fingerprint

    train, rows = ds.train(), []
    for c in range(ds.num_classes):
        start = time.perf_counter()
        z = encode_class(train, c, bb.encode, encoder_id=fingerprint(bb), progress=False)
        rows.append(
            {
                "class": ds.classes[c],
                "images": len(z),
                "latent": "×".join(map(str, z.shape[1:])),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    return pd.DataFrame(rows)


def _rel(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it (what notebooks print)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _split(ds) -> dict:
    """The data split a model was trained on, for its card."""
    train, test = ds.train(), ds.test()
    return {
        "dataset": ds.name,
        "source": ds.entry.source,
        "train": len(train),
        "test": len(test),
        "params": dict(ds.params),
    }
