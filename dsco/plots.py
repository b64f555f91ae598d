"""Figure style and the one save helper for every figure and table, with provenance.

A notebook calls :func:`start` once, right after its ``parameters`` cell, and :func:`save` for
every figure or table it produces. ``save`` writes the file under
``build/results/<dataset>/<profile>/`` (or ``$DSCO_RESULTS``) and a JSON sidecar beside it with the
notebook's parameters, seed, package versions, git commit and the wall time since ``start``.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from . import DATASETS, PROFILES, ROOT

_RUN: dict = {}
_PACKAGES = ("dsco", "torch", "torchvision", "diffusers", "timm", "numpy", "scikit-learn",
             "pandas", "matplotlib", "seaborn", "papermill")


def check_params(dataset: str, profile: str) -> None:
    """Raise one clear ``ValueError`` for an unknown dataset or profile name."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) so a rerun gives the same tensors."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of the package
        return
    torch.manual_seed(seed)


def style() -> None:
    """The book's figure style (seaborn whitegrid, readable fonts)."""
    import matplotlib
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight"})


def start(dataset: str, profile: str, seed: int, device: str = "cpu", **extra) -> dict:
    """Validate the notebook parameters, seed everything, set the style, start the clock.

    Returns the parameters as a dict (what :func:`save` records in every sidecar).
    """
    check_params(dataset, profile)
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise ValueError(f"unknown device {device!r}: use 'cpu' or 'cuda' (optionally 'cuda:N')")
    seed_everything(seed)
    style()
    # tqdm.auto without ipywidgets falls back to text bars; its warning about that is noise here.
    warnings.filterwarnings("ignore", message="IProgress not found")
    _RUN.clear()
    _RUN.update(params=dict(dataset=dataset, profile=profile, seed=seed, device=device, **extra),
                t0=time.perf_counter())
    return dict(_RUN["params"])


def results_dir(dataset: str | None = None, profile: str | None = None) -> Path:
    """Folder for generated results: ``$DSCO_RESULTS`` or ``build/results/<dataset>/<profile>``."""
    params = _RUN.get("params", {})
    dataset = dataset or params.get("dataset", "digits")
    profile = profile or params.get("profile", "smoke")
    base = Path(os.environ.get("DSCO_RESULTS", ROOT / "build" / "results"))
    return base / dataset / profile


def package_versions() -> dict:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance() -> dict:
    """Parameters, seed, package versions, git commit and wall time of the current run."""
    params = _RUN.get("params", {})
    t0 = _RUN.get("t0")
    return dict(params=params, seed=params.get("seed"), packages=package_versions(),
                git_commit=git_commit(),
                wall_time_s=None if t0 is None else round(time.perf_counter() - t0, 3),
                saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def save(obj, name: str, folder: str | Path | None = None) -> Path:
    """Save a matplotlib figure (PNG) or a pandas DataFrame (CSV) plus a ``.json`` sidecar.

    ``name`` is a file stem such as ``"table13"`` or ``"fig1_rkhs"``. Returns the written path.
    """
    import pandas as pd
    from matplotlib.figure import Figure

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad result name {name!r}: use a plain file stem such as 'table13'")
    out = Path(folder) if folder is not None else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, Figure):
        path = out / f"{name}.png"
        obj.savefig(path)
    elif isinstance(obj, (pd.DataFrame, pd.Series)):
        path = out / f"{name}.csv"
        obj.to_csv(path)
    else:
        raise TypeError(f"save() takes a matplotlib Figure or a pandas DataFrame, not {type(obj).__name__}")
    meta = dict(file=path.name, **provenance())
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
    return path
