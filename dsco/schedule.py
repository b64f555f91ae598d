"""The order of a parallel batch: how long each notebook took the last time (its executed copy,
the shipped reference's, or a recorded batch trace), and the longest-first order the runner submits
them in, so that the short notebooks fill the cores at the end.

Entry point: :func:`longest_first`; :func:`previous_seconds`, :func:`traced_seconds` and
:func:`reference_dirs` are where the times come from, and :func:`elsewhere_seconds` where a
notebook never run on this dataset takes its guess from (another dataset's runs of the profile).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import REFERENCE, trace


def longest_first(
    paths, folders, traced: dict | None = None, elsewhere: dict | None = None
) -> list:
    """The order in which a parallel batch submits its notebooks: the longest first by their last
    execution (:func:`previous_seconds`) or the recorded batch traces ``traced`` (as
    :func:`traced_seconds` reads them), the longer of the two -- an executed copy may have read
    its sets and trainings back from caches (the shipped reference run did), a recorded batch
    computed them -- so that the short ones fill the cores at the end instead of one long
    notebook running alone while the other cores idle (longest-processing-time-first
    scheduling).

    A notebook with no time of its own takes its time on another dataset, ``elsewhere`` (as
    :func:`elsewhere_seconds` reads it), times the ratio of the two datasets' total times over
    the notebooks both know (1 when none): a first batch on a new dataset still starts with its
    longest notebooks. Notebooks with no time anywhere go first, in numbered order."""
    traced, elsewhere = traced or {}, elsewhere or {}
    known = {}
    for p in paths:
        times = [t for t in (previous_seconds(p.stem, folders), traced.get(p.stem)) if t]
        known[p.stem] = max(times) if times else None
    both = [s for s, t in known.items() if t and elsewhere.get(s)]
    ratio = sum(known[s] for s in both) / sum(elsewhere[s] for s in both) if both else 1.0
    guess = {s: t or (elsewhere[s] * ratio if elsewhere.get(s) else None) for s, t in known.items()}
    return sorted(paths, key=lambda p: (guess[p.stem] is not None, -(guess[p.stem] or 0.0)))


def previous_seconds(stem: str, folders) -> float | None:
    """How long ``stem`` took the last time it was executed: papermill's ``duration`` in the
    metadata of its executed copy in the first of ``folders`` that has one; None if none has."""
    for folder in folders:
        path = Path(folder) / f"{stem}.ipynb"
        if path.is_file():
            try:
                meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
            except (OSError, ValueError):
                continue
            if meta.get("duration"):
                return float(meta["duration"])
    return None


def traced_seconds(dataset: str, profile: str, folder=None) -> dict:
    """``{notebook: wall seconds}`` of the notebooks executed in the batch traces recorded for
    ``dataset`` and ``profile`` (:func:`dsco.trace.recorded`); the newest trace that executed a
    notebook gives its time."""
    found = [
        t
        for t in trace.recorded(folder).values()
        if (t.meta.get("dataset"), t.meta.get("profile")) == (dataset, profile)
    ]
    seconds = {}
    for t in sorted(found, key=lambda t: t.meta.get("started", 0)):
        done = t.notebooks[t.notebooks["status"] == "executed"]
        seconds |= dict(zip(done["notebook"], done["end"] - done["start"]))
    return seconds


def reference_dirs(dataset: str, profile: str) -> list:
    """The executed notebooks shipped with the repository for ``dataset`` and ``profile`` (their
    durations order a first batch); empty when none are shipped."""
    folder = REFERENCE / "runs" / dataset / profile
    return [folder] if folder.is_dir() else []


def elsewhere_seconds(dataset: str, profile: str, folder=None) -> dict:
    """``{notebook: seconds}`` on the datasets other than ``dataset`` for ``profile``: for each
    notebook the longest time any of them took, in a shipped reference run (:func:`reference_dirs`)
    or a recorded batch trace (:func:`traced_seconds`, ``folder`` as there) -- what a first batch
    on a new dataset, the user's own, orders its notebooks by."""
    shipped = {p.parent.name for p in (REFERENCE / "runs").glob(f"*/{profile}") if p.is_dir()}
    traced = {t.meta.get("dataset") for t in trace.recorded(folder).values()}
    seconds: dict = {}
    for other in sorted((shipped | traced) - {dataset, None}):
        folders = reference_dirs(other, profile)
        times = traced_seconds(other, profile, folder)
        stems = {p.stem for f in folders for p in Path(f).glob("*.ipynb")} | set(times)
        for stem in stems:
            t = max(previous_seconds(stem, folders) or 0.0, times.get(stem) or 0.0)
            seconds[stem] = max(seconds.get(stem, 0.0), t)
    return {s: t for s, t in seconds.items() if t}
