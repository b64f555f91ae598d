"""The latent cache (SPEC §4): a class's real images encoded once into latents and kept on disk.

Entry points: :func:`encode_class` / :func:`latents` encode a class's real images with any
``encode(x) -> z`` callable (the backbone's) and cache them as safetensors under
``build/cache/latents/`` (git-ignored), keyed by a hash of dataset, split, class, encoder id,
transform and file list (sets of :mod:`dsco.data`). Bad input raises :class:`DatasetError`, one line
naming the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import CACHE, json_digest, replacing
from .data import FolderSet, load
from .errors import DatasetError

CACHE_DIR = CACHE / "latents"


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
    digest = json_digest(key)[:20]
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
