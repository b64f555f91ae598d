"""Evaluation: train a classifier on a surrogate set, report its test accuracy (paper App. D).

Every accuracy in the paper's tables is "train architecture A from scratch on the surrogate set S
with protocol P, measure top-1 accuracy on the real test split, mean ± std over 5 trainings".
:func:`evaluate` is that harness: it runs ``repeats`` seeded trainings, records accuracy, wall
time and peak memory per run, caches every run on disk, and returns an :class:`EvalResult`.
:func:`grid` evaluates many sets on many architectures (one table of the paper = one grid),
:func:`summary` and :func:`run_costs` condense its rows.

The pieces live in their own modules: the models in :mod:`dsco.architectures` (``ARCHS``,
:func:`~dsco.architectures.build`), the protocols and the training loop in
:mod:`dsco.training` (``HARD``, ``SOFT``, ``SGD``, :func:`~dsco.training.train_model`). The
random real baseline needs no helper here: ``dsco.data`` sets already have
``sample_per_class(ipc, seed)`` (a seeded, class-balanced random real subset).

Deviation from the paper and the official code (kkkkqq/Dataset-Concentration): accuracy is the
*final* test accuracy by default (the official code reports the best accuracy seen over the last
third of training: ``best_of_last_third=True``, labelled in the result); the training deviations
are listed in :mod:`dsco.training` and :mod:`dsco.architectures`. Every bad input raises
:class:`EvaluateError`, one line naming the fix.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import CACHE, replacing, trace
from .architectures import ARCHS, EvaluateError, build
from .training import Protocol, epochs_for, get_protocol, peak_mem_mb, resolve, train_model

CACHE_DIR = CACHE / "evaluate"
#: Bump when the training code changes in a way that changes numbers (invalidates the cache).
#: 2: timm models train in the channels-last layout, optimisers are fused (equal up to rounding).
CACHE_VERSION = 2


def evaluate(
    surrogate,
    arch: str,
    protocol: str | Protocol = "hard",
    repeats: int = 5,
    seed: int = 0,
    test_set=None,
    teacher: Callable | None = None,
    device: str = "cpu",
    best_of_last_third: bool = False,
    cache: bool = True,
    progress: bool = True,
    cache_dir=None,
    **arch_kwargs,
) -> EvalResult:
    """Train ``arch`` on ``surrogate`` ``repeats`` times and report the test accuracy (%).

    ``surrogate``: an ImageSet (e.g. ``train.sample_per_class(10, seed)``, a synthetic set) or an
    (x, y) pair of tensors (x N×C×H×W in [-1, 1], y integer labels). ``arch``: a name of
    :data:`dsco.architectures.ARCHS`, built with ``arch_kwargs``. ``protocol``: a
    :class:`~dsco.training.Protocol` or "hard" / "soft" / "sgd" (epochs from
    :func:`~dsco.training.epochs_for` unless set).
    ``test_set``: the real test split (required; ``ds.test()`` of the dataset registry).
    ``teacher``: any callable or module mapping images to logits (e.g.
    ``dsco.teacher.load_teacher()``), required for soft labels.
    Run ``r`` is seeded with ``seed + r`` (weights, batch order, augmentation; on CPU the same
    seed gives the same accuracy). ``best_of_last_third``: report the official code's best test
    accuracy over the last third of training instead of the final one (``metric`` says which).
    ``cache``: every run is stored as JSON in ``build/cache/evaluate/`` (or ``cache_dir``) under a
    SHA-256 of (surrogate images and labels, arch and ``arch_kwargs``, resolved protocol and
    epochs, run seed, test set images and labels, teacher fingerprint if soft, metric, device
    type, ``CACHE_VERSION``); an identical run is read back instead of trained, so a second
    identical call returns at once and ``repeats=5`` reuses the runs of an earlier ``repeats=3``.
    """
    x, y, classes, dataset = _tensors(surrogate, "surrogate")
    if test_set is None:
        raise EvaluateError(
            "evaluate needs test_set=: the real test split, e.g. ds.test() for "
            "ds = dsco.datasets.get(name, profile)"
        )
    tx, ty, test_classes, test_name = _tensors(test_set, "test_set")
    dataset = dataset or test_name
    if tuple(x.shape[1:]) != tuple(tx.shape[1:]):
        raise EvaluateError(
            f"surrogate images are {tuple(x.shape[1:])} but test images "
            f"{tuple(tx.shape[1:])}: decode/resize the surrogate to the test "
            "set's shape"
        )
    num_classes = len(test_classes or classes or []) or int(max(y.max(), ty.max())) + 1
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise EvaluateError(
            f"surrogate labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}"
        )
    if arch not in ARCHS:
        raise EvaluateError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHS)}")
    if repeats < 1:
        raise EvaluateError(f"repeats must be at least 1, got {repeats}")
    p = resolve(get_protocol(protocol), dataset, x.shape[1])
    if p.labels == "soft" and teacher is None:
        raise EvaluateError(
            "the soft-label protocol needs teacher=: a model returning logits, "
            "e.g. dsco.teacher.load_teacher()"
        )
    if isinstance(teacher, nn.Module):
        teacher = teacher.to(device).eval()
    ipc = len(x) / num_classes
    epochs = p.epochs or epochs_for(ipc, p.profile, num_classes, p.batch_size)
    p = replace(p, epochs=epochs)
    metric = "best_of_last_third" if best_of_last_third else "final"
    base = {
        "version": CACHE_VERSION,
        "surrogate": _sha(x, y),
        "test": _sha(tx, ty),
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "protocol": asdict(p),
        "metric": metric,
        "device": torch.device(device).type,
        "teacher": teacher_fingerprint(teacher, x, device) if p.labels == "soft" else None,
    }
    folder = Path(cache_dir or CACHE_DIR)

    runs = []
    for r in tqdm(range(repeats), desc=f"{arch} × {repeats}", disable=not progress):
        run_seed = seed + r
        key = hashlib.sha256(
            json.dumps(base | {"seed": run_seed}, sort_keys=True, default=str).encode()
        ).hexdigest()
        path = folder / f"{key[:32]}.json"
        what = dict(arch=arch, ipc=ipc, steps=None, seed=run_seed, key=key[:32])
        if cache and path.is_file():
            runs.append(json.loads(path.read_text()) | {"cached": True})
            trace.event("train", time.time(), True, **what)
            continue
        t0 = time.time()
        run = _one_run(
            x,
            y,
            (tx, ty),
            arch,
            arch_kwargs,
            p,
            epochs,
            run_seed,
            num_classes,
            teacher,
            best_of_last_third,
            device,
            progress,
        )
        trace.event("train", t0, False, **(what | {"steps": run["steps"]}))
        if cache:
            folder.mkdir(parents=True, exist_ok=True)
            with replacing(path) as tmp:  # an interrupted run never leaves a half-written entry
                tmp.write_text(
                    json.dumps(run | {"key": base | {"seed": run_seed}}, default=str, indent=1)
                )
        runs.append(run | {"cached": False})

    return EvalResult(
        arch=arch,
        protocol=p.name,
        metric=metric,
        ipc=ipc,
        epochs=epochs,
        steps=runs[0]["steps"],
        seeds=[seed + r for r in range(repeats)],
        accs=[r["best_acc"] if best_of_last_third else r["final_acc"] for r in runs],
        final_accs=[r["final_acc"] for r in runs],
        wall_s=[r["wall_s"] for r in runs],
        peak_mem_mb=[r["peak_mem_mb"] for r in runs],
        cached=[r["cached"] for r in runs],
        device=str(device),
    )


@dataclass
class EvalResult:
    """Accuracies (%) of ``repeats`` trainings of ``arch`` on one surrogate set.

    ``accs`` is what the tables report: the final test accuracy, or with ``metric ==
    "best_of_last_third"`` the official code's best accuracy over the last third of training.
    ``std`` is the population std (``np.std``, ddof 0), as the DD literature reports it.
    ``peak_mem_mb``: on CUDA ``torch.cuda.max_memory_allocated`` of the run; on CPU the process's
    peak resident set size so far (``resource.getrusage(...).ru_maxrss``), an upper bound that
    includes everything the process held before the run.
    """

    arch: str
    protocol: str
    metric: str
    ipc: float
    epochs: int
    steps: int
    seeds: list[int]
    accs: list[float]
    final_accs: list[float]
    wall_s: list[float]
    peak_mem_mb: list[float]
    cached: list[bool]
    device: str
    mean: float = field(init=False)
    std: float = field(init=False)

    def __post_init__(self):
        self.mean = float(np.mean(self.accs))
        self.std = float(np.std(self.accs))

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.std:.1f}"

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_fingerprint(teacher: Callable, x: torch.Tensor, device: str = "cpu") -> str:
    """SHA-256 identifying a teacher by its behaviour: its logits (rounded to 1e-4) on the
    surrogate images and on a fixed random probe batch, plus its weights if it is a module."""
    probe = torch.randn((16, *x.shape[1:]), generator=torch.Generator().manual_seed(12345))
    with torch.no_grad():
        logits = [teacher(b.to(device)).float().cpu() for b in (x[:256], probe)]
    arrays = [torch.round(t * 1e4).long() for t in logits]
    if isinstance(teacher, nn.Module):
        arrays += [v.detach().float().cpu().contiguous() for v in teacher.state_dict().values()]
    return _sha(*arrays)


def _one_run(
    x,
    y,
    test,
    arch,
    arch_kwargs,
    p,
    epochs,
    run_seed,
    num_classes,
    teacher,
    best_of_last_third,
    device,
    progress,
) -> dict:
    """One seeded training run, timed; the global RNG is restored afterwards."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[torch.device(device)] if cuda else []):
        torch.manual_seed(run_seed)
        model = build(arch, num_classes, tuple(x.shape[1:]), seed=run_seed, **arch_kwargs)
        out = train_model(
            model,
            x,
            y,
            p,
            epochs,
            num_classes=num_classes,
            teacher=teacher,
            test=test,
            best_of_last_third=best_of_last_third,
            device=device,
            progress=progress,
        )
    if not math.isfinite(out["last_loss"]):
        raise EvaluateError(
            f"training {arch} diverged (loss {out['last_loss']}): lower the protocol's lr"
        )
    return out | {
        "seed": run_seed,
        "wall_s": time.perf_counter() - start,
        "peak_mem_mb": peak_mem_mb(device),
    }


