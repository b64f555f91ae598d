"""The paper's reported numbers (Tables 1-13) as pandas DataFrames.

Every numeric cell of Tables 1-12 (Section 5) and Table 13 (Appendix B) was transcribed from
the paper text into ``data/paper/tableNN.csv``, one row per cell, in long form with the columns
:data:`COLUMNS`. ``data/paper/README.md`` documents what each column means per table, the units,
and the places where the text extraction was ambiguous.

Notebooks use :func:`table` to print the paper's value beside this project's, e.g.::

    paper = dsco.paper.table(1)
    paper[(paper.method == "DsCo") & (paper.model == "ResNet-18")]

and :func:`side_by_side` to line both up on shared key columns. The comparison helpers every table
notebook shares: :func:`pivot` (long ``mean``/``std`` cells -> a wide ``"m ± s"`` table), :func:`bold_best`
(the paper's bold), :func:`difference` (a − b ± √(s_a² + s_b²) per cell: gains, gaps, drops),
:func:`wins` / :func:`verdict` (how many cells a claim holds in), :func:`says` (a difference as text,
"within noise" where it is), :func:`sweep` (the ablation tables' paper-beside-ours layout).
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dsco import ROOT

#: Column names, in file order.
COLUMNS = ("table", "dataset", "scenario", "method", "model", "ipc", "setting", "mean", "std")
#: Table numbers that have a CSV (Tables 1-12 in the main text, Table 13 in Appendix B).
TABLES = tuple(range(1, 14))
#: Folder holding ``table01.csv`` ... ``table13.csv``.
DATA_DIR = ROOT / "data" / "paper"

_TEXT = ("dataset", "scenario", "method", "model", "setting")
#: The paper's model name of each of our architectures (``dsco.architectures.ARCHS``); our ConvNet
#: is the paper's ConvNet-6 at 224 px, ConvNet-3 on 8×8 images (``dsco.architectures.label``).
MODELS = {"convnet": "ConvNet-6", "resnet_ap10": "ResNetAP-10", "resnet18": "ResNet-18",
          "timm_resnet18": "ResNet-18", "timm_resnet34": "ResNet-34", "timm_resnet101": "ResNet-101",
          "efficientnet_b0": "EfficientNet-B0", "mobilenetv2_100": "MobileNet-V2", "densenet121": "DenseNet-121"}


def table(n: int) -> pd.DataFrame:
    """Return the paper's Table ``n`` (1..13) as a long-form DataFrame.

    One row per numeric cell. ``ipc`` is a nullable integer (``<NA>`` where the cell has no IPC,
    e.g. full-dataset accuracies or preparation costs); ``mean`` and ``std`` are floats (``std``
    is NaN where the paper prints none). Text columns are ``""`` where not applicable.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) not in TABLES:
        raise ValueError(
            f"no paper table {n!r}: valid table numbers are the integers 1..13 "
            "(Tables 1-12 in Section 5, Table 13 in Appendix B)"
        )
    path = DATA_DIR / f"table{int(n):02d}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: restore data/paper/ from the repository")
    df = pd.read_csv(
        path,
        dtype={"table": "int64", "ipc": "Int64", "mean": "float64", "std": "float64",
               **{c: str for c in _TEXT}},
        keep_default_na=False,
        na_values={"ipc": [""], "mean": [""], "std": [""]},
    )
    if tuple(df.columns) != COLUMNS:
        raise ValueError(f"{path} has columns {list(df.columns)}; expected {list(COLUMNS)}")
    return df


def tables() -> pd.DataFrame:
    """All thirteen tables concatenated (use the ``table`` column to tell them apart)."""
    return pd.concat([table(n) for n in TABLES], ignore_index=True)


