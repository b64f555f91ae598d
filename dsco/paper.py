"""The paper's reported numbers (Tables 1-13) as pandas DataFrames.

Every numeric cell of Tables 1-12 (Section 5) and Table 13 (Appendix B) was transcribed from
the paper text into ``data/paper/tableNN.csv``, one row per cell, in long form with the columns
:data:`COLUMNS`. ``data/paper/README.md`` documents what each column means per table, the units,
and the places where the text extraction was ambiguous.

Notebooks use :func:`table` to print the paper's value beside this project's, e.g.::

    paper = dsco.paper.table(1)
    paper[(paper.method == "DsCo") & (paper.model == "ResNet-18")]

and :func:`side_by_side` to line both up on shared key columns.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import pandas as pd

from dsco import ROOT

#: Column names, in file order.
COLUMNS = ("table", "dataset", "scenario", "method", "model", "ipc", "setting", "mean", "std")
#: Table numbers that have a CSV (Tables 1-12 in the main text, Table 13 in Appendix B).
TABLES = tuple(range(1, 14))
#: Folder holding ``table01.csv`` ... ``table13.csv``.
DATA_DIR = ROOT / "data" / "paper"

_TEXT = ("dataset", "scenario", "method", "model", "setting")


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
