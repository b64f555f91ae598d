"""The decision rules: how every claim on the scorecard gets its verdict.

A *claim* is one sentence of the paper (or of related work) that a notebook tests; its *verdict* is
one of :data:`VERDICTS`, computed here and nowhere else. A notebook measures, calls one rule per
claim and hands the results to :func:`dsco.scorecard.record`; the prose under a claim is generated
from the recorded verdict (:func:`describe`).

**One design behind every verdict.**

- *Replicates.* A claim about sets is judged on replicates ``r = 0, 1, ...``: replicate ``r`` draws
  the random subset, the synthesis noise and the training seed from ``seed + r``
  (``dsco.evaluate.grid`` with a ``replicate`` column), so the spread between replicates holds the
  set-to-set variance as well as the training-to-training one. Two methods are paired by ``r``
  (common random numbers: the same noise seed, initial weights and batch order).
- *Cells.* A claim may cover several cells (architectures × IPCs). Each cell is a paired t-test on
  the replicates' differences; a cell with fewer than :data:`MIN_PAIRS` pairs is *not measured*,
  never "within noise". The paired standard deviation is floored at the measurement's ``resolution``
  (for accuracies, one test image: ``100 / N_test`` points), so equal differences cannot make a
  zero-width interval.
- *Categories.* Every cell falls in exactly one of ``for``, ``against``, ``undecided`` and
  ``not measured``. Over several cells the decisions are corrected with Holm's step-down procedure
  (family-wise error 5 % per direction).
- *The claim's verdict* (:func:`combine`): *not measured* without a measured cell; *does not hold*
  when a cell is against; *holds* when every measured cell is for; *holds in part* when some are for
  and none against; else *within noise*, which always states the smallest difference it could have
  seen: the half-width of the cell's interval at the Holm family's strictest level (Bonferroni), the
  largest over the undecided cells ("could detect a difference larger than ±x; none seen").

**The rules.** :func:`superiority` ("A beats B", two-sided 95 %), :func:`non_inferiority` ("A loses
nothing against B" within a margin fixed per claim), :func:`best_within` (the paper's choice of a
weight is within δ of every other weight of a sweep), :func:`trend` (a slope interval over
replicates), :func:`estimate` (one quantity per replicate against a threshold), :func:`agreement`
(an estimate inside target ± tolerance) and :func:`exact` (a comparison without sampling noise). A ✓
on the page means that the paper's own claim holds at this scale: every rule is called with the
differences oriented so that ``for`` is the paper's side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

#: The verdicts a claim can get, in the scorecard's order.
VERDICTS = ("holds", "holds in part", "within noise", "does not hold", "not measured")
#: The categories of one cell.
CATEGORIES = ("for", "against", "undecided", "not measured")
#: The family-wise error rate of each direction of a claim (two-sided 95 % for one cell).
ALPHA = 0.05
#: Fewer usable replicates (pairs) than this in a cell: the cell is not measured.
MIN_PAIRS = 3


class VerdictError(ValueError):
    """Input a rule cannot judge (duplicated pairing keys, missing columns); the message names the
    fix."""


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict: ``verdict`` (one of :data:`VERDICTS`), ``numbers`` (the evidence in
    words),
    ``rule`` (which rule, over how many cells and replicates), ``cells`` (one row per cell:
    ``cell``,
    ``n``, ``estimate``, ``lo``, ``hi``, ``half``, ``category``) and ``resolution`` (within noise:
    the smallest difference the claim could have detected; else NaN)."""

    verdict: str
    numbers: str
    rule: str
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    resolution: float = float("nan")

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise VerdictError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")

    def cells_json(self) -> str:
        """The cells as JSON (what the scorecard saves beside the verdict)."""
        return json.dumps(
            json.loads(self.cells.to_json(orient="records")) if len(self.cells) else []
        )


# ---------------------------------------------------------------------------------------------
# Rules on paired replicates
# ---------------------------------------------------------------------------------------------


