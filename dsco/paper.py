"""The paper's reported numbers (Tables 1-13) as pandas DataFrames.

Every numeric cell of Tables 1-12 (Section 5) and Table 13 (Appendix B) was transcribed from
the paper text into ``data/paper/tableNN.csv``, one row per cell, in long form with the columns
:data:`COLUMNS`. ``data/paper/README.md`` documents what each column means per table, the units,
and the places where the text extraction was ambiguous.

Notebooks use :func:`table` to print the paper's value beside this project's, e.g.::

    paper = dsco.paper.table(1)
    paper[(paper.method == "DsCo") & (paper.model == "ResNet-18")]

and :func:`side_by_side` to line both up on shared key columns. The display helpers every table
notebook shares: :func:`pivot` (long ``mean``/``std`` cells -> a wide ``"m ± s"`` table),
:func:`bold_best` (the paper's bold), :func:`difference` (a − b ± √(s_a² + s_b²) per cell: gains,
gaps, drops), :func:`sweep` (the ablation tables' paper-beside-ours layout). They describe; no
verdict is computed here (every claim is judged by a rule of :mod:`dsco.verdicts`).
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
MODELS = {
    "convnet": "ConvNet-6",
    "resnet_ap10": "ResNetAP-10",
    "resnet18": "ResNet-18",
    "timm_resnet18": "ResNet-18",
    "timm_resnet34": "ResNet-34",
    "timm_resnet101": "ResNet-101",
    "efficientnet_b0": "EfficientNet-B0",
    "mobilenetv2_100": "MobileNet-V2",
    "densenet121": "DenseNet-121",
}


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
        dtype={
            "table": "int64",
            "ipc": "Int64",
            "mean": "float64",
            "std": "float64",
            **{c: str for c in _TEXT},
        },
        keep_default_na=False,
        na_values={"ipc": [""], "mean": [""], "std": [""]},
    )
    if tuple(df.columns) != COLUMNS:
        raise ValueError(f"{path} has columns {list(df.columns)}; expected {list(COLUMNS)}")
    return df


def tables() -> pd.DataFrame:
    """All thirteen tables concatenated (use the ``table`` column to tell them apart)."""
    return pd.concat([table(n) for n in TABLES], ignore_index=True)


def side_by_side(
    paper: pd.DataFrame,
    ours: pd.DataFrame,
    on: Sequence[str] = ("method", "model", "ipc"),
    value: str = "mean",
) -> pd.DataFrame:
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
            raise ValueError(
                f"{name} frame lacks column(s) {missing}; pass on=/value= naming "
                "columns both frames have"
            )
    for name, df in frames:
        if df.duplicated(on).any():
            raise ValueError(
                f"keys {on} are not unique in the {name} frame; filter it first or add "
                "a column such as 'setting' or 'scenario' to on="
            )
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
    return (
        f"{mean:.{digits}f}"
        if std is None or pd.isna(std)
        else f"{mean:.{digits}f} ± {std:.{digits}f}"
    )


def pivot(
    long: pd.DataFrame,
    index,
    columns,
    value: str = "mean",
    std: str | None = "std",
    index_order=None,
    column_order=None,
    digits: int = 1,
):
    """A long frame of ``mean``/``std`` cells (ours from :func:`dsco.grids.summary` with
    ``numbers=True``, or a paper table) as a wide table: returns ``(text, means)``, the ``"m ± s"``
    strings and the numbers behind them, in the given row and column orders (missing cells:
    ``–``)."""
    index = [index] if isinstance(index, str) else list(index)
    columns = [columns] if isinstance(columns, str) else list(columns)
    d = long.assign(
        _cell=[
            cell(m, s if std else None, digits)
            for m, s in zip(long[value], long[std] if std and std in long else [None] * len(long))
        ]
    )
    means = d.pivot_table(index=index, columns=columns, values=value, aggfunc="first", sort=False)
    text = d.pivot_table(index=index, columns=columns, values="_cell", aggfunc="first", sort=False)
    if index_order is not None:
        means, text = means.reindex(index=index_order), text.reindex(index=index_order)
    if column_order is not None:
        means, text = means.reindex(columns=column_order), text.reindex(columns=column_order)
    return text.fillna("–"), means


def bold_best(text: pd.DataFrame, means: pd.DataFrame):
    """A pandas Styler of ``text`` with the best (largest) mean of every column in bold; NaN never
    wins."""

    def css(col):
        best = np.nanmax(col.to_numpy(float)) if col.notna().any() else np.nan
        return ["font-weight: bold" if pd.notna(v) and v == best else "" for v in col]

    styles = means.apply(css).set_axis(text.index).set_axis(text.columns, axis=1)
    return text.style.apply(lambda _: styles, axis=None)


def difference(long: pd.DataFrame, a, b, by: str = "method", on=("model", "ipc")) -> pd.DataFrame:
    """``a − b`` per cell of ``on``: the difference of the means and ``std`` = √(s_a² + s_b²) (the
    std of a difference of independent cells; NaN where a side has no std). One row per cell present
    on both sides: the ``on`` columns, ``diff``, ``std``."""
    on = [on] if isinstance(on, str) else list(on)
    x = long[long[by] == a].set_index(on)
    y = long[long[by] == b].set_index(on)
    sx = x["std"] if "std" in x else np.nan
    sy = y["std"] if "std" in y else np.nan
    out = pd.DataFrame({"diff": x["mean"] - y["mean"], "std": np.sqrt(sx**2 + sy**2)})
    return out.dropna(subset=["diff"]).reset_index()


def sweep(ours: pd.DataFrame, paper: pd.DataFrame, row: str, order, ipc_map: dict):
    """Tables 7, 9, 10, 11: one row per configuration, for every IPC of ours the paper's value of
    the same column (``ipc_map``: our IPC -> the paper's) and ours (``mean ± std``). ``paper``'s
    ``ipc`` is the paper's. Returns ``(text, means)`` for :func:`bold_best` (paper and ours are
    separate columns)."""
    cols, text, num = [], {}, {}
    p = paper.set_index([row, "ipc"])["mean"]
    o = ours.set_index([row, "ipc"])
    for ipc, pipc in ipc_map.items():
        head = (
            f"IPC {ipc} (paper {pipc})"
            if (paper["ipc"] == pipc).any()
            else f"IPC {ipc} (no paper column)"
        )
        for src in ("paper", "ours"):
            cols.append((head, src))
            if src == "paper":
                num[(head, src)] = [p.get((r, pipc), np.nan) for r in order]
                text[(head, src)] = [cell(v) for v in num[(head, src)]]
            else:
                num[(head, src)] = [o["mean"].get((r, ipc), np.nan) for r in order]
                text[(head, src)] = [
                    cell(o["mean"].get((r, ipc)), o["std"].get((r, ipc))) for r in order
                ]
    index = pd.Index(order, name=row)
    columns = pd.MultiIndex.from_tuples(cols)
    return pd.DataFrame(text, index=index)[cols].set_axis(columns, axis=1), pd.DataFrame(
        num, index=index
    )[cols].set_axis(columns, axis=1)
