"""The configuration-coverage law (related work: "Utility Boundary of Dataset Distillation"): how many
images per class a surrogate set needs to reach a target accuracy under *every one* of H training
configurations, as H grows.

Entry point: ``law(requirements(runs), ...) -> DataFrame`` and ``fit(...)`` -- with the runs made by
:func:`evaluate_pool` over a pool of :func:`configurations`.

1. :func:`configurations` -- the pool: architecture × optimiser (AdamW, SGD) × augmentation on/off.
2. :func:`evaluate_pool` -- every surrogate set (method × IPC) and the full training split trained under
   every configuration (:func:`dsco.evaluate.grid`, cached per run).
3. :func:`requirements` -- per method and configuration, the smallest IPC whose accuracy reaches
   ``fraction`` × that configuration's full-data accuracy (:func:`required_ipc`: interpolated in log IPC
   between the two grid points around the first crossing; ``inf`` when no IPC of the grid reaches it).
4. :func:`law` -- for H = 1 … K, the IPC needed under all H configurations of a subset (the largest of
   their requirements: accuracy grows with IPC), averaged over subsets of size H.
5. :func:`fit` -- the line IPC ≈ a·H + b through the law, with R² (``scipy.stats.linregress``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Protocol fields that switch the training augmentation off: no crop, no flip, no colour, no CutMix.
NO_AUGMENT = dict(rrc_scale=(1.0, 1.0), rrc_ratio=(1.0, 1.0), flip=False, color=False, cutmix_p=0.0)
#: The optimisers of the pool: the hard-label protocol's AdamW (App. D.1) and its SGD variant.
OPTIMISERS = {"AdamW": "hard", "SGD": "sgd"}


@dataclass(frozen=True)
class Config:
    """One training configuration of the pool: ``arch`` trained with the protocol preset ``protocol``
    (with ``overrides``); ``name`` reads e.g. "convnet · SGD · no aug"."""
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
    return [Config(f"{a} · {o} · {'aug' if aug else 'no aug'}", a, OPTIMISERS[o], {} if aug else dict(NO_AUGMENT))
            for a in archs for o in optimisers for aug in augment]


def evaluate_pool(sets: dict, full, configs, ds, repeats: int | None = None, seed: int = 0, **grid_kwargs):
    """Train every set of ``sets`` (``{(method, ipc): set}``) and ``full`` (the training split, method
    "full") under every configuration: one :func:`dsco.evaluate.grid` per configuration; returns its long
    runs frame with a ``config`` column."""
    from . import evaluate

    frames = []
    for c in configs:
        protocol = ds.protocol(c.protocol, **c.overrides)
        runs = evaluate.grid({**sets, ("full", 0): full}, [c.arch], protocol, repeats, seed, dataset=ds,
                             names=("method", "ipc"), **grid_kwargs)
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


def requirements(runs: pd.DataFrame, fraction: float = 0.9) -> pd.DataFrame:
    """Per method and configuration of an :func:`evaluate_pool` result: ``full`` (the configuration's
    full-data accuracy, mean over trainings), ``target`` = ``fraction`` × full, ``required`` (IPC, from
    the mean accuracy per IPC) and ``best`` (the highest mean accuracy on the grid)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: use a share of the full-data accuracy in (0, 1]")
    means = runs.groupby(["config", "method", "ipc"], sort=False)["acc"].mean().reset_index()
    full = means[means["method"] == "full"].set_index("config")["acc"]
    rows = []
    for (config, method), g in means[means["method"] != "full"].groupby(["config", "method"], sort=False):
        g = g.sort_values("ipc")
        target = fraction * full[config]
        rows.append({"config": config, "method": method, "full": full[config], "target": target,
                     "required": required_ipc(g["ipc"], g["acc"], target), "best": g["acc"].max()})
    return pd.DataFrame(rows)


