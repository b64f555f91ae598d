"""Where a batch spends its time: the trace of one ``dsco run --trace FILE``.

A trace holds three records of one batch, written to one JSON file when the batch ends (also when
it fails or is interrupted):

- ``notebooks``: every notebook's start and end (wall clock) and whether it ran or was skipped;
- ``cpu``: the busy share of every core, sampled every ``interval`` seconds (:class:`Sampler`);
- ``events``: every classifier training and every surrogate set a kernel computed or read back from
  a cache, with its notebook, start, end and what defines it (:func:`event`, called by
  :mod:`dsco.evaluate`, :mod:`dsco.surrogates` and :mod:`dsco.doping`).

The kernels learn where to write their events from ``$DSCO_TRACE`` (a folder, one JSON-lines file
per process) and which notebook they run from ``$DSCO_NOTEBOOK``; both are set by the runner for the
kernels it starts and nowhere else, so :func:`event` costs nothing outside a traced batch.

Reading: :func:`load` returns a :class:`Trace` of pandas frames; :func:`by_notebook` splits every
notebook's wall time into synthesis, training and the rest, :func:`trainings` counts and times the
trainings by architecture and IPC, :func:`repeated` lists what was computed more than once, and
:func:`timeline` draws the cores' load under the notebooks' bars.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: Environment variables the runner sets for the kernels of a traced batch.
FOLDER_VAR, NOTEBOOK_VAR = "DSCO_TRACE", "DSCO_NOTEBOOK"
#: The kinds of event: a classifier training of the evaluation, a student of Doping, a surrogate
# set.
KINDS = ("train", "student", "synth")


def event(kind: str, t0: float, cached: bool, **fields) -> None:
    """Record one computation that started at ``t0`` (``time.time()``) and ends now, or one cache
    hit (``cached=True``), when this process belongs to a traced batch; otherwise do nothing.
    ``fields`` say what was computed (``arch``, ``ipc``, ``method``, ``key``, ...)."""
    folder = os.environ.get(FOLDER_VAR)
    if not folder:
        return
    if kind not in KINDS:
        raise ValueError(f"unknown trace event kind {kind!r}: use one of {', '.join(KINDS)}")
    row = {
        "kind": kind,
        "t0": t0,
        "t1": time.time(),
        "cached": bool(cached),
        "pid": os.getpid(),
        "notebook": os.environ.get(NOTEBOOK_VAR, ""),
        **fields,
    }
    path = Path(folder) / f"events-{os.getpid()}.jsonl"
    with open(path, "a") as f:  # one file per process: lines of two processes never interleave
        f.write(json.dumps(row, default=str) + "\n")


class Sampler(threading.Thread):
    """A daemon thread that samples, every ``interval`` seconds until :meth:`stop`, every core's
    busy share (psutil, percent; the whole machine's load) and how many cores the batch itself
    used (the CPU time of this process and its descendants per wall second): ``rows`` of
    ``[time, core 0, core 1, ..., batch cores]``."""

    def __init__(self, interval: float = 2.0):
        super().__init__(daemon=True)
        self.interval, self.rows, self._done = float(interval), [], threading.Event()

    def run(self):
        import psutil

        psutil.cpu_percent(percpu=True)  # the first call only sets the reference point
        last = (time.time(), batch_cpu_seconds())
        while not self._done.wait(self.interval):
            now = (time.time(), batch_cpu_seconds())
            cores = (now[1] - last[1]) / max(now[0] - last[0], 1e-9)
            self.rows.append([now[0], *psutil.cpu_percent(percpu=True), round(cores, 3)])
            last = now

    def stop(self) -> list:
        self._done.set()
        self.join(timeout=2 * self.interval)
        return self.rows


def machine() -> dict:
    """The machine a batch ran on: CPU model (``/proc/cpuinfo``), cores, memory, Python and torch
    versions and torch's CPU capability (the widest SIMD kernels it uses)."""
    import platform

    import psutil
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def batch_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, of its finished children, and of its live
    descendants (the kernels and their training workers)."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:  # it ended meanwhile (its time moves to its parent's children)
            continue
    return total


def write(path, meta: dict, notebooks: list[dict], cpu: list, folder) -> Path:
    """Gather the events under ``folder`` and write the trace JSON to ``path`` (atomically)."""
    from . import replacing

    events = []
    for f in sorted(Path(folder).glob("events-*.jsonl")):
        lines = f.read_text().split("\n")[:-1]  # a line still being written has no newline yet
        events += [json.loads(line) for line in lines if line.strip()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"meta": meta, "notebooks": notebooks, "cpu": cpu, "events": events}
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(blob, default=str))
    return path


