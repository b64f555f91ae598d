"""How far is a surrogate set from the real data, and which distance predicts its downstream accuracy?

Entry point: ``measures(sets, real, features=None) -> DataFrame``, one row per surrogate set: the set's
class-``c`` images are compared with the real class-``c`` images (flattened), averaged over its classes.

* ``mmd_pixel``: the biased Gaussian-kernel MMD² of :func:`dsco.metrics.mmd2` in pixels, the
  bandwidth per class the median pairwise distance of the real class (as
  :class:`dsco.metrics.Reference`). Lower is closer.
* ``energy_pixel``: the energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Euclidean, V-statistic with zero
  diagonals: the MMD² of the distance kernel, no bandwidth to choose). >= 0, lower is closer.
* ``coverage_pixel``: :func:`dsco.metrics.coverage`, the share of real images with a set image
  within the class's typical nearest-neighbour spacing (:func:`dsco.metrics.coverage_radius`).
  Higher is closer.
* ``mmd_feature``: the MMD² on features (e.g. a teacher's :func:`penultimate` layer), when given.

The real side (a seeded subsample of at most ``max_real`` images per class, bandwidths, radii, features) is
computed once. :func:`correlations` asks which measure tracks accuracy: Spearman's rho with a bootstrap
interval (:func:`rank_correlation`), oriented by :data:`MEASURES` so that positive always means "closer to
the data, more accurate". Distances are torch float64; every result is deterministic for a given ``seed``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import metrics

#: ``{column: (label, direction)}``; direction +1 where higher means closer to the real data, -1 otherwise.
MEASURES = {"mmd_pixel": ("kernel MMD² (pixels)", -1), "energy_pixel": ("energy distance (pixels)", -1),
            "coverage_pixel": ("coverage (pixels)", +1), "mmd_feature": ("kernel MMD² (teacher features)", -1)}


def measures(sets: dict, real, features=None, classes=None, max_real: int | None = 500,
             seed: int = 0) -> pd.DataFrame:
    """One row per entry of ``sets`` (``{(method, ipc): Surrogate or ImageSet}``): ``method``, ``ipc``,
    ``mmd_pixel``, ``energy_pixel``, ``coverage_pixel`` (and ``mmd_feature`` with ``features``), each the
    mean over the set's classes, and ``images``. ``real``: the real training split (``.x``, ``.y``; a lazy
    FolderSet reads only its subsample). ``features``: a callable mapping N×C×H×W images to N×D features.
    ``classes``: the classes to compare (default: every class in the set). ``max_real``: at most this many
    real images per class, a subsample seeded by ``seed`` (None: all)."""
    wanted = None if classes is None else {int(c) for c in classes}
    images = _real_classes(real, wanted, max_real, seed)
    pixels = metrics.Reference(images)   # per class: flat points, median bandwidth, radius
    within = {c: _mean_distance(p, p) for c, p in pixels.points.items()}   # E|X - X'| of the energy distance
    feats = None if features is None else metrics.Reference(
        {c: _as_features(features, x) for c, x in images.items()})
    rows = []
    for (method, ipc), s in sets.items():
        data = _in_memory(getattr(s, "data", s))
        x, y = data.x.reshape(len(data.x), -1).double(), torch.as_tensor(data.y).long()
        f = None if features is None else _as_features(features, data.x)
        present = sorted(set(y.tolist()) if wanted is None else set(y.tolist()) & wanted)
        if not present:
            raise ValueError(f"set {(method, ipc)} has none of the classes {sorted(wanted)}: pass classes it has")
        if lacking := sorted(set(present) - pixels.points.keys()):
            raise ValueError(f"set {(method, ipc)} has classes {lacking}, which the real split lacks: pass the real "
                             "split the set was made from")
        per_class = []
        for c in present:
            xc, near = x[y == c], pixels.measure(x[y == c], c)
            row = {"mmd_pixel": near["mmd2"], "energy_pixel": _energy(pixels.points[c], xc, within[c]),
                   "coverage_pixel": near["coverage"]}
            if f is not None:
                row["mmd_feature"] = metrics.mmd2(feats.points[c], f[y == c], feats.bandwidth[c])
            per_class.append(row)
        rows.append({"method": method, "ipc": int(ipc), **pd.DataFrame(per_class).mean().to_dict(), "images": len(x)})
    return pd.DataFrame(rows)


def energy_distance(x, y) -> float:
    """Energy distance ``2 mean|x_i - y_j| - mean|x_i - x_k| - mean|y_j - y_l|`` between the rows of
    ``x`` (n×...) and ``y`` (m×...), flattened, Euclidean, float64; the V-statistic (zero diagonals
    included), so it is >= 0 (clamped against rounding), symmetric, and 0 for identical sets."""
    x, y = (torch.as_tensor(a).reshape(len(a), -1).double() for a in (x, y))
    if len(x) == 0 or len(y) == 0 or x.shape[1] != y.shape[1]:
        raise ValueError(f"energy_distance needs two non-empty sets of same-sized samples (got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}): compare images with images of the same size")
    return _energy(x, y, _mean_distance(x, x))


def penultimate(model):
    """A callable ``images (N×C×H×W) -> features (N×D, CPU float64)``: the input of ``model``'s last
    linear layer, computed under ``torch.no_grad()`` in eval mode (the model's mode is restored after),
    in batches of 256 on the model's device. Supports an ``nn.Sequential`` ending in ``nn.Linear`` (the
    digits teacher of :func:`dsco.teacher.build_teacher`) and a :class:`dsco.teacher.TimmTeacher`."""
    from .teacher import TimmTeacher

    if isinstance(model, torch.nn.Sequential) and len(model) > 1 and isinstance(model[-1], torch.nn.Linear):
        trunk = model[:-1]
    elif isinstance(model, TimmTeacher):
        def trunk(x):
            z = ((x + 1) / 2 - model.mean) / model.std   # as TimmTeacher.forward
            return model.model.forward_head(model.model.forward_features(z), pre_logits=True)
    else:
        raise ValueError(f"penultimate does not support {type(model).__name__}: pass an nn.Sequential whose last "
                         "module is nn.Linear (dsco.teacher.build_teacher) or a dsco.teacher.TimmTeacher")

    @torch.no_grad()
    def features(x: torch.Tensor) -> torch.Tensor:
        """The penultimate features of the images ``x``, N×D float64 on the CPU."""
        was_training, device = model.training, next(model.parameters()).device
        model.eval()
        try:
            out = [trunk(x[i:i + 256].float().to(device)).reshape(len(x[i:i + 256]), -1).double().cpu()
                   for i in range(0, len(x), 256)]
        finally:
            model.train(was_training)
        return torch.cat(out)
    return features


def rank_correlation(x, y, draws: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Spearman's rho of the paired sequences ``x`` and ``y`` (``scipy.stats.spearmanr``) with a percentile
    bootstrap interval at ``level`` over ``draws`` resamples of the pairs (``numpy.random.default_rng(seed)``;
    a resample where either side is constant counts as NaN and is skipped). Pairs with a NaN are dropped.
    Returns ``{"rho", "lo", "hi", "n"}`` (``n`` = pairs used)."""
    from scipy.stats import rankdata, spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and of equal length (got shapes {x.shape} and {y.shape})")
    if draws < 1 or not 0 < level < 1:
        raise ValueError(f"draws={draws}, level={level}: use draws >= 1 and 0 < level < 1 (e.g. 0.95)")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[keep], y[keep], int(keep.sum())
    if n < 3:
        raise ValueError(f"rank_correlation needs at least 3 pairs without NaN (got {n}): add more sets")
    rho = float(spearmanr(x, y)[0]) if np.ptp(x) > 0 and np.ptp(y) > 0 else np.nan
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    rx, ry = (r - r.mean(1, keepdims=True) for r in (rankdata(x[idx], axis=1), rankdata(y[idx], axis=1)))
    denom = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))   # spearmanr = Pearson of the average ranks
    boot = np.where(denom > 0, (rx * ry).sum(1) / np.where(denom > 0, denom, 1.0), np.nan)
    lo, hi = np.nanpercentile(boot, [50 * (1 - level), 50 * (1 + level)]) if (denom > 0).any() else (np.nan, np.nan)
    return {"rho": rho, "lo": float(lo), "hi": float(hi), "n": n}