def law(req: pd.DataFrame, max_subsets: int = 500, seed: int = 0) -> pd.DataFrame:
    """For every method and H = 1 … K (K configurations): the IPC needed under every configuration of
    a subset of H -- the largest of their ``required`` -- averaged over all subsets of size H (a seeded
    sample of ``max_subsets`` when there are more). Columns ``method``, ``H``, ``ipc`` (mean over the
    subsets that reach the target), ``std``, ``reached`` (share of subsets whose every configuration
    reaches it), ``subsets``."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, g in req.groupby("method", sort=False):
        need = g["required"].to_numpy(float)
        k = len(need)
        for h in range(1, k + 1):
            if math.comb(k, h) <= max_subsets:
                subsets = list(itertools.combinations(range(k), h))
            else:
                subsets = [rng.choice(k, h, replace=False) for _ in range(max_subsets)]
            worst = np.array([need[list(s)].max() for s in subsets])
            ok = worst[np.isfinite(worst)]
            rows.append({"method": method, "H": h, "ipc": ok.mean() if len(ok) else math.nan,
                         "std": ok.std() if len(ok) else math.nan, "reached": len(ok) / len(worst),
                         "subsets": len(worst)})
    return pd.DataFrame(rows)


def fit(curve: pd.DataFrame) -> pd.DataFrame:
    """The least-squares line IPC ≈ a·H + b per method of a :func:`law` result (over the H whose
    subsets reach the target), with ``r2`` and the points used ``n``; one row per method, NaN with
    fewer than 3 points (e.g. a method that never reaches the target on the IPC grid)."""
    from scipy import stats

    rows = []
    for method, g in curve.groupby("method", sort=False):
        g = g.dropna(subset=["ipc"])
        if len(g) < 3 or g["ipc"].nunique() < 2:
            rows.append({"method": method, "a": math.nan, "b": math.nan, "r2": math.nan, "n": len(g)})
            continue
        r = stats.linregress(g["H"], g["ipc"])
        rows.append({"method": method, "a": r.slope, "b": r.intercept, "r2": r.rvalue ** 2, "n": len(g)})
    return pd.DataFrame(rows)


def slope_gap(req: pd.DataFrame, a: str = "DsCo", b: str = "Random", draws: int = 200, seed: int = 0) -> dict:
    """Slope of ``a`` minus slope of ``b`` (:func:`fit` of :func:`law`) with a 95 % bootstrap interval
    over the configurations (resampled with replacement, the same draw for both methods: the two are
    paired by configuration). ``{"diff", "lo", "hi", "draws"}`` (NaN where a side has no line)."""
    rng = np.random.default_rng(seed)
    configs = req["config"].unique()

    def gap(chosen) -> float:
        parts = [req[(req["config"] == c)].assign(config=f"{c}#{i}") for i, c in enumerate(chosen)]
        f = fit(law(pd.concat(parts), max_subsets=100, seed=seed)).set_index("method")["a"]
        return float(f.get(a, math.nan) - f.get(b, math.nan))

    boot = np.array([gap(rng.choice(configs, len(configs))) for _ in range(draws)])
    ok = boot[np.isfinite(boot)]
    lo, hi = np.percentile(ok, [2.5, 97.5]) if len(ok) >= 10 else (math.nan, math.nan)
    return {"diff": gap(configs), "lo": float(lo), "hi": float(hi), "draws": len(ok)}


def claims(curve: pd.DataFrame, fits: pd.DataFrame, req: pd.DataFrame, draws: int = 200, seed: int = 0) -> dict:
    """The coverage law's claims as ``{claim: (verdict, numbers)}`` (:func:`dsco.scorecard.record`): per
    method, "the required IPC grows linearly with H" -- holds when the line has R² ≥ 0.9 and a positive
    slope -- and "DsCo's slope is below Random's", judged on :func:`slope_gap`'s interval ("within
    noise" when it covers zero)."""
    from .paper import by_interval

    out = {}
    for method, f in fits.set_index("method").iterrows():
        g = curve[curve["method"] == method]
        reached = f"reached by {g['reached'].min():.0%}–{g['reached'].max():.0%} of the subsets"
        if pd.isna(f["a"]):
            out[f"required IPC grows linearly with H ({method})"] = (
                "not measured", f"no line: fewer than 3 H values reach the target, or the IPC does not "
                                f"change with H ({reached})")
            continue
        ok = f["r2"] >= 0.9 and f["a"] > 0
        out[f"required IPC grows linearly with H ({method})"] = (
            "holds" if ok else "does not hold",
            f"IPC ≈ {f['a']:.2f}·H + {f['b']:.2f}, R² {f['r2']:.2f} over {int(f['n'])} H values ({reached})")
    if {"DsCo", "Random"} <= set(fits["method"]):
        s = slope_gap(req, draws=draws, seed=seed)
        if math.isnan(s["lo"]):
            out["DsCo's slope is below Random's"] = ("not measured", f"slope difference {s['diff']:+.2f}, "
                                                     "too few bootstrap draws with both lines")
        else:
            v = by_interval(-s["hi"], -s["lo"])  # "below": the negated difference is above 0
            out["DsCo's slope is below Random's"] = (v, f"a(DsCo) − a(Random) = {s['diff']:+.2f} "
                                                        f"[{s['lo']:+.2f}, {s['hi']:+.2f}] (95 % bootstrap over "
                                                        f"{len(req['config'].unique())} configurations)")
    return out
