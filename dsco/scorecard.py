"""The claims scorecard: every claim the notebooks test, with its verdict on every dataset.

A notebook judges each claim with a rule of :mod:`dsco.verdicts` (never by hand) and saves the
results with :func:`record`: ``verdicts_<notebook>.csv`` beside its other results, with the usual
provenance sidecar (commit, date, parameters). The book's first page is generated from those files
alone (:func:`collect`, :func:`page`), one column per dataset whose batch of the profile was run:
nothing on it is typed by hand, only notebooks of the build are shown (the runner deletes a
notebook's verdicts before it executes it), and a claim reads *not measured* on a dataset whose run
did not record it. In the ``smoke`` profile every verdict is recorded as *not measured (smoke)*: the
smoke sizes test the code path, not the claims (the rule's own answer is kept as ``computed``).
:func:`carries_over` sets a notebook's verdicts beside those of its run on another dataset.
"""

from __future__ import annotations

import html
import json

import pandas as pd

from . import DATASETS, results
from .verdicts import MARKS, VERDICTS, Verdict, describe

#: The profile whose verdicts are recorded as not measured (its sizes only exercise the code).
SMOKE = "smoke"
#: What the page says above a smoke scorecard.
SMOKE_BANNER = (
    "**Smoke profile: nothing here is a finding.** The smoke sizes (a few NOpt "
    "iterations, few replicates, tens of optimiser steps) test that every notebook runs; "
    "every verdict reads *not measured (smoke)*. Build the book of the `paper` profile "
    "for the verdicts."
)
COLUMNS = [
    "claim",
    "section",
    "notebook",
    "verdict",
    "computed",
    "numbers",
    "rule",
    "resolution",
    "cells",
]