def side_by_side(paper: pd.DataFrame, ours: pd.DataFrame,
                 on: Sequence[str] = ("method", "model", "ipc"), value: str = "mean") -> pd.DataFrame:
    """Line up the paper's ``value`` with ours on the key columns ``on``.

    Returns the rows whose keys appear in both frames, with columns ``*on``,
    ``<value>_paper``, ``<value>_ours`` and ``diff`` (ours minus paper), in the paper's row order.
    Keys must identify one row on each side; otherwise add a column (e.g. ``"setting"``) to ``on``.
    """
    on = list(on)
    frames = (("paper", paper), ("ours", ours))
    for name, df in frames:
        missing = [c for c in on + [value] if c not in df.columns]
        if missing:
            raise ValueError(f"{name} frame lacks column(s) {missing}; pass on=/value= naming "
                             "columns both frames have")
    for name, df in frames:
        if df.duplicated(on).any():
            raise ValueError(f"keys {on} are not unique in the {name} frame; filter it first or add "
                             "a column such as 'setting' or 'scenario' to on=")
    left = paper[on + [value]].rename(columns={value: f"{value}_paper"})
    right = ours[on + [value]].rename(columns={value: f"{value}_ours"})
    out = left.merge(right, on=on, how="inner", sort=False)
    out["diff"] = out[f"{value}_ours"] - out[f"{value}_paper"]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Comparing: the paper's numbers beside ours (every table notebook uses these)
# ---------------------------------------------------------------------------------------------

def cell(mean: float, std: float | None = None, digits: int = 1) -> str:
    """``"m ± s"`` (or ``"m"`` where there is no std, ``"–"`` where there is no mean)."""
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" if std is None or pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def pivot(long: pd.DataFrame, index, columns, value: str = "mean", std: str | None = "std",
          index_order=None, column_order=None, digits: int = 1):
    """A long frame of ``mean``/``std`` cells (ours from :func:`dsco.evaluate.summary` with
    ``numbers=True``, or a paper table) as a wide table: returns ``(text, means)``, the ``"m ± s"``
    strings and the numbers behind them, in the given row and column orders (missing cells: ``–``)."""
    index = [index] if isinstance(index, str) else list(index)
    columns = [columns] if isinstance(columns, str) else list(columns)
    d = long.assign(_cell=[cell(m, s if std else None, digits) for m, s in
                           zip(long[value], long[std] if std and std in long else [None] * len(long))])
    means = d.pivot_table(index=index, columns=columns, values=value, aggfunc="first", sort=False)
    text = d.pivot_table(index=index, columns=columns, values="_cell", aggfunc="first", sort=False)
    if index_order is not None:
        means, text = means.reindex(index=index_order), text.reindex(index=index_order)
    if column_order is not None:
        means, text = means.reindex(columns=column_order), text.reindex(columns=column_order)
    return text.fillna("–"), means


def bold_best(text: pd.DataFrame, means: pd.DataFrame):
    """A pandas Styler of ``text`` with the best (largest) mean of every column in bold; NaN never wins."""
    def css(col):
        best = np.nanmax(col.to_numpy(float)) if col.notna().any() else np.nan
        return ["font-weight: bold" if pd.notna(v) and v == best else "" for v in col]
    styles = means.apply(css).set_axis(text.index).set_axis(text.columns, axis=1)
    return text.style.apply(lambda _: styles, axis=None)


def difference(long: pd.DataFrame, a, b, by: str = "method", on=("model", "ipc")) -> pd.DataFrame:
    """``a − b`` per cell of ``on``: the difference of the means and ``std`` = √(s_a² + s_b²) (the std of
    a difference of independent cells; NaN where a side has no std). One row per cell present on
    both sides: the ``on`` columns, ``diff``, ``std``."""
    on = [on] if isinstance(on, str) else list(on)
    x = long[long[by] == a].set_index(on)
    y = long[long[by] == b].set_index(on)
    sx = x["std"] if "std" in x else np.nan
    sy = y["std"] if "std" in y else np.nan
    out = pd.DataFrame({"diff": x["mean"] - y["mean"], "std": np.sqrt(sx ** 2 + sy ** 2)})
    return out.dropna(subset=["diff"]).reset_index()


