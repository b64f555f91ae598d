"""The configuration-coverage law (related work: "Utility Boundary of Dataset Distillation"): how
many images per class a surrogate set needs to reach a target accuracy under *every one* of H
training configurations, as H grows.

Entry point: ``law(requirements(runs), ...) -> DataFrame`` and ``fit(...)`` -- with the runs made
by :func:`evaluate_pool` over a pool of :func:`configurations`.

1. :func:`configurations` -- the pool: architecture × optimiser (AdamW, SGD) × augmentation on/off.
2. :func:`evaluate_pool` -- every surrogate set (method × IPC, and replicate) and the full training
   split trained under every configuration (:func:`dsco.grids.grid`, cached per run).
3. :func:`requirements` -- per method and configuration (and replicate), the smallest IPC whose
   accuracy reaches ``fraction`` × that configuration's full-data accuracy (:func:`required_ipc`:
   interpolated in log IPC between the two grid points around the first crossing; ``inf`` when no
   IPC of the grid reaches it).
4. :func:`law` -- for H = 1 … K, the IPC needed under all H configurations of a subset (the
   largest of their requirements: accuracy grows with IPC), averaged over subsets of size H.
5. :func:`fit` -- the line IPC ≈ a·H + b through the law, with R² (``scipy.stats.linregress``).
6. :func:`claims` -- "DsCo's slope is below Random's", judged over replicates by a rule of
   :mod:`dsco.verdicts`.

Within one fixed pool the law is an order statistic: the IPC needed under H configurations is the
largest of H requirements drawn from the same K, so its mean over subsets is concave in H and ends
at the hardest configuration's requirement whatever the sets are. Its shape (and the R² of a line
through it) describes the pool, not the sets, so it cannot test the related paper's *linear* law;
the slope still compares two methods on the same pool.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Protocol fields that switch the training augmentation off: no crop, no flip, no colour, no
#: CutMix.
NO_AUGMENT = dict(rrc_scale=(1.0, 1.0), rrc_ratio=(1.0, 1.0), flip=False, color=False, cutmix_p=0.0)
#: The optimisers of the pool: the hard-label protocol's AdamW (App. D.1) and its SGD variant.
OPTIMISERS = {"AdamW": "hard", "SGD": "sgd"}


@dataclass(frozen=True)
class Config:
    """One training configuration of the pool: ``arch`` trained with the protocol preset
    ``protocol`` (with ``overrides``); ``name`` reads e.g. "convnet · SGD · no aug"."""

    name: str
    arch: str
    protocol: str
    overrides: dict = field(default_factory=dict)


def configurations(archs, optimisers=tuple(OPTIMISERS), augment=(True, False)) -> list[Config]:
    """The pool: every architecture of ``archs`` × optimiser × augmentation on/off (8 with two
    architectures), in that order."""
    bad = [o for o in optimisers if o not in OPTIMISERS]
    if bad:
        raise ValueError(f"unknown optimiser(s) {bad}: use {', '.join(OPTIMISERS)}")
    return [
        Config(
            f"{a} · {o} · {'aug' if aug else 'no aug'}",
            a,
            OPTIMISERS[o],
            {} if aug else dict(NO_AUGMENT),
        )
        for a in archs
        for o in optimisers
        for aug in augment
    ]


def evaluate_pool(
    sets: dict, full, configs, ds, repeats: int | None = None, seed: int = 0, **grid_kwargs
):
    """Train every set of ``sets`` and ``full`` (the training split, method "full", IPC 0) under
    every configuration: one :func:`dsco.grids.grid` per configuration; returns its long runs
    frame with a ``config`` column. With replicate keys ``{(method, ipc, r): set}`` (e.g. from
    :func:`dsco.surrogates.make_all`) every set is trained once with the seed ``seed + r`` and the
    full split appears once per replicate (``("full", 0, r)``, trained with ``seed + r``), as the
    replicate design of :mod:`dsco.verdicts` asks; with ``{(method, ipc): set}`` every set is
    trained ``repeats`` times."""
    from . import grids

    replicated = any(len(k) == 3 for k in sets)
    if replicated:
        reps = sorted({k[2] for k in sets})
        everything = {**sets, **{("full", 0, r): full for r in reps}}
        names = ("method", "ipc", "replicate")
    else:
        everything, names = {**sets, ("full", 0): full}, ("method", "ipc")
    frames = []
    for c in configs:
        protocol = ds.protocol(c.protocol, **c.overrides)
        runs = grids.grid(
            everything, [c.arch], protocol, repeats, seed, dataset=ds, names=names, **grid_kwargs
        )
        frames.append(runs.assign(config=c.name))
    return pd.concat(frames, ignore_index=True)


def required_ipc(ipcs, accs, target: float) -> float:
    """The smallest IPC at which the accuracy curve ``accs`` (over ``ipcs``, increasing) reaches
    ``target``: the first grid point at or above it, interpolated linearly in log IPC from the point
    before; the smallest IPC when the first point already reaches it; ``inf`` when none does."""
    ipcs, accs = np.asarray(ipcs, float), np.asarray(accs, float)
    if len(ipcs) == 0 or len(ipcs) != len(accs) or np.any(np.diff(ipcs) <= 0):
        raise ValueError("required_ipc needs matching, strictly increasing IPCs and accuracies")
    hit = np.flatnonzero(accs >= target)
    if len(hit) == 0:
        return math.inf
    i = int(hit[0])
    if i == 0:
        return float(ipcs[0])
    t = (target - accs[i - 1]) / (accs[i] - accs[i - 1])
    return float(np.exp(np.log(ipcs[i - 1]) + t * (np.log(ipcs[i]) - np.log(ipcs[i - 1]))))


def requirements(
    runs: pd.DataFrame, fraction: float = 0.9, per_replicate: bool = False
) -> pd.DataFrame:
    """Per method and configuration of an :func:`evaluate_pool` result: ``full`` (the
    configuration's full-data accuracy), ``target`` = ``fraction`` × full, ``required`` (IPC, from
    the accuracy per IPC) and ``best`` (the highest accuracy on the grid). Accuracies are the means
    over the trainings of a cell; with ``per_replicate`` one row per ``replicate`` too, each judged
    against its own replicate's full-data accuracy (replicate ``r``: its sets and the full split
    trained with the seed ``seed + r``)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: use a share of the full-data accuracy in (0, 1]")
    rep = ["replicate"] if per_replicate else []
    means = runs.groupby([*rep, "config", "method", "ipc"], sort=False)["acc"].mean().reset_index()
    full = means[means["method"] == "full"].set_index([*rep, "config"])["acc"]
    rows = []
    keys = [*rep, "config", "method"]
    for key, g in means[means["method"] != "full"].groupby(keys, sort=False):
        *r, config, method = key
        g = g.sort_values("ipc")
        reference = full[tuple(r) + (config,)] if rep else full[config]
        target = fraction * reference
        rows.append(
            dict(zip(rep, r))
            | {
                "config": config,
                "method": method,
                "full": reference,
                "target": target,
                "required": required_ipc(g["ipc"], g["acc"], target),
                "best": g["acc"].max(),
            }
        )
    return pd.DataFrame(rows)