@dataclass
class Trace:
    """A loaded trace: ``meta`` (dict) and the frames ``notebooks``, ``cpu`` and ``events``, every
    time in seconds since the batch started."""

    meta: dict
    notebooks: pd.DataFrame
    cpu: pd.DataFrame
    events: pd.DataFrame

    @property
    def wall_s(self) -> float:
        """The batch's wall time."""
        return float(self.meta.get("wall_s") or self.notebooks["end"].max())


def load(path) -> Trace:
    """Read a trace written by ``dsco run --trace``."""
    blob = json.loads(Path(path).read_text())
    t0 = blob["meta"]["started"]
    nbs = pd.DataFrame(blob["notebooks"], columns=["notebook", "status", "start", "end"])
    nbs[["start", "end"]] -= t0
    width = max((len(r) for r in blob["cpu"]), default=1)
    columns = blob["meta"].get("cpu_columns") or ["t"] + [f"core {i}" for i in range(width - 1)]
    cpu = pd.DataFrame(blob["cpu"], columns=columns)
    cpu["t"] -= t0
    ev = pd.DataFrame(blob["events"])
    if ev.empty:
        ev = pd.DataFrame(columns=["kind", "t0", "t1", "cached", "notebook"])
    ev[["t0", "t1"]] = ev[["t0", "t1"]] - t0
    ev["seconds"] = ev["t1"] - ev["t0"]
    return Trace(blob["meta"], nbs, cpu, ev)


def by_notebook(trace: Trace) -> pd.DataFrame:
    """Per notebook: wall seconds, then the seconds of computed (not cached) synthesis and training
    (students included), the rest of the wall time (loading, metrics, figures, kernel start), and
    how many sets and trainings it computed and read back. Notebooks in execution order."""
    rows = []
    for nb in trace.notebooks.itertuples():
        ev = trace.events[trace.events["notebook"] == nb.notebook]
        done = ev[~ev["cached"].astype(bool)]
        synth = _busy(done[done["kind"] == "synth"])
        train = _busy(done[done["kind"] != "synth"])
        wall = nb.end - nb.start
        rows.append(
            {
                "notebook": nb.notebook,
                "status": nb.status,
                "start_s": nb.start,
                "wall_s": wall,
                "synthesis_s": synth,
                "training_s": train,
                "other_s": max(wall - _busy(done), 0.0),
                "sets": int((done["kind"] == "synth").sum()),
                "sets_cached": int(((ev["kind"] == "synth") & ev["cached"]).sum()),
                "trainings": int((done["kind"] != "synth").sum()),
                "trainings_cached": int(((ev["kind"] != "synth") & ev["cached"]).sum()),
            }
        )
    return pd.DataFrame(rows)


def _busy(ev: pd.DataFrame) -> float:
    """Wall seconds covered by the union of the events' intervals (parallel work counts once)."""
    spans = sorted(zip(ev["t0"], ev["t1"]))
    total, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def trainings(trace: Trace) -> pd.DataFrame:
    """The computed trainings by kind, architecture and IPC: how many, seconds each (mean) and in
    all."""
    ev = trace.events[(trace.events["kind"] != "synth") & ~trace.events["cached"].astype(bool)]
    if ev.empty:
        return pd.DataFrame(columns=["kind", "arch", "ipc", "runs", "s_each", "s_total"])
    ev = ev.assign(ipc=ev["ipc"].round(1))
    out = (
        ev.groupby(["kind", "arch", "ipc"])["seconds"]
        .agg(runs="size", s_each="mean", s_total="sum")
        .reset_index()
    )
    return out.sort_values("s_total", ascending=False, ignore_index=True)


