"""Grids of evaluations: one table of the paper = one grid of sets × architectures × runs.

:func:`grid` trains every architecture on every surrogate set with :func:`dsco.evaluate.evaluate`
(cached per run, so an interrupted grid resumes where it stopped), in this process or spread over
spawned worker processes, and returns a long :class:`pandas.DataFrame`, one row per run, with the
replicate design of :mod:`dsco.verdicts`. :func:`summary` condenses its rows to ``mean ± std``
cells (or the numbers :mod:`dsco.paper`'s comparisons take) and :func:`run_costs` to the cost of
each group of runs.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .architectures import ARCHS, EvaluateError
from .evaluate import evaluate
from .training import Protocol, get_protocol


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

    ``sets``: ``{label: surrogate}`` (anything :func:`dsco.evaluate.evaluate` takes); a tuple label
    is split into the columns ``names`` (e.g. ``{("DsCo", 10): s}`` with ``names=("method",
    "ipc")``).
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
    3. Every run goes through the cache of :func:`dsco.evaluate.evaluate`
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
    """``mean ± std`` (population std, as :class:`dsco.evaluate.EvalResult`) of ``value`` per cell
    of a pivot of a :func:`grid` result: rows ``index``, columns ``columns`` (a name or a list of
    names, or None for no pivot). ``numbers=True`` returns the long frame of numbers instead: the
    keys, ``mean``, ``std`` and ``n`` (runs per cell) — what :mod:`dsco.paper`'s comparisons
    take."""
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
