"""How far is a surrogate set from the real data, and does a set closer to it train a more accurate
model?

Entry point: ``measures(sets, real, features=None) -> DataFrame``, one row per surrogate set: the
set's class-``c`` images are compared with the real class-``c`` images (flattened), averaged over
its classes.

* ``mmd_pixel``: the biased Gaussian-kernel MMD² of :func:`dsco.metrics.mmd2` in pixels, the
  bandwidth per class the median pairwise distance of the real class (as
  :class:`dsco.metrics.Reference`). Lower is closer.
* ``energy_pixel``: the energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Euclidean, V-statistic
  with zero diagonals: the MMD² of the distance kernel, no bandwidth to choose). >= 0, lower is
  closer.
* ``coverage_pixel``: :func:`dsco.metrics.coverage`, the share of real images with a set image
  within the class's typical nearest-neighbour spacing (:func:`dsco.metrics.coverage_radius`).
  Higher is closer.
* ``mmd_feature``: the MMD² on features (e.g. a teacher's :func:`penultimate` layer), when given.

The real side (a seeded subsample of at most ``max_real`` images per class, bandwidths, radii,
features) is computed once and shared by every set (a fixed reference). :func:`within_ipc` asks
whether a measure tracks accuracy *at a fixed IPC* (a larger set is both closer to the data and
more accurate, so correlations pooled over IPCs mostly measure the IPC): Spearman's rho across the
sets of one IPC and replicate, oriented by :data:`MEASURES` so that positive always means "closer
to the data, more accurate", averaged over the IPCs. :func:`claims` judges the measure fixed in
advance (:data:`CLAIMED`) with the rules of :mod:`dsco.verdicts`. Distances are torch float64;
every result is deterministic for a given ``seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import metrics

#: ``{column: (label, direction)}``; direction +1 where higher means closer to the real data, -1
#: otherwise.
MEASURES = {
    "mmd_pixel": ("kernel MMD² (pixels)", -1),
    "energy_pixel": ("energy distance (pixels)", -1),
    "coverage_pixel": ("coverage (pixels)", +1),
    "mmd_feature": ("kernel MMD² (teacher features)", -1),
}
#: The measure the claims are judged on, fixed before looking at the data: Prop. 1's kernel
#: discrepancy (a Gaussian-kernel MMD²) on the images themselves, which needs no trained model.
CLAIMED = "mmd_pixel"


def measures(
    sets: dict, real, features=None, classes=None, max_real: int | None = 500, seed: int = 0
) -> pd.DataFrame:
    """One row per entry of ``sets`` (``{(method, ipc): set}`` or ``{(method, ipc, replicate):
    set}`` of Surrogates or ImageSets): ``method``, ``ipc``, ``replicate`` (0 for a two-part key),
    ``mmd_pixel``, ``energy_pixel``, ``coverage_pixel`` (and ``mmd_feature`` with ``features``),
    each the mean over the set's classes, and ``images``. ``real``: the real training split
    (``.x``, ``.y``; a lazy FolderSet reads only its subsample). ``features``: a callable mapping
    N×C×H×W images to N×D features. ``classes``: the classes to compare (default: every class in
    the set). ``max_real``: at most this many real images per class, a subsample seeded by
    ``seed`` (None: all)."""
    wanted = None if classes is None else {int(c) for c in classes}
    images = _real_classes(real, wanted, max_real, seed)
    pixels = metrics.Reference(images)  # per class: flat points, median bandwidth, radius
    within = {
        c: _mean_distance(p, p) for c, p in pixels.points.items()
    }  # E|X - X'| of the energy distance
    feats = (
        None
        if features is None
        else metrics.Reference({c: _as_features(features, x) for c, x in images.items()})
    )
    rows = []
    for key, s in sets.items():
        method, ipc, r = (*key, 0) if len(key) == 2 else key
        data = _in_memory(getattr(s, "data", s))
        x, y = data.x.reshape(len(data.x), -1).double(), torch.as_tensor(data.y).long()
        f = None if features is None else _as_features(features, data.x)
        present = sorted(set(y.tolist()) if wanted is None else set(y.tolist()) & wanted)
        if not present:
            raise ValueError(
                f"set {key} has none of the classes {sorted(wanted)}: pass classes it has"
            )
        if lacking := sorted(set(present) - pixels.points.keys()):
            raise ValueError(
                f"set {key} has classes {lacking}, which the real split lacks: pass the real "
                "split the set was made from"
            )
        per_class = []
        for c in present:
            xc, near = x[y == c], pixels.measure(x[y == c], c)
            row = {
                "mmd_pixel": near["mmd2"],
                "energy_pixel": _energy(pixels.points[c], xc, within[c]),
                "coverage_pixel": near["coverage"],
            }
            if f is not None:
                row["mmd_feature"] = metrics.mmd2(feats.points[c], f[y == c], feats.bandwidth[c])
            per_class.append(row)
        rows.append(
            {
                "method": method,
                "ipc": int(ipc),
                "replicate": int(r),
                **pd.DataFrame(per_class).mean().to_dict(),
                "images": len(x),
            }
        )
    return pd.DataFrame(rows)


def energy_distance(x, y) -> float:
    """Energy distance ``2 mean|x_i - y_j| - mean|x_i - x_k| - mean|y_j - y_l|`` between the rows of
    ``x`` (n×...) and ``y`` (m×...), flattened, Euclidean, float64; the V-statistic (zero diagonals
    included), so it is >= 0 (clamped against rounding), symmetric, and 0 for identical sets."""
    x, y = (torch.as_tensor(a).reshape(len(a), -1).double() for a in (x, y))
    if len(x) == 0 or len(y) == 0 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"energy_distance needs two non-empty sets of same-sized samples (got {tuple(x.shape)} "
            f"and {tuple(y.shape)}): compare images with images of the same size"
        )
    return _energy(x, y, _mean_distance(x, x))


def penultimate(model):
    """A callable ``images (N×C×H×W) -> features (N×D, CPU float64)``: the input of ``model``'s
    last linear layer, computed under ``torch.no_grad()`` in eval mode (the model's mode is
    restored after), in batches of 256 on the model's device. Supports an ``nn.Sequential`` ending
    in ``nn.Linear`` (the digits teacher of :func:`dsco.teacher.build_teacher`) and a
    :class:`dsco.teacher.TimmTeacher`."""
    from .teacher import TimmTeacher

    if (
        isinstance(model, torch.nn.Sequential)
        and len(model) > 1
        and isinstance(model[-1], torch.nn.Linear)
    ):
        trunk = model[:-1]
    elif isinstance(model, TimmTeacher):

        def trunk(x):
            z = ((x + 1) / 2 - model.mean) / model.std  # as TimmTeacher.forward
            return model.model.forward_head(model.model.forward_features(z), pre_logits=True)
    else:
        raise ValueError(
            f"penultimate does not support {type(model).__name__}: pass an nn.Sequential whose "
            "last module is nn.Linear (dsco.teacher.build_teacher) or a dsco.teacher.TimmTeacher"
        )

    @torch.no_grad()
    def features(x: torch.Tensor) -> torch.Tensor:
        """The penultimate features of the images ``x``, N×D float64 on the CPU."""
        was_training, device = model.training, next(model.parameters()).device
        model.eval()
        try:
            out = [
                trunk(x[i : i + 256].float().to(device))
                .reshape(len(x[i : i + 256]), -1)
                .double()
                .cpu()
                for i in range(0, len(x), 256)
            ]
        finally:
            model.train(was_training)
        return torch.cat(out)

    return features


def within_ipc(table: pd.DataFrame, accuracy_column: str = "acc", measures=None) -> pd.DataFrame:
    """Does a measure rank the sets of one IPC as their accuracy does? Per measure and
    ``replicate``: Spearman's rho of the measure against ``accuracy_column`` across the sets
    (methods) of each IPC, times the measure's direction (positive: closer to the data goes with
    more accurate), then the mean over the IPCs where both vary. Columns ``measure``, ``label``,
    ``replicate``, ``rho`` (that mean), ``ipcs`` (IPCs averaged), ``sets`` (the fewest sets of an
    IPC). ``measures``: column names of :data:`MEASURES` (default: those in ``table``) or
    ``{column: (label, direction)}``. A table without a ``replicate`` column is one replicate."""
    from scipy.stats import spearmanr

    if accuracy_column not in table:
        raise ValueError(
            f"no column {accuracy_column!r} in the table (columns: {list(table.columns)}): pass "
            "accuracy_column, e.g. after merging accuracies into the measures table"
        )
    measures = [m for m in MEASURES if m in table] if measures is None else measures
    if not isinstance(measures, dict):
        if unknown := [m for m in measures if m not in MEASURES]:
            raise ValueError(
                f"unknown measures {unknown}: use columns of MEASURES or pass "
                "{column: (label, direction)}"
            )
        measures = {m: MEASURES[m] for m in measures}
    missing = [m for m in measures if m not in table]
    if missing or not measures:
        raise ValueError(
            f"measure columns {missing or 'none'} not in the table: compute them with measures()"
        )
    table = table if "replicate" in table else table.assign(replicate=0)
    rows = []
    for m, (label, direction) in measures.items():
        for r, g in table.groupby("replicate", sort=True):
            rhos, sizes = [], []
            for _, cell in g.groupby("ipc", sort=True):
                x, y = cell[m].to_numpy(float), cell[accuracy_column].to_numpy(float)
                keep = np.isfinite(x) & np.isfinite(y)
                if keep.sum() >= 3 and np.ptp(x[keep]) > 0 and np.ptp(y[keep]) > 0:
                    rhos.append(direction * float(spearmanr(x[keep], y[keep])[0]))
                    sizes.append(int(keep.sum()))
            rows.append(
                {
                    "measure": m,
                    "label": label,
                    "replicate": r,
                    "rho": float(np.mean(rhos)) if rhos else np.nan,
                    "ipcs": len(rhos),
                    "sets": min(sizes) if sizes else 0,
                }
            )
    return pd.DataFrame(rows, columns=["measure", "label", "replicate", "rho", "ipcs", "sets"])


def claims(
    table: pd.DataFrame,
    a: str = "DsCo",
    b: str = "DiT†",
    measure: str = CLAIMED,
    accuracy_column: str = "acc",
) -> dict:
    """The claims of this analysis as ``{claim: Verdict}`` (:func:`dsco.scorecard.record`), on the
    one ``measure`` fixed in advance (default :data:`CLAIMED`; no choice among measures after
    seeing the data, so no correction for a choice is needed). ``table``: :func:`measures` merged
    with each set's accuracy, one row per method, IPC and ``replicate``.

    1. Prop. 1: "at a fixed IPC, the set closer to the real data in ``measure`` trains the more
       accurate model". Per replicate the :func:`within_ipc` rho (Spearman across the methods'
       sets of one IPC, averaged over the IPCs); rule :func:`dsco.verdicts.estimate` above 0 (a
       t-interval over the replicates). The sd is floored at the rho's step: ``12 / (n(n²−1))``
       for ``n`` sets, over the IPCs averaged. Assumes independent replicates (each its own sets
       and trainings).
    2. "NOpt brings the set closer to the real data: ``a`` is closer than ``b`` in ``measure``":
       :func:`dsco.verdicts.superiority` of ``a − b`` with lower is better, paired by
       ``replicate``, one cell per IPC, Holm over the IPCs."""
    from . import verdicts

    label, direction = MEASURES[measure]
    rho = within_ipc(table, accuracy_column, [measure])
    used = rho.dropna(subset=["rho"])
    n, m = (int(used["sets"].min()), int(used["ipcs"].max())) if len(used) else (0, 1)
    step = 12 / (n * (n * n - 1)) / m if n >= 2 else 0.0
    return {
        f"Prop. 1: at a fixed IPC, the set closer to the real data in {label} trains the more "
        "accurate model": verdicts.estimate(
            used["rho"],
            above=0.0,
            what="Spearman ρ (closer to the data, more accurate) within an IPC, mean over IPCs",
            resolution=step,
        ),
        f"NOpt brings the set closer to the real data: {a} is closer than {b} in {label}": (
            verdicts.superiority(table, a, b, on=("ipc",), value=measure, higher=direction > 0)
        ),
    }


def _real_classes(real, wanted, max_real, seed) -> dict:
    """``{class: images}`` of ``real`` (the ``wanted`` classes, default all), each a seeded
    subsample of at most ``max_real`` images (one generator, classes in increasing order, images
    in split order)."""
    if max_real is not None and max_real < 2:
        raise ValueError(
            f"max_real={max_real}: use 2 or more real images per class (or None for all)"
        )
    y, g, out = torch.as_tensor(real.y).long(), torch.Generator().manual_seed(seed), {}
    for c in sorted(set(y.tolist()) if wanted is None else set(y.tolist()) & wanted):
        pool = torch.nonzero(y == c).flatten()
        if len(pool) < 2:
            raise ValueError(
                f"real class {c} has {len(pool)} image: pass a real split with 2 or more per class"
            )
        if max_real is not None and len(pool) > max_real:
            pool = pool[torch.randperm(len(pool), generator=g)[:max_real]].sort().values
        out[c] = _in_memory(real.subset(pool)).x if hasattr(real, "subset") else real.x[pool]
    return out


def _energy(x: torch.Tensor, y: torch.Tensor, xx: float) -> float:
    """The energy distance of flat float64 ``x`` and ``y`` given ``xx``, the mean distance within
    ``x``."""
    return max(2 * _mean_distance(x, y) - xx - _mean_distance(y, y), 0.0)


def _mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean Euclidean distance over all pairs of rows of ``a`` and ``b`` (exact, not via
    a·b)."""
    return float(torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").mean())


def _as_features(features, x: torch.Tensor) -> torch.Tensor:
    """``features(x)`` as an N×D CPU float64 tensor."""
    return torch.as_tensor(features(x)).reshape(len(x), -1).double().cpu()


def _in_memory(s):
    """An in-memory set (``.x``, ``.y``): ``s.in_memory()`` where it exists, else ``s``."""
    return s.in_memory() if hasattr(s, "in_memory") else s