def repeated(trace: Trace) -> pd.DataFrame:
    """What was computed more than once in the batch: events of one kind with the same ``key``
    computed (not read back) several times -- by two notebooks running at once, or by a notebook
    that bypasses a cache. One row per key: kind, what, how often, the notebooks, the seconds spent
    beyond the first."""
    ev = trace.events[~trace.events["cached"].astype(bool)]
    if ev.empty or "key" not in ev:
        return pd.DataFrame(columns=["kind", "what", "times", "notebooks", "extra_s"])
    rows = []
    for (kind, key), g in ev.dropna(subset=["key"]).groupby(["kind", "key"]):
        if len(g) > 1:
            first = g.iloc[0]
            what = " ".join(
                f"{c}={first[c]}"
                for c in ("method", "arch", "ipc")
                if c in g and pd.notna(first[c])
            )
            rows.append(
                {
                    "kind": kind,
                    "what": what,
                    "times": len(g),
                    "notebooks": ", ".join(sorted(set(g["notebook"]))),
                    "extra_s": float(g["seconds"].sum() - g["seconds"].iloc[0]),
                }
            )
    return pd.DataFrame(rows, columns=["kind", "what", "times", "notebooks", "extra_s"])


def timeline(trace: Trace, title: str = ""):
    """The batch over time: every core's busy share (top) and one bar per executed notebook
    (bottom), so idle cores and the notebooks running at the time line up. Returns the figure."""
    import matplotlib.pyplot as plt

    nbs = trace.notebooks[trace.notebooks["status"] == "executed"].reset_index(drop=True)
    fig, (top, low) = plt.subplots(
        2,
        1,
        figsize=(10, 2.2 + 0.22 * len(nbs)),
        sharex=True,
        gridspec_kw={"height_ratios": [1.2, max(len(nbs), 1) * 0.25]},
    )
    minutes = trace.cpu["t"] / 60
    cores = [c for c in trace.cpu.columns if c.startswith("core ")]
    for col in cores:
        top.plot(
            minutes,
            trace.cpu[col].rolling(5, min_periods=1).mean(),
            lw=0.8,
            alpha=0.6,
            label=f"{col} (machine)",
        )
    if "batch cores" in trace.cpu:
        share = 100 * trace.cpu["batch cores"] / max(len(cores), 1)
        top.plot(
            minutes,
            share.rolling(5, min_periods=1).mean(),
            lw=1.4,
            color="k",
            label="the batch (share of all cores)",
        )
    top.set(ylabel="busy %", ylim=(0, 105), title=title or "cores and notebooks over the batch")
    top.legend(fontsize=7, loc="lower right", ncol=len(trace.cpu.columns) - 1)
    top.set_ylim(0, 110)
    for i, nb in nbs.iterrows():
        low.barh(i, (nb.end - nb.start) / 60, left=nb.start / 60, height=0.7, color="tab:blue")
        low.text(nb.end / 60, i, f" {nb.notebook[:2]}", va="center", fontsize=7)
    low.set(yticks=range(len(nbs)), yticklabels=nbs["notebook"].str[:24], xlabel="minutes")
    low.invert_yaxis()
    low.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def summary(trace: Trace) -> dict:
    """One row for a table of traces: label, date, commit, wall minutes, the summed notebook time
    in synthesis, training and the rest (core-minutes), the cores the batch used on average, the
    notebooks executed and the trainings and sets computed."""
    nbs = by_notebook(trace)
    cpu = trace.cpu
    return {
        "trace": trace.meta.get("label", ""),
        "date": trace.meta.get("date", ""),
        "commit": str(trace.meta.get("commit", ""))[:12],
        "wall_min": round(trace.wall_s / 60, 1),
        "synthesis_min": round(float(nbs["synthesis_s"].sum()) / 60, 1),
        "training_min": round(float(nbs["training_s"].sum()) / 60, 1),
        "other_min": round(float(nbs["other_s"].sum()) / 60, 1),
        "batch_cores": round(float(cpu["batch cores"].mean()), 2) if "batch cores" in cpu else None,
        "notebooks": int((nbs["status"] == "executed").sum()),
        "trainings": int(nbs["trainings"].sum()),
        "sets": int(nbs["sets"].sum()),
    }