def wins(long: pd.DataFrame, a, b, by: str = "method", on=("model", "ipc")) -> tuple[int, int]:
    """``(cells where a's mean is above b's, cells compared)``."""
    d = difference(long, a, b, by, on)
    return int((d["diff"] > 0).sum()), len(d)


def verdict(k: int, n: int) -> str:
    """"holds" (every cell), "holds in most cells" or "does not hold"."""
    return "holds" if n and k == n else ("holds in most cells" if k > n / 2 else "does not hold")


def finding(k: int, n: int, what: str = "cells") -> tuple[str, str]:
    """A claim counted over ``n`` comparisons of which ``k`` went its way: ``(verdict, "k/n what")``, the
    form :func:`dsco.plots.carries_over` compares across datasets."""
    return verdict(k, n), f"{k}/{n} {what}"


def paired(runs: pd.DataFrame, a, b, by: str = "method", on=("model", "ipc"), pair: str = "run_seed",
           value: str = "acc") -> pd.DataFrame:
    """``a − b`` per cell of ``on`` from the individual trainings of a :func:`dsco.evaluate.grid` result,
    paired by ``pair`` (the trainings of two methods with the same seed share initial weights and batch
    order): the mean paired difference ``diff``, its 95 % t-interval ``lo``..``hi`` (NaN with one pair),
    the pairs ``n`` and ``verdict``: "a better" / "b better" when the interval excludes 0, else "within
    noise" (also with a single pair: one training decides nothing)."""
    from scipy import stats

    on = [on] if isinstance(on, str) else list(on)
    x = runs[runs[by] == a].set_index(on + [pair])[value]
    y = runs[runs[by] == b].set_index(on + [pair])[value]
    d = (x - y).dropna().groupby(level=on, sort=False)
    out = d.agg(diff="mean", sd="std", n="size").reset_index()
    half = stats.t.ppf(0.975, (out["n"] - 1).clip(lower=1)) * out["sd"] / np.sqrt(out["n"])
    half = half.where(out["n"] > 1)
    out["lo"], out["hi"] = out["diff"] - half, out["diff"] + half
    out["verdict"] = np.where(out["lo"] > 0, "a better", np.where(out["hi"] < 0, "b better", "within noise"))
    return out.drop(columns="sd")


def paired_claims(runs: pd.DataFrame, pairs, by: str = "method", on=("model", "ipc"), pair: str = "run_seed",
                  value: str = "acc") -> dict:
    """``{"a > b": (verdict, numbers)}`` for every ``(a, b)`` of ``pairs`` from :func:`paired`: "holds" when
    a is significantly better in every cell, "holds in most cells" in more than half, "within noise" when
    no cell is significantly worse, else "does not hold"; the numbers count the cells each way."""
    out = {}
    for a, b in pairs:
        p = paired(runs, a, b, by, on, pair, value)
        better, worse, n = int((p["verdict"] == "a better").sum()), int((p["verdict"] == "b better").sum()), len(p)
        v = tally(better, worse, n)
        out[f"{a} > {b}"] = (v, f"{better}/{n} better, {worse} worse (paired 95 %, {_trainings(p)})")
    return out


def not_worse_claims(runs: pd.DataFrame, pairs, by: str = "method", on=("model",), pair: str = "run_seed",
                     value: str = "acc", margin: float = 0.5) -> dict:
    """``{"a loses nothing against b": (verdict, numbers)}`` for every ``(a, b)`` of ``pairs`` (a lossless
    claim, a non-inferiority test) from :func:`paired`. A cell of ``on`` is "not worse" when its 95 %
    interval of a − b lies above ``-margin`` (default 0.5 points: the paper counts DsCo's 0.4-point losses
    in Table 6 as lossless) and "worse" when it lies below 0; the rest, and every single training, are
    undecided. The verdict counts them with :func:`tally`: "holds" when every cell is not worse, "within
    noise" when none is either, "does not hold" when a cell is worse and fewer than half are not."""
    on = [on] if isinstance(on, str) else list(on)
    out = {}
    for a, b in pairs:
        p = paired(runs, a, b, by, on, pair, value)
        fine, worse, n = int((p["lo"] > -margin).sum()), int((p["hi"] < 0).sum()), len(p)
        cells = "; ".join(f"{' '.join(str(r[c]) for c in on)} {interval(r)}" for _, r in p.iterrows())
        out[f"{a} loses nothing against {b}"] = (
            tally(fine, worse, n),
            f"{fine}/{n} within {margin} points, {worse} worse (paired 95 %, {_trainings(p)}): {cells}")
    return out


