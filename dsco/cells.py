"""The statistics of one claim's cells: paired differences, the one-sample t-test with a floored
standard deviation, and Holm's correction over the cells (the pieces the rules of
:mod:`dsco.verdicts` share).

A *cell* is one comparison of a claim (an architecture at an IPC, a weight against the paper's
choice). :func:`paired` pairs two methods' replicates; :func:`test_cells` tests every cell against a
threshold in both directions and puts it in exactly one category of :data:`CATEGORIES`; :func:`holm`
adjusts a family of p-values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

#: The categories of one cell.
CATEGORIES = ("for", "against", "undecided", "not measured")
#: The family-wise error rate of each direction of a claim (two-sided 95 % for one cell).
ALPHA = 0.05
#: Fewer usable replicates (pairs) than this in a cell: the cell is not measured.
MIN_PAIRS = 3


class VerdictError(ValueError):
    """Input a rule cannot judge (duplicated pairing keys, missing columns); the message names the
    fix."""


def paired(
    runs: pd.DataFrame, a, b, *, by: str, on=(), pair: str = "replicate", value: str = "acc"
) -> pd.DataFrame:
    """The paired differences ``a − b`` of ``value`` per cell of ``on`` and pairing key
    ``pair``: columns ``*on``, ``pair``, ``diff``. A key present on one side only is dropped; a key
    present twice on one side raises :class:`VerdictError` (the pairing would be ambiguous)."""
    on = as_list(on)
    missing = [c for c in (by, pair, value, *on) if c not in runs.columns]
    if missing:
        raise VerdictError(
            f"runs lack column(s) {missing}: pass by=/on=/pair=/value= naming columns "
            f"of the frame ({', '.join(map(str, runs.columns))})"
        )
    sides = []
    for name in (a, b):
        side = runs[runs[by] == name]
        dup = side[side.duplicated(on + [pair], keep=False)]
        if len(dup):
            keys = dup[on + [pair]].drop_duplicates().head(3).to_dict("records")
            raise VerdictError(
                f"{by}={name!r} has several rows for the pairing key(s) {keys}: each "
                f"cell needs one row per {pair} (average repeats first)"
            )
        sides.append(side.set_index(on + [pair])[value])
    return (sides[0] - sides[1]).dropna().rename("diff").reset_index()


def judge(d: pd.DataFrame, on, threshold: float, direction: int, resolution: float):
    """:func:`test_cells` of ``d["diff"]`` for the claim "diff > threshold" (``direction`` 1) or
    "diff < threshold" (-1): the lower claim is tested on the negated values, and the cells'
    estimates and intervals are given back in the values' own orientation."""
    flipped = d.assign(diff=direction * d["diff"])
    t = direction * threshold
    cells = test_cells(flipped, on, for_above=t, against_below=t, resolution=resolution)
    if direction < 0 and len(cells):
        cells[["estimate", "lo", "hi"]] = -cells[["estimate", "hi", "lo"]].to_numpy()
    return cells


def test_cells(
    d: pd.DataFrame,
    on,
    *,
    for_above: float,
    against_below: float,
    resolution: float = 0.0,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Per cell of ``on`` (all rows when empty) the one-sample t-test of ``d["diff"]``: ``n``, the
    mean ``estimate``, the 95 % interval ``lo``..``hi``, ``half`` (the half-width at the Holm
    family's strictest level α / (2m)), one-sided p-values for ``mean > for_above`` and ``mean <
    against_below``, their Holm-adjusted values, and the ``category``. The sd is floored at
    ``resolution``; fewer than :data:`MIN_PAIRS` values: not measured."""
    on = as_list(on)
    groups = d.groupby(on, sort=False) if on else [((), d)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        v = g["diff"].to_numpy(float)
        n = len(v)
        row = dict(zip(on, key)) | {
            "cell": label(on, key),
            "n": n,
            "estimate": float(v.mean()) if n else np.nan,
        }
        if n >= MIN_PAIRS:
            se = max(float(v.std(ddof=1)), resolution) / np.sqrt(n)
            with np.errstate(divide="ignore", invalid="ignore"):  # se = 0 without a resolution
                t_for = np.nan_to_num((row["estimate"] - for_above) / se, nan=0.0)
                t_against = np.nan_to_num((row["estimate"] - against_below) / se, nan=0.0)
            row |= {
                "se": se,
                "df": n - 1,
                "p_for": float(stats.t.sf(t_for, n - 1)),
                "p_against": float(stats.t.cdf(t_against, n - 1)),
            }
        rows.append(row)
    cells = pd.DataFrame(rows)
    if cells.empty:
        return pd.DataFrame(columns=["cell", "n", "estimate", "lo", "hi", "half", "category"])
    for col in ("se", "df", "p_for", "p_against"):
        if col not in cells:
            cells[col] = np.nan
    measured = cells["p_for"].notna()
    m = int(measured.sum())
    t95 = stats.t.ppf(1 - alpha / 2, cells["df"])
    cells["lo"] = cells["estimate"] - t95 * cells["se"]
    cells["hi"] = cells["estimate"] + t95 * cells["se"]
    cells["half"] = stats.t.ppf(1 - alpha / (2 * max(m, 1)), cells["df"]) * cells["se"]
    cells["p_for_holm"], cells["p_against_holm"] = np.nan, np.nan
    if m:
        cells.loc[measured, "p_for_holm"] = holm(cells.loc[measured, "p_for"])
        cells.loc[measured, "p_against_holm"] = holm(cells.loc[measured, "p_against"])
    level = alpha / 2
    cells["category"] = np.select(
        [~measured, cells["p_for_holm"] < level, cells["p_against_holm"] < level],
        ["not measured", "for", "against"],
        "undecided",
    )
    return cells


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control for any dependence)."""
    p = np.asarray(p, float)
    adj, running = np.empty_like(p), 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def label(on, key) -> str:
    return " ".join(
        f"{k}" if c in ("arch", "model", "method", "row", "against") else f"{c} {k}"
        for c, k in zip(on, key)
    )


def as_list(on) -> list:
    return [on] if isinstance(on, str) else list(on)