def _tensors(data, what: str):
    """(x, y, classes, dataset name) of an ImageSet-like set, an (x, y) pair or a
    :class:`dsco.surrogates.Surrogate` (its ``data``)."""
    if hasattr(data, "data") and hasattr(data, "method"):  # a Surrogate: what make_all returns
        data = data.data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        classes, name = None, ""
    elif hasattr(data, "x") and hasattr(data, "y"):
        x, y, classes, name = data.x, data.y, list(data.classes), getattr(data, "name", "")
    elif hasattr(data, "in_memory"):
        m = data.in_memory()
        x, y, classes, name = m.x, m.y, list(m.classes), m.name
    else:
        raise EvaluateError(
            f"{what} must be an ImageSet (dsco.data.load) or an (x, y) pair of "
            f"tensors, got {type(data).__name__}"
        )
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim != 4 or not x.is_floating_point():
        raise EvaluateError(
            f"{what} images must be a float tensor N×C×H×W, got {tuple(x.shape)} {x.dtype}"
        )
    if y.ndim != 1 or len(y) != len(x) or y.is_floating_point():
        raise EvaluateError(
            f"{what} labels must be an integer tensor of length {len(x)} (one "
            f"per image), got {tuple(y.shape)} {y.dtype}"
        )
    if len(x) == 0:
        raise EvaluateError(f"{what} is empty: pass at least one image per class")
    return (
        x.detach().float().cpu().contiguous(),
        y.detach().long().cpu().contiguous(),
        classes,
        name,
    )