def superiority(
    runs: pd.DataFrame,
    a,
    b,
    *,
    by: str = "method",
    on=("arch", "ipc"),
    pair: str = "replicate",
    value: str = "acc",
    resolution: float = 0.0,
    higher: bool = True,
) -> Verdict:
    """ "``a`` beats ``b``" in every cell of ``on``: the replicates of ``a`` and ``b`` (rows of
    ``runs`` whose ``by`` column names them) paired by ``pair``; per cell a paired two-sided t-test
    of
    ``a − b`` at 95 %, Holm-corrected over the cells. ``higher=False`` when lower ``value`` is
    better (a distance). Assumes the paired differences of a cell are roughly normal and independent
    across replicates (each replicate has its own set and training seed)."""
    d = paired(runs, a, b, by=by, on=on, pair=pair, value=value)
    cells = _judge(d, on, 0.0, 1 if higher else -1, resolution)
    better = "higher" if higher else "lower"
    return combine(
        cells,
        f"superiority: paired t of {a} − {b} ({value}, {better} is better), "
        f"two-sided 95 %{_holm_note(cells)}",
    )


def non_inferiority(
    runs: pd.DataFrame,
    a,
    b,
    margin: float,
    *,
    by: str = "method",
    on=("arch",),
    pair: str = "replicate",
    value: str = "acc",
    resolution: float = 0.0,
    higher: bool = True,
) -> Verdict:
    """ "``a`` loses nothing against ``b``" within ``margin`` (points of ``value``, fixed per
    claim): per cell the one-sided 97.5 % bound of the paired ``a − b``; a cell is *for* when its
    lower bound lies above ``-margin``, *against* when its upper bound lies below ``-margin`` (a
    loss larger than the margin), Holm-corrected over the cells in each direction. Same assumptions
    as
    :func:`superiority`."""
    if not margin >= 0:
        raise VerdictError(f"margin={margin}: give the claim's tolerance as a number >= 0")
    d = paired(runs, a, b, by=by, on=on, pair=pair, value=value)
    cells = _judge(d, on, -margin if higher else margin, 1 if higher else -1, resolution)
    return combine(
        cells,
        f"non-inferiority: paired {a} − {b} ({value}) above −{margin:g} "
        f"(one-sided 97.5 %){_holm_note(cells)}",
    )


def best_within(
    runs: pd.DataFrame,
    choice,
    delta: float,
    *,
    by: str,
    on=("ipc",),
    pair: str = "replicate",
    value: str = "acc",
    resolution: float = 0.0,
) -> Verdict:
    """ "The paper's ``choice`` (a row of a sweep, e.g. λ = 5e-4) is the best": relaxed to *within*
    ``delta`` *of every other setting*. Every other setting ``w`` of ``by`` in every cell of ``on``
    is a non-inferiority comparison ``choice − w`` with margin ``delta``; Holm over all of them.
    *for* where the choice is shown no worse than ``w`` by more than ``delta``, *against* where
    ``w`` is shown better by more than ``delta``."""
    others = [w for w in pd.unique(runs[by]) if w != choice]
    if choice not in set(runs[by]) or not others:
        raise VerdictError(f"best_within needs {choice!r} and at least one other value in {by!r}")
    d = pd.concat(
        [
            paired(runs, choice, w, by=by, on=on, pair=pair, value=value).assign(against=str(w))
            for w in others
        ],
        ignore_index=True,
    )
    cells = _judge(d, ["against", *_as_list(on)], -delta, 1, resolution)
    return combine(
        cells,
        f"best within {delta:g}: non-inferiority of {by} = {choice} against each "
        f"other setting ({value}), one-sided 97.5 %{_holm_note(cells)}",
    )


def trend(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    replicate: str = "replicate",
    on=(),
    decreasing: bool = True,
    threshold: float = 0.0,
    log: bool = False,
    resolution: float = 0.0,
) -> Verdict:
    """A trend claim: the least-squares slope of ``y`` on ``x`` (both logged with ``log``) fitted
    within every replicate (and cell of ``on``), then a one-sample t-interval over the replicates'
    slopes: *for* when it lies below ``threshold`` (``decreasing``; above it otherwise), *against*
    when it lies on the other side. Assumes the replicates' slopes are independent and roughly
    normal; a replicate needs at least two distinct ``x``."""
    keys = [*_as_list(on), replicate]
    rows = []
    for k, g in frame.groupby(keys, sort=False):
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        if log:
            xs, ys = np.log(xs), np.log(ys)
        if len(np.unique(xs)) >= 2:
            k = k if isinstance(k, tuple) else (k,)
            rows.append(dict(zip(keys, k)) | {"diff": float(np.polyfit(xs, ys, 1)[0])})
    d = pd.DataFrame(rows, columns=[*keys, "diff"])
    cells = _judge(d, _as_list(on), threshold, -1 if decreasing else 1, resolution)
    way = "below" if decreasing else "above"
    scale = "log-log " if log else ""
    return combine(
        cells,
        f"trend: {scale}slope of {y} on {x} per {replicate} {way} {threshold:g}, "
        f"t over {replicate}s, 95 %{_holm_note(cells)}",
    )


