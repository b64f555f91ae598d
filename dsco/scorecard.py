"""The claims scorecard: every claim the notebooks test, its verdict on every dataset whose batch ran.

A notebook states its claims as ``{claim: (verdict, numbers)}`` -- the form of
:func:`dsco.paper.paired_claims`, :func:`dsco.paper.finding` and :func:`dsco.doping.trigger_findings` --
and saves them with :func:`record` (``verdicts_<notebook>.csv`` beside its other results, with the
usual provenance sidecar). The book's scorecard page is generated from those files alone
(:func:`collect`, :func:`markdown`), one column per dataset whose batch of the profile was run: nothing
on it is typed by hand, and a claim reads *not measured* on a dataset whose run did not record it.

A verdict is one of :data:`VERDICTS`. Where a claim compares trainings ("A beats B") the verdict rests
on paired differences with their 95 % interval (:func:`dsco.paper.paired`): "within noise" when the
interval covers zero, whatever the means say.
"""
from __future__ import annotations

import json

import pandas as pd

from . import DATASETS

#: The verdicts a claim can get (the page counts them in this order).
VERDICTS = ("holds", "holds in most cells", "within noise", "does not hold", "not measured")
_MARK = {"holds": "✓", "holds in most cells": "◑", "within noise": "○", "does not hold": "✗",
         "not measured": "·"}   # plain symbols: they render in every font (emoji need an emoji font)


def record(claims: dict, notebook: str, section: str, show: bool = True) -> pd.DataFrame:
    """Save the verdicts of one notebook run: ``claims`` maps each claim (one sentence, e.g. "DsCo >
    Random") to ``(verdict, numbers)``; ``notebook`` is the notebook's file stem (the scorecard links
    to its page), ``section`` the paper section or related work the claim comes from. With ``show``
    the verdicts are displayed as a list (end the notebook line with ``;``). Returns the saved frame,
    one row per claim."""
    from .plots import save

    if not claims:
        raise ValueError(f"{notebook}: no claims to record; pass {{claim: (verdict, numbers)}}")
    rows = []
    for claim, (verdict, numbers) in claims.items():
        if verdict not in VERDICTS:
            raise ValueError(f"{notebook}: verdict {verdict!r} of {claim!r} is not one of {', '.join(VERDICTS)}")
        rows.append({"claim": claim, "section": section, "notebook": notebook, "verdict": verdict,
                     "numbers": str(numbers)})
    frame = pd.DataFrame(rows).set_index("claim")
    save(frame, f"verdicts_{notebook}")
    if show:
        from IPython.display import Markdown, display

        display(Markdown("\n".join(f"- {_MARK[r.verdict]} **{c}** — {r.verdict}: {r.numbers}"
                                   for c, r in frame.iterrows())))
    return frame


def collect(profile: str, datasets=None) -> pd.DataFrame:
    """Every verdict recorded by runs of ``profile`` (on ``datasets``, default all of them): one row per
    (dataset, claim) with ``section``, ``notebook``, ``verdict``, ``numbers`` and ``saved_at`` (from the
    sidecar). Empty (with those columns) when no run recorded any."""
    from .plots import results_dir

    frames = []
    for name in datasets or DATASETS:
        for path in sorted(results_dir(name, profile).glob("verdicts_*.csv")):
            frame = pd.read_csv(path, keep_default_na=False)
            side = path.with_suffix(".json")
            saved = json.loads(side.read_text()).get("saved_at", "") if side.is_file() else ""
            frames.append(frame.assign(dataset=name, saved_at=saved))
    columns = ["dataset", "claim", "section", "notebook", "verdict", "numbers", "saved_at"]
    return pd.concat(frames)[columns].reset_index(drop=True) if frames else pd.DataFrame(columns=columns)


def table(long: pd.DataFrame) -> pd.DataFrame:
    """The scorecard as a frame: one row per claim (index notebook, section, claim, in notebook order)
    and, per dataset of ``long`` (:func:`collect`), its verdict and numbers ("not measured" / "")."""
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


def markdown(long: pd.DataFrame, present=()) -> str:
    """The scorecard page's table (MyST): claim, section, notebook -- a ``{doc}`` link when the notebook
    is in this build (``present``, its stems) -- and one column per dataset: a mark, the verdict and
    the numbers. A legend of the marks follows."""
    wide = table(long)
    if wide.empty:
        return ("No executed notebook has recorded a verdict for this profile yet: run the batch "
                "(`dsco run --dataset … --profile …`) and build the book again.\n")
    names = [c for c in wide.columns if not c.endswith(": numbers")]
    lines = ["| Claim | Section | Notebook | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for (stem, section, claim), row in wide.iterrows():
        link = f"{{doc}}`{stem} <notebooks/{stem}>`" if stem in set(present) else f"`{stem}`"
        cells = [f"{_MARK[row[n]]} {row[n]}" + (f"<br><small>{_escape(row[n + ': numbers'])}</small>"
                                               if row[n + ": numbers"] else "") for n in names]
        lines.append(f"| {_escape(claim)} | {_escape(section)} | {link} | " + " | ".join(cells) + " |")
    legend = " · ".join(f"{mark} {v}" for v, mark in _MARK.items())
    return "\n".join(lines) + f"\n\n{legend}\n"


def _escape(text: str) -> str:
    """A table cell's text: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def page(profile: str, present=(), datasets=None) -> str:
    """The book's scorecard page (MyST markdown) for ``profile``: title, how to read it, and
    :func:`markdown` of every verdict recorded by the runs of that profile."""
    long = collect(profile, datasets)
    ran = ", ".join(f"**{n}**" for n in long["dataset"].unique()) or "none yet"
    counts = long["verdict"].value_counts()
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts) or "no verdicts"
    return (
        "# Claims scorecard\n\n"
        "Every claim a notebook of this book tests -- the paper's, and the related work's -- with its verdict "
        f"at this scale, one column per dataset whose batch was run in the **{profile}** profile ({ran}). "
        "Generated from the verdicts the executed notebooks recorded (`dsco.scorecard.record`), never typed "
        "by hand. Where a claim compares trainings (\"A > B\") the verdict rests on the paired differences "
        "of trainings that share a seed, with their 95 % interval and the number of trainings: "
        "*within noise* when the interval covers zero. Verdicts recorded: "
        f"{tally}.\n\n" + markdown(long, present))