def _sha(*arrays, extra=None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(tuple(a.shape)).encode())
        h.update(a.numpy().tobytes())
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Grids of evaluations (one table of the paper = one grid)
# ---------------------------------------------------------------------------------------------


def grid(
    sets: dict,
    archs,
    protocol: str | Protocol = "hard",
    repeats: int | None = None,
    seed: int = 0,
    *,
    dataset=None,
    test_set=None,
    device: str = "cpu",
    workers: int = 1,
    teacher: nn.Module | None = None,
    names=("set",),
    cache_dir=None,
    progress: bool = True,
    **arch_kwargs,
):
    """Evaluate every set of ``sets`` on every architecture of ``archs``.

    ``sets``: ``{label: surrogate}`` (anything :func:`evaluate` takes); a tuple label is split
    into the columns ``names`` (e.g. ``{("DsCo", 10): s}`` with ``names=("method", "ipc")``).
    **Replicates** (the design of :mod:`dsco.verdicts`): when ``names`` has a ``replicate``
    column, every set is replicate ``r`` of its cell -- made from ``seed + r`` (e.g. by
    :func:`dsco.surrogates.make_all`) -- and is trained once, with the training seed ``seed + r``,
    so a replicate varies the set and the training together and two methods pair by ``r``.
    Without that column every set is trained ``repeats`` times (run ``r`` seeded ``seed + r``,
    ``replicate`` = ``r``): only the training varies.
    ``dataset`` (a :class:`dsco.datasets.Dataset`) supplies what its profile fixes: the test
    split (``test_set``), the protocol's step budget (for a protocol given by name), ``repeats``
    (the profile's replicates) and each architecture's kwargs (``ds.arch_kwargs(arch)``, under
    the explicit ``arch_kwargs``); without it ``test_set`` is required and ``repeats`` defaults to
    3. Every run goes through the cache of :func:`evaluate`
    (``cache_dir``), so a grid that is interrupted resumes where it stopped. ``workers > 1``
    spreads the runs over that many spawned processes (one torch thread each; on one GPU they
    share the device) — the result does not depend on ``workers``. Returns a long
    :class:`pandas.DataFrame`, one row per run: the ``names`` columns, ``arch``, ``protocol``,
    ``run_seed``, ``replicate``, ``acc``, ``wall_s``, ``peak_mem_mb``, ``ipc`` (images per class
    of the set,
    unless ``names`` has an ``ipc`` column), ``epochs``, ``steps``, ``metric``, ``device``,
    ``cached``. See :func:`summary`.
    """
    import pandas as pd

    names = tuple(names)
    archs = [archs] if isinstance(archs, str) else list(archs)
    bad = [a for a in archs if a not in ARCHS]
    if bad:
        raise EvaluateError(f"unknown architecture(s) {bad}: use names from {', '.join(ARCHS)}")
    if test_set is None:
        if dataset is None:
            raise EvaluateError(
                "grid needs test_set= (the real test split) or dataset= (a dsco.datasets.Dataset)"
            )
        test_set = dataset.test()
    replicated = "replicate" in names
    if replicated and repeats not in (None, 1):
        raise EvaluateError(
            f"repeats={repeats} with a 'replicate' column: each replicate's set is "
            "trained once; make more replicates instead"
        )
    if repeats is None:
        repeats = 1 if replicated else dataset.budget.replicates if dataset is not None else 3
    if dataset is not None and isinstance(protocol, str):
        protocol = dataset.protocol(protocol)
    if workers < 1 or repeats < 1:
        raise EvaluateError(f"workers and repeats must be >= 1 (got {workers}, {repeats})")
    labels = []
    for label in sets:
        parts = label if isinstance(label, tuple) else (label,)
        if len(parts) != len(names):
            raise EvaluateError(
                f"set label {label!r} has {len(parts)} part(s) but "
                f"names={names}: give one name per part of the labels"
            )
        labels.append(parts)
    if workers > 1 and isinstance(teacher, nn.Module):
        teacher = copy.deepcopy(teacher).cpu()  # workers get a CPU copy; the caller's stays put
    protocol_name = get_protocol(protocol).name
    jobs, keys = [], []
    for parts, data in zip(labels, sets.values()):
        for arch in archs:
            kwargs = {**(dataset.arch_kwargs(arch) if dataset is not None else {}), **arch_kwargs}
            for r in range(repeats):
                rep = int(dict(zip(names, parts))["replicate"]) if replicated else r
                keys.append(
                    dict(zip(names, parts))
                    | {
                        "arch": arch,
                        "protocol": protocol_name,
                        "run_seed": seed + rep,
                        "replicate": rep,
                    }
                )
                jobs.append(
                    {
                        "data": data,
                        "arch": arch,
                        "protocol": protocol,
                        "seed": seed + rep,
                        "device": device,
                        "test_set": test_set,
                        "teacher": teacher,
                        "arch_kwargs": kwargs,
                        "cache_dir": cache_dir,
                        "threads": 1 if workers > 1 else 0,
                    }
                )
    bar = tqdm(
        total=len(jobs),
        desc=f"grid {len(sets)} sets × {len(archs)} archs × {repeats}",
        disable=not progress,
    )
    pool = None
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    with pool or contextlib.nullcontext():
        results = []
        for res in (pool.map if pool else map)(_grid_job, jobs):
            results.append(res)
            bar.update(1)
    bar.close()
    return pd.DataFrame(
        [k | {c: v for c, v in r.items() if c not in k} for k, r in zip(keys, results)]
    )