def estimate(
    values,
    *,
    above: float | None = None,
    below: float | None = None,
    what: str = "",
    resolution: float = 0.0,
) -> Verdict:
    """One quantity measured once per replicate (``values``): *for* when its 95 % t-interval lies
    above ``above`` (or below ``below``: give exactly one), *against* when it lies on the other
    side. Assumes independent, roughly normal replicates."""
    if (above is None) == (below is None):
        raise VerdictError("estimate needs exactly one of above= or below=")
    direction, threshold = (1, above) if above is not None else (-1, below)
    d = pd.DataFrame({"diff": np.asarray(values, float).ravel()})
    cells = _judge(d, [], threshold, direction, resolution)
    way = "above" if direction > 0 else "below"
    return combine(
        cells, f"estimate: {what or 'the estimate'} {way} {threshold:g}, t over replicates, 95 %"
    )


def agreement(
    value: float, se: float, target: float, tolerance: float, *, what: str = ""
) -> Verdict:
    """An estimate ``value`` with standard error ``se`` (e.g. a Monte-Carlo mean) agrees with
    ``target`` within ``tolerance`` (two one-sided tests, 95 %): *holds* when the interval
    ``value ± 1.96·se`` lies inside ``target ± tolerance``, *does not hold* when it lies outside,
    else *within noise*. Assumes a normal estimate (a mean over many draws)."""
    if not (se >= 0 and tolerance >= 0):
        raise VerdictError(f"agreement needs se >= 0 and tolerance >= 0, got {se}, {tolerance}")
    half = stats.norm.ppf(1 - ALPHA / 2) * se
    lo, hi = value - half, value + half
    inside, outside = (
        (target - tolerance <= lo and hi <= target + tolerance),
        (hi < target - tolerance or lo > target + tolerance),
    )
    verdict = "holds" if inside else "does not hold" if outside else "within noise"
    cell = pd.DataFrame(
        [
            {
                "cell": what or "estimate",
                "n": np.nan,
                "estimate": value,
                "lo": lo,
                "hi": hi,
                "half": half,
                "category": {"holds": "for", "does not hold": "against"}.get(verdict, "undecided"),
            }
        ]
    )
    numbers = (
        f"{what + ' ' if what else ''}{value:.4g} [{lo:.4g}, {hi:.4g}] against "
        f"{target:.4g} ± {tolerance:g}"
    )
    return Verdict(
        verdict,
        numbers,
        f"agreement within ±{tolerance:g} (two one-sided tests, 95 %)",
        cell,
        half if verdict == "within noise" else float("nan"),
    )


def exact(holds: bool, numbers: str, *, why: str) -> Verdict:
    """A comparison without sampling noise (an exact formula, a deterministic computation with every
    input fixed): the verdict is the comparison itself. ``why`` says why no noise is involved; the
    rule refuses to be used where a replicate could have varied the answer."""
    if not why:
        raise VerdictError("exact() needs why=: say why the comparison has no sampling noise")
    return Verdict("holds" if holds else "does not hold", numbers, f"exact comparison ({why})")


def not_measured(numbers: str, rule: str = "not measured") -> Verdict:
    """A claim this run could not judge (too few replicates, a missing reference run)."""
    return Verdict("not measured", numbers, rule)


# ---------------------------------------------------------------------------------------------
# The pieces the rules share
# ---------------------------------------------------------------------------------------------


def paired(
    runs: pd.DataFrame, a, b, *, by: str, on=(), pair: str = "replicate", value: str = "acc"
) -> pd.DataFrame:
    """The paired differences ``a − b`` of ``value`` per cell of ``on`` and pairing key
    ``pair``: columns ``*on``, ``pair``, ``diff``. A key present on one side only is dropped; a key
    present twice on one side raises :class:`VerdictError` (the pairing would be ambiguous)."""
    on = _as_list(on)
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


