"""Run records and results: what a notebook run is, and where and how its results are written.

A notebook calls :func:`start` once, right after its ``parameters`` cell (it validates the
parameters, seeds everything, sets the figure style and starts the clock), and :func:`save` for
every figure or table it produces. ``save`` writes the file under
``build/results/<dataset>/<profile>/`` (:func:`results_dir`; ``$DSCO_RESULTS`` moves the base) and a
JSON sidecar beside it with the notebook's parameters, seed, package versions, git commit and the
wall time since ``start`` (:func:`provenance`). :func:`beside_other` reads the same result of
another dataset's run.
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
_PACKAGES = (
    "dsco",
    "torch",
    "torchvision",
    "diffusers",
    "timm",
    "numpy",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "seaborn",
    "papermill",
)


def start(dataset: str, profile: str, seed: int, device: str = "cpu", **extra) -> dict:
    """Validate the notebook parameters, seed everything, set the style, start the clock.

    Returns the parameters as a dict (what :func:`save` records in every sidecar).
    """
    check_params(dataset, profile)
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise ValueError(f"unknown device {device!r}: use 'cpu' or 'cuda' (optionally 'cuda:N')")
    seed_everything(seed)
    from .plots import style

    style()
    # tqdm.auto without ipywidgets falls back to text bars; its warning about that is noise here.
    warnings.filterwarnings("ignore", message="IProgress not found")
    _RUN.clear()
    _RUN.update(
        params=dict(dataset=dataset, profile=profile, seed=seed, device=device, **extra),
        t0=time.perf_counter(),
    )
    return dict(_RUN["params"])


def current(name: str):
    """A parameter of the run :func:`start` began in this process (``"dataset"``, ``"profile"``,
    ...), or None before any run."""
    return _RUN.get("params", {}).get(name)


def results_dir(dataset: str | None = None, profile: str | None = None, base=None) -> Path:
    """Folder for generated results: ``base``, else ``$DSCO_RESULTS``, else ``build/results``, then
    ``<dataset>/<profile>`` (default: the current run's, set by :func:`start`)."""
    params = _RUN.get("params", {})
    dataset = dataset or params.get("dataset")
    profile = profile or params.get("profile")
    if not dataset or not profile:
        raise RuntimeError(
            "no run started: call dsco.results.start(dataset, profile, seed, device) "
            "first, or name the dataset and profile (or pass folder= to save)"
        )
    base = Path(base or os.environ.get("DSCO_RESULTS") or ROOT / "build" / "results")
    return base / dataset / profile


def save(obj, name: str, folder: str | Path | None = None) -> Path:
    """Save a matplotlib figure (PNG) or a pandas DataFrame (CSV) plus a ``.json`` sidecar.

    ``name`` is a file stem such as ``"table13"`` or ``"fig1_rkhs"``, unique within a notebook run
    (a repeated name raises: its sidecar would overwrite the first one's). Returns the written path.
    """
    import pandas as pd
    from matplotlib.figure import Figure

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad result name {name!r}: use a plain file stem such as 'table13'")
    saved = _RUN.setdefault("saved", set())
    if (
        folder is None and name in saved
    ):  # one sidecar per name: a second save would overwrite the first's
        raise ValueError(
            f"result name {name!r} was already saved by this notebook: give each figure and "
            "table its own name"
        )
    saved.add(name) if folder is None else None
    out = Path(folder) if folder is not None else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, Figure):
        path = out / f"{name}.png"
        obj.savefig(path)
    elif isinstance(obj, (pd.DataFrame, pd.Series)):
        path = out / f"{name}.csv"
        obj.to_csv(path)
    else:
        raise TypeError(
            f"save() takes a matplotlib Figure or a pandas DataFrame, not {type(obj).__name__}"
        )
    meta = dict(file=path.name, **provenance())
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
    return path


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
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance() -> dict:
    """Parameters, seed, package versions, git commit and wall time of the current run, and the
    notebook it runs in (``$DSCO_NOTEBOOK``, set by the batch runner for its kernels)."""
    params = _RUN.get("params", {})
    t0 = _RUN.get("t0")
    return dict(
        notebook=os.environ.get("DSCO_NOTEBOOK"),
        params=params,
        seed=params.get("seed"),
        packages=package_versions(),
        git_commit=git_commit(),
        wall_time_s=None if t0 is None else round(time.perf_counter() - t0, 3),
        saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


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


def beside_other(ours, name: str, other: str | None, on, values):
    """Does a finding carry over to another dataset? ``ours`` (a frame this notebook saved as
    ``name``) beside the same result saved by a run of the same notebook and profile on the dataset
    ``other`` (``build/results/<other>/<profile>/<name>.csv``), merged on the columns ``on``: every
    column of ``values`` twice, suffixed with the two dataset names. Returns a one-line note instead
    when ``other`` is this run's dataset or None, or its result was not saved yet (naming the
    command that saves it)."""
    theirs = _other_result(name, other)
    if isinstance(theirs, str):
        return theirs
    on = [on] if isinstance(on, str) else list(on)
    keep = on + list(values)
    return ours.reset_index(drop=ours.index.name is None)[keep].merge(
        theirs[keep],
        on=on,
        how="outer",
        suffixes=(f" ({_RUN['params']['dataset']})", f" ({other})"),
    )


def _other_result(name: str, other: str | None):
    """The frame ``name`` saved by this notebook's run on the dataset ``other`` (same profile), or a
    one-line note saying why there is none."""
    import pandas as pd

    params = _RUN.get("params", {})
    dataset, profile = params.get("dataset"), params.get("profile", "smoke")
    if other in (None, ""):
        return "no other dataset to compare with (compare_with = None)"
    if other == dataset:
        return (
            f"compare_with = {other!r} is this run's own dataset: set it to another dataset to "
            "compare with"
        )
    path = results_dir(other, profile) / f"{name}.csv"
    if not path.is_file():
        return (
            f"no {other} result to compare with: run `dsco run --dataset {other} --profile "
            f"{profile}` first ({path} is missing)"
        )
    theirs = pd.read_csv(path, index_col=0)
    return theirs.reset_index(drop=theirs.index.name is None)