def summary(df, index, columns="arch", value: str = "acc", digits: int = 1, numbers: bool = False):
    """``mean ± std`` (population std, as :class:`EvalResult`) of ``value`` per cell of a pivot
    of a :func:`grid` result: rows ``index``, columns ``columns`` (a name or a list of names, or
    None for no pivot). ``numbers=True`` returns the long frame of numbers instead: the keys,
    ``mean``, ``std`` and ``n`` (runs per cell) — what :mod:`dsco.paper`'s comparisons take."""
    index = [index] if isinstance(index, str) else list(index)
    columns = [] if columns is None else [columns] if isinstance(columns, str) else list(columns)
    stats = df.groupby(index + columns, sort=False)[value].agg(
        mean="mean", std=lambda v: float(np.std(v)), n="size"
    )
    if numbers:
        return stats.reset_index()
    text = stats.apply(lambda r: f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}", axis=1)
    return text.unstack(columns) if columns else text


def run_costs(runs, by):
    """The cost of a :func:`grid` result per group ``by``: runs, epochs, optimiser steps, mean and
    total wall seconds per training run, peak memory and how many runs came from the cache (which
    report the cost of the run that made them)."""
    by = [by] if isinstance(by, str) else list(by)
    return (
        runs.groupby(by, sort=False)
        .agg(
            runs=("acc", "size"),
            epochs=("epochs", "first"),
            steps=("steps", "first"),
            wall_s_per_run=("wall_s", "mean"),
            wall_s_total=("wall_s", "sum"),
            peak_mem_mb=("peak_mem_mb", "max"),
            cached=("cached", "sum"),
        )
        .round(2)
        .reset_index()
    )


def _grid_job(job: dict) -> dict:
    """One (set, arch, run) of :func:`grid`, in this or a worker process."""
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    r = evaluate(
        job["data"],
        job["arch"],
        job["protocol"],
        repeats=1,
        seed=job["seed"],
        device=job["device"],
        test_set=job["test_set"],
        teacher=job["teacher"],
        progress=False,
        cache_dir=job["cache_dir"],
        **job["arch_kwargs"],
    )
    return {
        "acc": r.accs[0],
        "wall_s": r.wall_s[0],
        "peak_mem_mb": r.peak_mem_mb[0],
        "ipc": r.ipc,
        "epochs": r.epochs,
        "steps": r.steps,
        "metric": r.metric,
        "device": r.device,
        "cached": r.cached[0],
    }
