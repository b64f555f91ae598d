"""The order of a parallel batch: how long each notebook took the last time (its executed copy,
the shipped reference's, or a recorded batch trace), and the longest-first order the runner submits
them in, so that the short notebooks fill the cores at the end.

Entry point: :func:`longest_first`; :func:`previous_seconds`, :func:`traced_seconds` and
:func:`reference_dirs` are where the times come from.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import REFERENCE, trace


def longest_first(paths, folders, traced: dict | None = None) -> list:
    """The order in which a parallel batch submits its notebooks: the longest first by their last
    execution (:func:`previous_seconds`) or the recorded batch traces ``traced`` (as
    :func:`traced_seconds` reads them), the longer of the two -- an executed copy may have read
    its sets and trainings back from caches (the shipped reference run did), a recorded batch
    computed them -- so that the short ones fill the cores at the end instead of one long
    notebook running alone while the other cores idle (longest-processing-time-first
    scheduling); notebooks with no known time go first, in numbered order."""
    traced = traced or {}
    known = {}
    for p in paths:
        times = [t for t in (previous_seconds(p.stem, folders), traced.get(p.stem)) if t]
        known[p] = max(times) if times else None
    return sorted(paths, key=lambda p: (known[p] is not None, -(known[p] or 0.0)))


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