def _judge(d: pd.DataFrame, on, threshold: float, direction: int, resolution: float):
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
    on = _as_list(on)
    groups = d.groupby(on, sort=False) if on else [((), d)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        v = g["diff"].to_numpy(float)
        n = len(v)
        row = dict(zip(on, key)) | {
            "cell": _label(on, key),
            "n": n,
            "estimate": float(v.mean()) if n else np.nan,
        }
        if n >= MIN_PAIRS:
            se = max(float(v.std(ddof=1)), resolution) / np.sqrt(n)
            with np.errstate(divide="ignore", invalid="ignore"):  # se = 0 without a resolution
                t_for = (row["estimate"] - for_above) / se
                t_against = (row["estimate"] - against_below) / se
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


def combine(cells: pd.DataFrame, rule: str) -> Verdict:
    """The claim's verdict from its cells' categories (see the module docstring), with the numbers
    in words: the counts, the smallest detectable difference when within noise, every cell's
    estimate and interval."""
    count = cells["category"].value_counts() if len(cells) else pd.Series(dtype=int)
    k = {c: int(count.get(c, 0)) for c in CATEGORIES}
    measured = len(cells) - k["not measured"]
    undecided = cells[cells["category"] == "undecided"] if len(cells) else cells
    resolution = float(undecided["half"].max()) if len(undecided) else float("nan")
    if not measured:
        verdict = "not measured"
    elif k["against"]:
        verdict = "does not hold"
    elif k["for"] == measured:
        verdict = "holds"
    elif k["for"]:
        verdict = "holds in part"
    else:
        verdict = "within noise"
    n = cells["n"].dropna()
    reps = (
        f"{int(n.min())}–{int(n.max())}"
        if len(n) and n.min() != n.max()
        else (f"{int(n.max())}" if len(n) else "0")
    )
    parts = [
        f"{k['for']}/{len(cells)} cell{'' if len(cells) == 1 else 's'} for, {k['against']} "
        f"against, {k['undecided']} undecided"
        + (
            f", {k['not measured']} not measured (< {MIN_PAIRS} replicates)"
            if k["not measured"]
            else ""
        )
        + f"; {reps} replicates"
    ]
    if verdict == "within noise":
        parts.append(f"could detect a difference larger than ±{resolution:.2g}; none seen")
    shown = cells[cells["category"] != "not measured"].head(8)
    if len(shown):
        parts.append(
            "; ".join(f"{r.cell + ' ' if r.cell else ''}{_interval(r)}" for r in shown.itertuples())
        )
    return Verdict(
        verdict,
        " · ".join(parts),
        rule,
        cells[["cell", "n", "estimate", "lo", "hi", "half", "category"]].reset_index(drop=True),
        resolution if verdict == "within noise" else float("nan"),
    )


def describe(claims: dict) -> str:
    """The verdicts of ``{claim: Verdict}`` as a markdown list: mark, claim, verdict, numbers, rule
    (the prose a notebook shows under its claims)."""
    return "\n".join(
        f"- {MARKS[v.verdict]} **{claim}** — *{v.verdict}*: {v.numbers} <small>({v.rule})</small>"
        for claim, v in claims.items()
    )


#: The mark of each verdict (plain symbols: they render in every font).
MARKS = {
    "holds": "✓",
    "holds in part": "◑",
    "within noise": "○",
    "does not hold": "✗",
    "not measured": "·",
}


def _interval(r) -> str:
    est = f"{r.estimate:+.2f}" if abs(r.estimate) < 10 else f"{r.estimate:+.1f}"
    if pd.isna(r.lo):
        return est
    return f"{est} [{r.lo:+.2f}, {r.hi:+.2f}]"


def _label(on, key) -> str:
    return " ".join(
        f"{k}" if c in ("arch", "model", "method", "row", "against") else f"{c} {k}"
        for c, k in zip(on, key)
    )


def _holm_note(cells: pd.DataFrame) -> str:
    m = int((cells["category"] != "not measured").sum()) if len(cells) else 0
    return f", Holm over {m} cells" if m > 1 else ""


def _as_list(on) -> list:
    return [on] if isinstance(on, str) else list(on)