def correlations(table: pd.DataFrame, accuracy_column: str = "acc", measures=None, draws: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """One row per measure column of ``table``: ``measure``, ``label``, ``rho`` (Spearman against
    ``accuracy_column``), ``lo``, ``hi``, ``n`` and ``oriented`` = rho × direction (positive: closer to the
    data goes with more accurate), sorted by ``oriented``, best first. ``measures``: column names of
    :data:`MEASURES` (default: those in ``table``) or a dict ``{column: (label, direction)}``."""
    if accuracy_column not in table:
        raise ValueError(f"no column {accuracy_column!r} in the table (columns: {list(table.columns)}): pass "
                         "accuracy_column, e.g. after merging accuracies into the measures table")
    measures = [m for m in MEASURES if m in table] if measures is None else measures
    if unknown := [m for m in measures if not isinstance(measures, dict) and m not in MEASURES]:
        raise ValueError(f"unknown measures {unknown}: use columns of MEASURES or pass {{column: (label, direction)}}")
    measures = measures if isinstance(measures, dict) else {m: MEASURES[m] for m in measures}
    missing = [m for m in measures if m not in table]
    if missing or not measures:
        raise ValueError(f"measure columns {missing or 'none'} not in the table: compute them with measures()")
    rows = []
    for m, (label, direction) in measures.items():
        r = rank_correlation(table[m], table[accuracy_column], draws=draws, seed=seed)
        rows.append({"measure": m, "label": label, **r, "oriented": r["rho"] * direction})
    out = pd.DataFrame(rows, columns=["measure", "label", "rho", "lo", "hi", "n", "oriented"])
    return out.sort_values("oriented", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def claims(table: pd.DataFrame, corr: pd.DataFrame, a: str = "DsCo", b: str = "DiT†") -> dict:
    """The claims of this analysis as ``{claim: (verdict, numbers)}`` (:func:`dsco.scorecard.record`):
    "a discrepancy predicts accuracy" -- the best measure of :func:`correlations`, "holds" when its
    oriented interval lies above 0, "within noise" when it covers 0 -- and "``a`` is closer than ``b`` in
    that measure", counted over the IPCs both have (:func:`dsco.paper.finding`)."""
    from .paper import by_interval, finding

    best = corr.iloc[0]
    sign = MEASURES.get(best["measure"], (None, 1))[1]
    lo, hi = sorted((best["lo"] * sign, best["hi"] * sign))
    out = {"a discrepancy to the real data predicts downstream accuracy (Prop. 1)": (
        by_interval(lo, hi),
        f"best: {best['label']}, ρ = {best['rho']:+.2f} [{best['lo']:+.2f}, {best['hi']:+.2f}] "
        f"over {int(best['n'])} sets (95 % bootstrap)")}
    values = table.pivot(index="ipc", columns="method", values=best["measure"])
    if {a, b} <= set(values.columns):
        both = values[[a, b]].dropna()
        closer = int(((both[a] - both[b]) * sign > 0).sum())
        v, counted = finding(closer, len(both), "IPCs")
        out[f"{a} is closer to the data than {b} in {best['label']}"] = (
            v, f"{counted}; " + ", ".join(f"IPC {i}: {r[a]:.4g} vs {r[b]:.4g}" for i, r in both.iterrows()))
    return out


def _real_classes(real, wanted, max_real, seed) -> dict:
    """``{class: images}`` of ``real`` (the ``wanted`` classes, default all), each a seeded subsample of at
    most ``max_real`` images (one generator, classes in increasing order, images in split order)."""
    if max_real is not None and max_real < 2:
        raise ValueError(f"max_real={max_real}: use 2 or more real images per class (or None for all)")
    y, g, out = torch.as_tensor(real.y).long(), torch.Generator().manual_seed(seed), {}
    for c in sorted(set(y.tolist()) if wanted is None else set(y.tolist()) & wanted):
        pool = torch.nonzero(y == c).flatten()
        if len(pool) < 2:
            raise ValueError(f"real class {c} has {len(pool)} image: pass a real split with 2 or more per class")
        if max_real is not None and len(pool) > max_real:
            pool = pool[torch.randperm(len(pool), generator=g)[:max_real]].sort().values
        out[c] = _in_memory(real.subset(pool)).x if hasattr(real, "subset") else real.x[pool]
    return out


def _energy(x: torch.Tensor, y: torch.Tensor, xx: float) -> float:
    """The energy distance of flat float64 ``x`` and ``y`` given ``xx``, the mean distance within ``x``."""
    return max(2 * _mean_distance(x, y) - xx - _mean_distance(y, y), 0.0)


def _mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean Euclidean distance over all pairs of rows of ``a`` and ``b`` (exact, not via a·b)."""
    return float(torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").mean())


def _as_features(features, x: torch.Tensor) -> torch.Tensor:
    """``features(x)`` as an N×D CPU float64 tensor."""
    return torch.as_tensor(features(x)).reshape(len(x), -1).double().cpu()


def _in_memory(s):
    """An in-memory set (``.x``, ``.y``): ``s.in_memory()`` where it exists, else ``s``."""
    return s.in_memory() if hasattr(s, "in_memory") else s