def law(req: pd.DataFrame, max_subsets: int = 500, seed: int = 0) -> pd.DataFrame:
    """For every method (and ``replicate``, when ``req`` has that column) and H = 1 … K (K
    configurations): the IPC needed under every configuration of a subset of H -- the largest of
    their ``required`` -- averaged over all subsets of size H (a seeded sample of ``max_subsets``
    when there are more). Columns (``replicate``,) ``method``, ``H``, ``ipc`` (mean over the
    subsets that reach the target), ``std``, ``reached`` (share of subsets whose every
    configuration reaches it), ``subsets``."""
    rng = np.random.default_rng(seed)
    rep = ["replicate"] if "replicate" in req else []
    rows = []
    for key, g in req.groupby([*rep, "method"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        need = g["required"].to_numpy(float)
        k = len(need)
        for h in range(1, k + 1):
            if math.comb(k, h) <= max_subsets:
                subsets = list(itertools.combinations(range(k), h))
            else:
                subsets = [rng.choice(k, h, replace=False) for _ in range(max_subsets)]
            worst = np.array([need[list(s)].max() for s in subsets])
            ok = worst[np.isfinite(worst)]
            rows.append(
                dict(zip([*rep, "method"], key))
                | {
                    "H": h,
                    "ipc": ok.mean() if len(ok) else math.nan,
                    "std": ok.std() if len(ok) else math.nan,
                    "reached": len(ok) / len(worst),
                    "subsets": len(worst),
                }
            )
    return pd.DataFrame(rows)


def fit(curve: pd.DataFrame) -> pd.DataFrame:
    """The least-squares line IPC ≈ a·H + b per method (and ``replicate``, when ``curve`` has that
    column) of a :func:`law` result (over the H whose subsets reach the target), with ``r2`` and
    the points used ``n``; NaN with fewer than 3 points (e.g. a method that never reaches the
    target on the IPC grid). A flat law (the same IPC at every H, e.g. the grid's smallest IPC
    everywhere) is the line of slope 0, its ``r2`` NaN."""
    from scipy import stats

    rep = ["replicate"] if "replicate" in curve else []
    rows = []
    for key, g in curve.groupby([*rep, "method"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g.dropna(subset=["ipc"])
        row = dict(zip([*rep, "method"], key))
        if len(g) < 3:
            rows.append(row | {"a": math.nan, "b": math.nan, "r2": math.nan, "n": len(g)})
            continue
        if g["ipc"].nunique() < 2:  # flat: slope 0 (linregress would divide by a zero spread)
            rows.append(row | {"a": 0.0, "b": float(g["ipc"].iloc[0]), "r2": math.nan, "n": len(g)})
            continue
        r = stats.linregress(g["H"], g["ipc"])
        rows.append(row | {"a": r.slope, "b": r.intercept, "r2": r.rvalue**2, "n": len(g)})
    return pd.DataFrame(rows)


def claims(fits: pd.DataFrame, a: str = "DsCo", b: str = "Random", resolution: float = 0.0) -> dict:
    """The coverage law's claim as ``{claim: Verdict}`` (:func:`dsco.scorecard.record`): "``a``'s
    slope is below ``b``'s" -- the set needs fewer extra images per class for every configuration
    added to H. ``fits``: :func:`fit` of :func:`law` of :func:`requirements` with
    ``per_replicate``, one slope per method and replicate.

    Rule: :func:`dsco.verdicts.estimate` below 0 on the per-replicate slope difference ``a − b``
    (paired by replicate: both methods' sets made from ``seed + r`` and trained with it, under the
    same pool), a t-interval over the replicates. A replicate where either method has no line
    (fewer than 3 H values reach the target) is left out (a flat law is a slope of 0); fewer than
    3 replicates left: not measured. Assumes independent, roughly normal replicates. (The line's
    R² is not judged: within a fixed pool the law is concave by construction, see the module
    docstring.) ``resolution`` floors the sd of the differences (e.g. ``1 / K``: one image per
    class over the whole pool of ``K`` configurations), so that equal slopes in every replicate
    (two flat laws) read as undecided, not as an interval of width 0."""
    from . import verdicts

    d = verdicts.paired(fits, a, b, by="method", on=(), pair="replicate", value="a")
    return {
        f"{a}'s slope is below {b}'s (fewer extra images per class for each added training "
        "configuration)": verdicts.estimate(
            d["diff"],
            below=0.0,
            what=f"slope a({a}) − a({b}), IPC per configuration",
            resolution=resolution,
        )
    }
