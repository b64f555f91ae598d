"""The decision rules: how every claim on the scorecard gets its verdict.

A *claim* is one sentence of the paper (or of related work) that a notebook tests; its *verdict* is
one of :data:`VERDICTS`, computed here and nowhere else. A notebook measures, calls one rule per
claim and hands the results to :func:`dsco.scorecard.record`; the prose under a claim is generated
from the recorded verdict (:func:`describe`).

**One design behind every verdict.**

- *Replicates.* A claim about sets is judged on replicates ``r = 0, 1, ...``: replicate ``r`` draws
  the random subset, the synthesis noise and the training seed from ``seed + r``
  (``dsco.grids.grid`` with a ``replicate`` column), so the spread between replicates holds the
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

from .cells import (  # noqa: F401 (re-exported: the rules' vocabulary)
    ALPHA,
    CATEGORIES,
    MIN_PAIRS,
    VerdictError,
    as_list,
    holm,
    judge,
    paired,
    test_cells,
)

#: The verdicts a claim can get, in the scorecard's order.
VERDICTS = ("holds", "holds in part", "within noise", "does not hold", "not measured")


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
    cells = judge(d, on, 0.0, 1 if higher else -1, resolution)
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
    cells = judge(d, on, -margin if higher else margin, 1 if higher else -1, resolution)
    return combine(
        cells,
        f"non-inferiority: paired {a} − {b} ({value}) "
        + (f"above −{margin:g} " if higher else f"below +{margin:g} (lower is better) ")
        + f"(one-sided 97.5 %){_holm_note(cells)}",
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
    cells = judge(d, ["against", *as_list(on)], -delta, 1, resolution)
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
    keys = [*as_list(on), replicate]
    rows = []
    for k, g in frame.groupby(keys, sort=False):
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        if log:
            xs, ys = np.log(xs), np.log(ys)
        if len(np.unique(xs)) >= 2:
            k = k if isinstance(k, tuple) else (k,)
            rows.append(dict(zip(keys, k)) | {"diff": float(np.polyfit(xs, ys, 1)[0])})
    d = pd.DataFrame(rows, columns=[*keys, "diff"])
    cells = judge(d, as_list(on), threshold, -1 if decreasing else 1, resolution)
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
    cells = judge(d, [], threshold, direction, resolution)
    way = "above" if direction > 0 else "below"
    return combine(
        cells, f"estimate: {what or 'the estimate'} {way} {threshold:g}, t over replicates, 95 %"
    )


def equivalent(
    values, target: float, tolerance: float, *, what: str = "", resolution: float = 0.0
) -> Verdict:
    """One quantity measured once per replicate (``values``, e.g. a fitted exponent) equals
    ``target`` within ``tolerance``: two one-sided t-tests at 97.5 % each (the 95 % interval inside
    ``target ± tolerance``: *for*; the interval wholly outside it: *against*). Assumes
    independent, roughly normal replicates."""
    if not tolerance >= 0:
        raise VerdictError(f"tolerance={tolerance}: give the claim's tolerance as a number >= 0")
    d = pd.DataFrame({"diff": np.asarray(values, float).ravel()})
    low = judge(d, [], target - tolerance, 1, resolution)  # above the lower bound
    high = judge(d, [], target + tolerance, -1, resolution)  # below the upper bound
    cells = low.copy()
    if len(cells):
        a, b = low["category"].iloc[0], high["category"].iloc[0]
        cells["category"] = (
            "not measured"
            if a == "not measured"
            else "for"
            if a == b == "for"
            else "against"
            if "against" in (a, b)
            else "undecided"
        )
    name = what or "the estimate"
    return combine(
        cells,
        f"equivalence: {name} within {target:g} ± {tolerance:g} (two one-sided "
        "t-tests over replicates, 95 %)",
    )


def lossless_earlier(
    runs: pd.DataFrame,
    a,
    b,
    full,
    margin: float,
    *,
    by: str = "method",
    on: str = "ipc",
    pair: str = "replicate",
    value: str = "acc",
    resolution: float = 0.0,
) -> Verdict:
    """ "``a`` becomes lossless at a smaller IPC than ``b``": at every IPC (``on``) both methods are
    tested for non-inferiority against ``full`` with ``margin`` (as :func:`non_inferiority`, paired
    by ``pair``; ``full`` needs a row per IPC and replicate, the same training split trained with
    the replicate's seed), Holm over all those tests per direction. With ``k_a`` the smallest IPC
    where ``a`` is shown lossless: *holds* when ``b`` is shown to lose more than the margin at
    ``k_a``; *does not hold* when ``b`` is shown lossless at an IPC at or below every IPC where
    ``a`` is (``b`` no later than ``a``); else *within noise* (or *not measured*)."""
    frames = []
    for m in (a, b):
        d = paired(runs, m, full, by=by, on=[on], pair=pair, value=value).assign(method=str(m))
        frames.append(d)
    tested = judge(pd.concat(frames, ignore_index=True), ["method", on], -margin, 1, resolution)
    cat = tested.set_index(["method", on])["category"]
    ipcs = sorted(tested[on].unique())
    lossless = {m: [k for k in ipcs if cat.get((str(m), k)) == "for"] for m in (a, b)}
    rule = (
        f"lossless earlier: non-inferiority of {a} and {b} against {full} ({value}) above "
        f"−{margin:g} at every {on}, one-sided 97.5 %, Holm over {len(tested)} tests"
    )
    ka = min(lossless[a], default=None)
    kb = min(lossless[b], default=None)
    if (tested["category"] == "not measured").all():
        verdict = "not measured"
    elif kb is not None and (ka is None or kb <= ka):
        verdict = "does not hold"
    elif ka is not None and cat.get((str(b), ka)) == "against":
        verdict = "holds"
    else:
        verdict = "within noise"
    shown = tested[tested["category"] != "not measured"]
    resolution_out = (
        float(shown["half"].max()) if verdict == "within noise" and len(shown) else (float("nan"))
    )
    first = lambda k: f"{on} {k}" if k is not None else "never"  # noqa: E731
    numbers = (
        f"lossless first at {first(ka)} ({a}) and {first(kb)} ({b}) within −{margin:g}; "
        + "; ".join(
            f"{r.method} {on} {r[on]}: {r.estimate:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}] {r.category}"
            for _, r in shown.iterrows()
        )
    )
    if verdict == "within noise":
        numbers += f" · could detect a difference larger than ±{resolution_out:.2g}; none seen"
    return Verdict(
        verdict,
        numbers,
        rule,
        public(tested),
        resolution_out,
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
# Combining cells into the claim's verdict
# ---------------------------------------------------------------------------------------------


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
        public(cells),
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
    """``"+x [lo, hi]"`` with as many digits as the interval's scale needs (0.1 for points of
    accuracy, three significant ones for a small MMD²)."""
    values = [v for v in (r.estimate, r.lo, r.hi) if pd.notna(v)]
    scale = max((abs(v) for v in values), default=0.0)
    fmt = "+.1f" if scale >= 10 else "+.2f" if scale >= 0.1 else "+.2g"
    est = format(r.estimate, fmt)
    return est if pd.isna(r.lo) else f"{est} [{format(r.lo, fmt)}, {format(r.hi, fmt)}]"


def public(cells: pd.DataFrame) -> pd.DataFrame:
    """A claim's cells as a :class:`Verdict` keeps them: the cell's key columns (e.g. ``model``,
    ``ipc``: a notebook can join the categories back to its table), ``cell``, ``n``, ``estimate``,
    ``lo``, ``hi``, ``half`` and ``category`` (the tests' internals dropped)."""
    internal = {"se", "df", "p_for", "p_against", "p_for_holm", "p_against_holm"}
    return cells[[c for c in cells.columns if c not in internal]].reset_index(drop=True)


def _holm_note(cells: pd.DataFrame) -> str:
    m = int((cells["category"] != "not measured").sum()) if len(cells) else 0
    return f", Holm over {m} cells" if m > 1 else ""
