"""A concentrated set on disk (paper §4.2; SPEC §3): how to hand it to others.

- :func:`export` / :func:`read_export` -- an ImageFolder tree of PNGs plus ``manifest.json``
  (provenance and SHA-256 of every file), readable by ``torchvision.datasets.ImageFolder``.
- :func:`class_folder`, :func:`write_images`, :func:`export_manifest` -- its parts: the class
  folders' names, the PNGs and the manifest (:mod:`dsco.concentrate` writes its sets with them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoints import sha256
from .data import ImageSet
from .errors import DopingError


def export(data, folder, *, method: str, parameters: dict, seeds, classes=None) -> Path:
    """Write ``data`` (an ImageSet, or ``(x, y)`` with ``x`` N×C×H×W in [-1, 1], C = 1 or 3) as an
    ImageFolder tree ``folder/<class folder>/<index>.png`` plus ``folder/manifest.json``.

    Pixels: ``uint8 = round((x + 1) * 127.5)`` after clamping to [-1, 1] (the number of clamped
    values is recorded); 1 channel → grayscale PNG, 3 → RGB. ``<index>`` is the sample's position in
    ``data``. Class folders are :func:`class_folder` names, so ``torchvision.datasets.ImageFolder``
    assigns the same labels; every class gets a folder (ImageFolder needs ``allow_empty=True`` if a
    class has no images). The manifest holds method, parameters, seeds, package versions, creation
    time, classes, counts per class and every file's SHA-256. ``folder`` must be absent or empty;
    the tree is written to a temporary sibling and renamed, so a failure leaves nothing behind.
    """
    if hasattr(data, "in_memory"):
        data = data.in_memory()
    x, y = (data.x, data.y) if isinstance(data, ImageSet) else data
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    if (
        x.ndim != 4
        or x.shape[1] not in (1, 3)
        or y.shape != (len(x),)
        or not torch.isfinite(x).all()
    ):
        raise DopingError(
            f"export needs finite x N×C×H×W with C = 1 or 3 and y of length N, "
            f"got x {tuple(x.shape)}, y {tuple(y.shape)}: pass images in [-1, 1]"
        )
    classes = list(
        classes
        if classes is not None
        else getattr(data, "classes", None)
        or [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
    )
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise DopingError(
            f"labels must lie in 0..{len(classes) - 1}: pass classes= with one name per label"
        )
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DopingError(
            f"{folder} exists and is not an empty folder: choose a new folder or delete it"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    dirs = [class_folder(c, n, len(classes)) for c, n in enumerate(classes)]
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        for d in dirs:
            (tmp / d).mkdir()
        width = len(str(max(len(x) - 1, 0)))
        files = write_images(x, y, tmp, dirs, [f"{i:0{width}d}" for i in range(len(x))])
        manifest = export_manifest(
            method,
            parameters,
            seeds,
            classes,
            files,
            list(x.shape[1:]),
            n_clamped=int((x.abs() > 1).sum()),
            name=getattr(data, "name", ""),
            split=getattr(data, "split", ""),
        )
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        if folder.exists():
            folder.rmdir()  # empty (checked above): rename needs the name free
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_export(folder, verify: bool = True) -> ImageSet:
    """Read an :func:`export` tree back into an :class:`~dsco.data.ImageSet`, in the exported order.

    ``x = uint8 / 127.5 − 1``, so a round trip is exact up to the uint8 quantisation (≤ 0.5/127.5
    per pixel) and exact for anything read back from an export. With ``verify`` every file's SHA-256
    is checked against the manifest and files missing from it are reported.
    """
    folder = Path(folder)
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise DopingError(
            f"no readable manifest.json in {folder} ({type(e).__name__}): "
            "point at a folder written by dsco.export.export"
        ) from e
    if m.get("format") != "dsco-export/1":
        raise DopingError(
            f"{folder}/manifest.json is not a dsco export: re-export with dsco.export.export"
        )
    if verify:
        listed = {f["path"] for f in m["files"]}
        extra = sorted(
            str(p.relative_to(folder))
            for p in folder.glob("*/*")
            if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")
        )  # .dsco/: bookkeeping
        extra = [p for p in extra if p not in listed]
        if extra:
            raise DopingError(
                f"{folder / extra[0]} is not in manifest.json: remove it or re-export"
            )
    xs = []
    for f in m["files"]:
        path = folder / f["path"]
        if not path.is_file():
            raise DopingError(f"{path} is listed in manifest.json but missing: re-export the set")
        if verify and sha256(path) != f["sha256"]:
            raise DopingError(
                f"SHA-256 mismatch for {path}: the file was modified; re-export the set"
            )
        with Image.open(path) as im:
            a = np.asarray(im.convert("L" if m["shape"][0] == 1 else "RGB"))
        xs.append(torch.from_numpy(a.reshape(*a.shape[:2], -1).copy()).permute(2, 0, 1))
    x = (torch.stack(xs).float() / 127.5 - 1) if xs else torch.zeros(0, *m["shape"])
    y = torch.tensor([f["label"] for f in m["files"]], dtype=torch.long)
    return ImageSet(x, y, list(m["classes"]), m.get("name", ""), m.get("split", ""))


def class_folder(label: int, name: str, num_classes: int) -> str:
    """``<label zero-padded>_<name>`` (e.g. ``03_3``): string order = label order, as ImageFolder
    needs."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    return f"{label:0{max(2, len(str(num_classes - 1)))}d}" + (f"_{slug}" if slug else "")


def write_images(x, y, root, dirs, names) -> list[dict]:
    """Write the images ``x`` (N×C×H×W in [-1, 1], C = 1 or 3) as PNGs
    ``root/<dirs[y_i]>/<names[i]>.png`` (``uint8 = round((x + 1) * 127.5)`` after clamping; grey for
    one channel, RGB for three) and return one entry per file: ``{"path", "label", "sha256"}``. The
    bytes depend only on the pixels."""
    pixels = (
        ((torch.as_tensor(x).float().clamp(-1, 1) + 1) * 127.5)
        .round()
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
        .numpy()
    )
    files = []
    for px, c, name in zip(pixels, torch.as_tensor(y).tolist(), names):
        rel = f"{dirs[c]}/{name}.png"
        Image.fromarray(px[..., 0] if px.shape[-1] == 1 else px).save(Path(root) / rel)
        files.append({"path": rel, "label": c, "sha256": sha256(Path(root) / rel)})
    return files


def export_manifest(
    method: str, parameters: dict, seeds, classes, files: list[dict], shape, **extra
) -> dict:
    """The ``manifest.json`` of an export (``format: dsco-export/1``): method, parameters, seeds,
    package versions, git commit, creation time, classes and their folders, counts per class, image
    shape and every file with its label and SHA-256 (plus ``extra`` fields)."""
    from .results import git_commit, package_versions

    labels = [f["label"] for f in files]
    return {
        "format": "dsco-export/1",
        "method": method,
        "parameters": parameters,
        "seeds": seeds,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(),
        "classes": list(classes),
        "class_folders": [class_folder(c, n, len(classes)) for c, n in enumerate(classes)],
        "counts": {n: labels.count(c) for c, n in enumerate(classes)},
        "shape": list(shape),
        "pixels": "uint8 = round((x + 1) * 127.5), x clamped to [-1, 1]; read back as "
        "uint8 / 127.5 - 1",
        **extra,
        "files": files,
    }