def record(claims: dict, notebook: str, section: str, show: bool = True) -> pd.DataFrame:
    """Save the verdicts of one notebook run: ``claims`` maps each claim (one sentence of the paper,
    worded so that *holds* means the paper is right, e.g. "DsCo > Random") to the
    :class:`~dsco.verdicts.Verdict` a rule of :mod:`dsco.verdicts` returned; ``notebook`` is the
    notebook's file stem (the scorecard links to its page), ``section`` the paper section or related
    work the claim comes from. With ``show`` the verdicts are displayed as a list (end the notebook
    line with ``;``). Returns the saved frame, one row per claim."""
    if not claims:
        raise ValueError(f"{notebook}: no claims to record; pass {{claim: Verdict}}")
    smoke = results.current("profile") == SMOKE
    rows = []
    for claim, v in claims.items():
        if not isinstance(v, Verdict):
            raise TypeError(
                f"{notebook}: {claim!r} has {type(v).__name__}, not a Verdict: judge it "
                "with a rule of dsco.verdicts"
            )
        rows.append(
            {
                "claim": claim,
                "section": section,
                "notebook": notebook,
                "verdict": "not measured" if smoke else v.verdict,
                "computed": v.verdict,
                "numbers": v.numbers,
                "rule": v.rule,
                "resolution": v.resolution,
                "cells": v.cells_json(),
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS).set_index("claim")
    results.save(frame, f"verdicts_{notebook}")
    if show:
        from IPython.display import Markdown, display

        banner = (
            SMOKE_BANNER.replace("every verdict", "each verdict below") + "\n\n" if smoke else ""
        )
        display(Markdown(banner + describe(claims)))
    return frame


def carries_over(notebook: str, other: str | None) -> pd.DataFrame | str:
    """This run's recorded verdicts of ``notebook`` beside the ones its run on the dataset ``other``
    recorded (same profile): one row per claim with both verdicts and numbers and ``carries over``
    ("yes" where the verdicts agree, "no" where they differ, "–" where either is not measured). A
    one-line note instead when there is nothing to compare with."""
    dataset, profile = results.current("dataset"), results.current("profile")
    if other in (None, ""):
        return "no other dataset to compare with (compare_with = None)"
    if other == dataset:
        return (
            f"compare_with = {other!r} is this run's own dataset: set it to another dataset "
            "to compare with"
        )
    mine, theirs = (
        results.results_dir(d, profile) / f"verdicts_{notebook}.csv" for d in (dataset, other)
    )
    if not mine.is_file():
        return f"{notebook} recorded no verdicts in this run yet"
    if not theirs.is_file():
        return (
            f"no {other} verdicts to compare with: run `dsco run --dataset {other} --profile "
            f"{profile} --only {notebook[:2]}` first ({theirs} is missing)"
        )
    a, b = (pd.read_csv(p, keep_default_na=False).set_index("claim") for p in (mine, theirs))
    out = pd.DataFrame({dataset: a["verdict"], f"{dataset}: numbers": a["numbers"]})
    out[other] = b["verdict"].reindex(out.index).fillna("not measured")
    out[f"{other}: numbers"] = b["numbers"].reindex(out.index).fillna("")
    unmeasured = (out[dataset] == "not measured") | (out[other] == "not measured")
    out["carries over"] = [
        "–" if u else "yes" if x == y else "no"
        for u, x, y in zip(unmeasured, out[dataset], out[other])
    ]
    return out


def collect(profile: str, datasets=None, present=None, base=None) -> pd.DataFrame:
    """Every verdict recorded by runs of ``profile`` (on ``datasets``, default all of them; only the
    notebooks whose stems are in ``present`` when given) under ``base`` (default: where runs save,
    :func:`dsco.results.results_dir`): one row per (dataset, claim) with the columns of
    :data:`COLUMNS` and the run's ``saved_at`` and ``git_commit`` (from the sidecar)."""
    frames = []
    for name in datasets or DATASETS:
        for path in sorted(results.results_dir(name, profile, base).glob("verdicts_*.csv")):
            if present is not None and path.stem.removeprefix("verdicts_") not in set(present):
                continue
            frame = pd.read_csv(path, keep_default_na=False)
            side = path.with_suffix(".json")
            meta = json.loads(side.read_text()) if side.is_file() else {}
            frames.append(
                frame.assign(
                    dataset=name,
                    saved_at=meta.get("saved_at", ""),
                    git_commit=meta.get("git_commit") or "",
                )
            )
    columns = ["dataset", *COLUMNS, "saved_at", "git_commit"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    for col in columns:
        if col not in out:
            out[col] = ""
    return out[columns]


def table(long: pd.DataFrame) -> pd.DataFrame:
    """The scorecard as a frame: one row per claim (index notebook, section, claim, in notebook
    order) and, per dataset of ``long`` (:func:`collect`), its verdict and numbers ("not measured" /
    "" where that run recorded none)."""
    if long.empty:
        return pd.DataFrame()
    keys = ["notebook", "section", "claim"]
    order = long[keys].drop_duplicates().sort_values("notebook", kind="stable")
    out = order.set_index(keys)
    for name, d in long.groupby("dataset", sort=False):
        d = d.drop_duplicates(keys, keep="last").set_index(keys)
        out[name] = d["verdict"].reindex(out.index).fillna("not measured")
        out[f"{name}: numbers"] = d["numbers"].reindex(out.index).fillna("")
    return out


def runs(long: pd.DataFrame, profile: str) -> pd.DataFrame:
    """What stands behind each dataset column: profile, the commits and dates of the runs, and how
    many replicates the claims' cells rest on (from the recorded cells)."""
    rows = []
    for name, d in long.groupby("dataset", sort=False):
        n = [
            c["n"]
            for cells in d["cells"]
            for c in json.loads(cells or "[]")
            if c.get("n") == c.get("n") and c.get("n")  # not NaN, None or 0 (a cell with no data)
        ]
        commits = sorted({c[:10] for c in d["git_commit"] if c})
        dates = sorted({s[:10] for s in d["saved_at"] if s})
        rows.append(
            {
                "dataset": name,
                "profile": profile,
                "commit": ", ".join(commits) or "unknown",
                "date": " – ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else "",
                "replicates": (
                    f"{int(min(n))}–{int(max(n))}"
                    if n and min(n) != max(n)
                    else f"{int(max(n))}"
                    if n
                    else "–"
                ),
                "notebooks": d["notebook"].nunique(),
                "claims": len(d),
            }
        )
    return pd.DataFrame(rows)


def page(profile: str, present=(), datasets=None, status=None, base=None, shipped=None) -> str:
    """The book's scorecard page (MyST markdown) for ``profile``: title, the smoke banner where it
    applies, how to read it, what stands behind each column (:func:`runs`), the counts and one
    compact table: a mark per dataset, the verdict and its numbers on expand. ``status``:
    ``{dataset: frame of dsco.reference.compare}`` adds, per dataset, how every claim compares
    with the shipped reference run (*reproduced*, *changed*, *new*); ``shipped``: ``{dataset: one
    line}`` for a book that renders the reference run itself (:func:`dsco.reference.describe`).
    ``base``: where the results are (:func:`collect`)."""
    long = collect(profile, datasets, present, base)
    status = status or {}
    smoke = profile == SMOKE
    head = "# Claims scorecard\n\n" + (f"```{{warning}}\n{SMOKE_BANNER}\n```\n\n" if smoke else "")
    head += (
        "Every claim a notebook of this book tests -- the paper's, and the related work's -- with "
        "its verdict at this scale, one column per dataset whose batch was run in the "
        f"**{profile}** profile. A ✓ means the paper's own claim holds here. Every verdict comes "
        "from one rule of `dsco.verdicts` (paired replicates that vary the set and the training "
        "seed; 95 %; Holm over the cells of a claim; fewer than 3 replicates: *not measured*); "
        "*within noise* says the smallest difference the run could have detected. Generated from "
        "the verdicts the executed notebooks recorded (`dsco.scorecard.record`), never typed by "
        "hand; open a cell for its numbers.\n\n"
    )
    if long.empty:
        return head + (
            "No executed notebook has recorded a verdict for this profile yet: run the "
            "batch (`dsco run --dataset … --profile …`) and build the book again.\n"
        )
    shown = long.assign(verdict="not measured (smoke)") if smoke else long
    counts = shown.groupby("dataset", sort=False)["verdict"].value_counts().unstack(fill_value=0)
    order = [v for v in (*VERDICTS, "not measured (smoke)") if v in counts.columns]
    columns = {}  # one column per dataset, as in the claims table below: it fits the page
    for r in runs(long, profile).itertuples():
        c = counts.loc[r.dataset]
        s = status.get(r.dataset)
        against = (
            (shipped or {}).get(r.dataset, "none shipped")
            if s is None
            else "<br>".join(
                f"{int((s['status'] == k).sum())} {k}" for k in ("reproduced", "changed", "new")
            )
            + (f"<br>**{int(s['flipped'].sum())} flipped**" if s["flipped"].any() else "")
        )
        columns[r.dataset] = {
            "profile": r.profile,
            "commit": "<br>".join(f"`{k}`" for k in r.commit.split(", ")),
            "date": r.date,
            "replicates": r.replicates,
            "claims (notebooks)": f"{r.claims} ({r.notebooks})",
            "verdicts": "<br>".join(f"{c[v]} {v}" for v in order if c[v]),
            "against the reference run": against,
        }
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (1 + len(columns)) + "|"]
    for field in next(iter(columns.values())):
        lines.append(f"| {field} | " + " | ".join(col[field] for col in columns.values()) + " |")
    return head + "\n".join(lines) + "\n\n" + html_table(shown, set(present), status) + "\n"


def html_table(long: pd.DataFrame, present=frozenset(), status=None) -> str:
    """The claims as one HTML table that fits the page's content column: claim (with its section
    and a link to its notebook when it is in this build), then per dataset a mark and the verdict
    whose numbers open on a click, and how it compares with the reference run (``status``, as in
    :func:`page`)."""
    wide = table(long)
    status = {name: s.set_index(["notebook", "claim"]) for name, s in (status or {}).items()}
    names = [c for c in wide.columns if not c.endswith(": numbers")]
    marks = MARKS | {"not measured (smoke)": "·"}
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for (stem, section, claim), row in wide.iterrows():
        link = (
            f'<a href="notebooks/{stem}.html">{html.escape(stem[:2])}</a>'
            if stem in present
            else html.escape(stem[:2])
        )
        cells = []
        for n in names:
            v, numbers = row[n], row[f"{n}: numbers"]
            label = f"{marks.get(v, '·')} {html.escape(v)}"
            if n in status and (stem, claim) in status[n].index:
                s = status[n].loc[(stem, claim)]
                why = f": {s['why']}" if s["why"] else ""
                label += f"<br><small>{'⚠ flipped, ' if s['flipped'] else ''}{s['status']}"
                label += f"{html.escape(why)}</small>"
            cells.append(
                f"<td><details><summary>{label}</summary><small>{html.escape(numbers)}"
                "</small></details></td>"
                if numbers
                else f"<td>{label}</td>"
            )
        rows.append(
            f"<tr><td>{html.escape(claim)}<br><small>{html.escape(section)} · notebook "
            f"{link}</small></td>{''.join(cells)}</tr>"
        )
    legend = " · ".join(f"{mark} {v}" for v, mark in MARKS.items())
    return (
        '<table class="scorecard">\n<thead><tr><th>claim</th>'
        + head
        + "</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + f"\n</tbody>\n</table>\n\n{legend}"
    )