def _trainings(p: pd.DataFrame) -> str:
    """``"k training(s)"``: the fewest pairs behind a cell of a :func:`paired` frame (0 without cells)."""
    t = int(p["n"].min()) if len(p) else 0
    return f"{t} training{'' if t == 1 else 's'}"


def by_interval(lo: float, hi: float) -> str:
    """The verdict of a claim "x > 0" from the 95 % interval ``lo``..``hi`` of x: "holds" when the interval
    lies above 0, "does not hold" when below, "within noise" when it covers 0."""
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "within noise"


def tally(better: int, worse: int, n: int) -> str:
    """The verdict of "a beats b" over ``n`` cells, ``better`` of them significantly in a's favour and
    ``worse`` in b's: "holds" (every cell), "holds in most cells" (more than half), "within noise"
    (none significantly worse), else "does not hold"."""
    return ("holds" if n and better == n else "holds in most cells" if better > n / 2
            else "within noise" if not worse else "does not hold")


def interval(row) -> str:
    """``"+x.x [lo, hi]"`` for a row of :func:`paired` (``"+x.x (one training)"`` without an interval)."""
    if pd.isna(row["lo"]):
        return f"{row['diff']:+.1f} (one training)"
    note = " (within noise)" if row["verdict"] == "within noise" else ""
    return f"{row['diff']:+.1f} [{row['lo']:+.1f}, {row['hi']:+.1f}]{note}"


def says(diff: float, std: float, runs: int = 2) -> str:
    """``"+x.x ± y.y"`` for a difference and its std, with "(within noise)" where |diff| <= std (and
    more than one run per cell makes the std meaningful)."""
    note = " (within noise)" if runs >= 2 and pd.notna(std) and abs(diff) <= std else ""
    return f"{diff:+.1f} ± {std:.1f}{note}" if pd.notna(std) else f"{diff:+.1f}"


def sweep(ours: pd.DataFrame, paper: pd.DataFrame, row: str, order, ipc_map: dict):
    """Tables 7, 9, 10, 11: one row per configuration, for every IPC of ours the paper's value of the
    same column (``ipc_map``: our IPC -> the paper's) and ours (``mean ± std``). ``paper``'s ``ipc`` is
    the paper's. Returns ``(text, means)`` for :func:`bold_best` (paper and ours are separate columns)."""
    cols, text, num = [], {}, {}
    p = paper.set_index([row, "ipc"])["mean"]
    o = ours.set_index([row, "ipc"])
    for ipc, pipc in ipc_map.items():
        head = f"IPC {ipc} (paper {pipc})" if (paper["ipc"] == pipc).any() else f"IPC {ipc} (no paper column)"
        for src in ("paper", "ours"):
            cols.append((head, src))
            if src == "paper":
                num[(head, src)] = [p.get((r, pipc), np.nan) for r in order]
                text[(head, src)] = [cell(v) for v in num[(head, src)]]
            else:
                num[(head, src)] = [o["mean"].get((r, ipc), np.nan) for r in order]
                text[(head, src)] = [cell(o["mean"].get((r, ipc)), o["std"].get((r, ipc))) for r in order]
    index = pd.Index(order, name=row)
    columns = pd.MultiIndex.from_tuples(cols)
    return pd.DataFrame(text, index=index)[cols].set_axis(columns, axis=1), \
        pd.DataFrame(num, index=index)[cols].set_axis(columns, axis=1)