def work(trace: Trace, cache_dir=None) -> dict:
    """What stands behind a batch: the sets and trainings (students included) it computed and
    those it read back from the caches, the seconds it spent computing (``computed_s``) and the
    seconds the cache entries it read back took when they were computed (``cached_s``, from the
    ``wall_s`` each entry stores, each entry once; entries found in ``cache_dir``, default
    :data:`dsco.CACHE`, by the key the event names). A batch rerun from full caches runs in
    minutes; ``cached_s`` says what it would take from scratch on the machine that filled them."""
    from . import CACHE

    ev = trace.events
    cached = ev["cached"].astype(bool)
    synth = ev["kind"] == "synth"
    files = {}
    for p in Path(cache_dir or CACHE).rglob("*"):
        if p.suffix in (".json", ".pt"):
            files[p.stem.rsplit("-", 1)[-1]] = p
    key = ev["key"] if "key" in ev else pd.Series(None, index=ev.index, dtype=object)
    keys = set(key[cached].dropna()) - set(key[~cached].dropna())  # read back, not recomputed
    return {
        "sets": {"computed": int((synth & ~cached).sum()), "cached": int((synth & cached).sum())},
        "trainings": {
            "computed": int((~synth & ~cached).sum()),
            "cached": int((~synth & cached).sum()),
        },
        "computed_s": round(float(ev.loc[~cached, "seconds"].sum()), 1),
        "cached_s": round(sum(_stored_seconds(files.get(k)) for k in keys), 1),
    }


def _stored_seconds(path) -> float:
    """The ``wall_s`` a cache entry stores (0 for none or a missing entry)."""
    if path is None:
        return 0.0
    if path.suffix == ".json":
        blob = json.loads(path.read_text())
    else:
        import torch

        blob = torch.load(path, map_location="cpu", weights_only=False)
    return float(blob.get("wall_s") or 0.0) if isinstance(blob, dict) else 0.0


def shares(trace: Trace, title: str = ""):
    """Every executed notebook's wall time split into synthesis, training and the rest (stacked
    horizontal bars, longest first). Returns the figure."""
    import matplotlib.pyplot as plt

    nbs = by_notebook(trace)
    nbs = nbs[nbs["status"] == "executed"].sort_values("wall_s")
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.22 * len(nbs)))
    left = pd.Series(0.0, index=nbs.index)
    for col, colour in (
        ("synthesis_s", "tab:orange"),
        ("training_s", "tab:blue"),
        ("other_s", "tab:gray"),
    ):
        ax.barh(
            nbs["notebook"].str[:26],
            nbs[col] / 60,
            left=left / 60,
            color=colour,
            label=col.removesuffix("_s"),
        )
        left += nbs[col]
    ax.set(
        xlabel="minutes (wall, in the notebook)", title=title or "where each notebook's time goes"
    )
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def recorded(folder=None) -> dict:
    """Every batch trace recorded in ``folder`` (default ``data/bench/``, files ``batch_*.json``):
    ``{file stem: Trace}`` in name order."""
    from . import ROOT

    return {
        p.stem: load(p)
        for p in sorted(Path(folder or ROOT / "data" / "bench").glob("batch_*.json"))
    }


def describe(trace: Trace, name: str = "") -> str:
    """One markdown line on a trace: its name, date and commit, the note on how it was recorded,
    and, for a batch stopped before its end, which notebooks it finished."""
    m = trace.meta
    title = name or m.get("label", "trace")
    head = f"**{title}** ({m.get('date', '')}, commit `{(m.get('commit') or '')[:10]}`"
    line = (
        head + f", {m.get('profile', '')} profile of {m.get('dataset', '')}): {m.get('note', '')}"
    )
    if m.get("partial"):
        done = trace.notebooks.loc[trace.notebooks["status"] == "executed", "notebook"]
        line += (
            f" *Partial: the batch stopped after {trace.wall_s / 60:.0f} min, having executed"
            f" {len(done)} notebooks ({', '.join(n.split('_')[0] for n in done)}).*"
        )
    return line


def show(trace: Trace, name: str = "") -> None:
    """Display one trace in a notebook: :func:`describe`, :func:`shares`, :func:`timeline`, the
    costliest trainings (:func:`trainings`) and what was computed twice (:func:`repeated`)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    display(Markdown(describe(trace, name)))
    for figure in (shares, timeline):
        figure(
            trace,
            f"{name}: "
            + ("where each notebook's time goes" if figure is shares else "cores and notebooks"),
        )
        plt.show()
    display(trainings(trace).head(12).round(1), repeated(trace).round(1))
