"""The Dope Trigger (paper §4.2.1, Eq. 30; SPEC §3): when to stop synthesising.

- :func:`dope_trigger` -- the marginal gain ΔN/ΔM of Eq. 30 over an IPC schedule; fires at ≤ 1
  (its result: :class:`Trigger`).
- :func:`trigger_gains` stacks it over replicates and :func:`trigger_findings` judges §4.2.1's two
  claims over them with the rules of :mod:`dsco.verdicts`.

What Doping then adds is :mod:`dsco.doping`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import DopingError


def dope_trigger(schedule, n_recognised, *, num_classes: int) -> Trigger:
    """The marginal gains of Eq. 30, ΔN/ΔM = (N_{M2} − N_{M1}) / (M2 − M1), between consecutive
    points of an IPC ``schedule`` (e.g. 1, 5, 10, 20, 40), and the point where ΔN/ΔM ≤ 1.

    Units: ``n_recognised[k]`` is N_M, the number of target (training) samples -- all classes
    together -- that a model trained on the synthetic set at ``schedule[k]`` IPC classifies
    correctly; M is counted in samples too, M = IPC × ``num_classes``. So ΔN/ΔM is "extra real
    samples recognised per extra synthetic sample" and the threshold 1 is the paper's. (With
    per-class counts of N, pass ``num_classes=1``.) ``fires_at`` is the IPC M1 at the start of the
    first interval whose gain is ≤ 1: synthesis stops there and Doping supplies the rest.
    """
    ipc = np.asarray(schedule, dtype=np.int64)
    n = np.asarray(n_recognised, dtype=np.float64)
    if ipc.ndim != 1 or n.shape != ipc.shape or len(ipc) < 2:
        raise DopingError(
            f"schedule ({ipc.shape}) and n_recognised ({n.shape}) must be 1-D of equal length "
            ">= 2: give one N per schedule point"
        )
    if (ipc < 1).any() or (np.diff(ipc) <= 0).any():
        raise DopingError(
            f"schedule {ipc.tolist()} must be strictly increasing positive IPCs: sort it"
        )
    if not int(num_classes) >= 1 or not np.isfinite(n).all() or (n < 0).any():
        raise DopingError(
            "num_classes must be >= 1 and n_recognised finite counts >= 0: check the inputs"
        )
    m = ipc * int(num_classes)
    gain = np.diff(n) / np.diff(m)
    table = pd.DataFrame(
        {
            "ipc_from": ipc[:-1],
            "ipc_to": ipc[1:],
            "m_from": m[:-1],
            "m_to": m[1:],
            "n_from": n[:-1],
            "n_to": n[1:],
            "gain": gain,
        }
    )
    on = np.flatnonzero(gain <= 1)
    return Trigger(table, int(ipc[on[0]]) if len(on) else None, int(num_classes))


@dataclass
class Trigger:
    """Result of :func:`dope_trigger`: the per-interval table and where the trigger fires."""

    table: pd.DataFrame  # ipc_from, ipc_to, m_from, m_to, n_from, n_to, gain (= ΔN/ΔM)
    fires_at: int | None  # IPC M1 opening the first interval with ΔN/ΔM <= 1 (None: never)
    num_classes: int


def trigger_gains(
    counts: pd.DataFrame,
    *,
    num_classes: int,
    replicate: str = "replicate",
    ipc: str = "ipc",
    n: str = "N",
) -> pd.DataFrame:
    """The Eq. 30 table of every replicate: ``counts`` holds one row per replicate and schedule
    point (columns ``replicate``, ``ipc``: the IPC or, with ``num_classes=1``, the number of
    samples, and ``n``: N_M); returns :func:`dope_trigger`'s tables stacked, with the
    ``replicate`` column and ``fires`` (gain ≤ 1)."""
    if not len(counts):
        raise DopingError("counts is empty: give one row per replicate and schedule point")
    missing = [c for c in (replicate, ipc, n) if c not in counts.columns]
    if missing:
        raise DopingError(
            f"counts lacks column(s) {missing}: pass replicate=, ipc=, n= naming its columns"
        )
    frames = []
    for r, g in counts.groupby(replicate, sort=True):
        g = g.sort_values(ipc)
        t = dope_trigger(g[ipc].to_numpy(), g[n].to_numpy(), num_classes=num_classes).table
        frames.append(t.assign(**{replicate: r}, fires=t["gain"] <= 1))
    return pd.concat(frames, ignore_index=True)


def trigger_findings(gains: pd.DataFrame, replicate: str = "replicate", unit: str = "IPC") -> dict:
    """The two claims of §4.2.1 over replicates, ``{claim: Verdict}`` (rules of
    :mod:`dsco.verdicts`), from :func:`trigger_gains` (one Eq. 30 table per replicate: columns
    ``replicate``, ``ipc_from``, ``ipc_to``, ``m_from``, ``m_to``, ``gain``).

    - *The Dope Trigger fires on the schedule*: :func:`~dsco.verdicts.estimate` of the gain of the
      schedule's **last** interval over the replicates, *below* 1 (the trigger has fired by the
      end of the schedule: ΔN/ΔM ≤ 1 there). The last gain, not the smallest: the minimum over
      several noisy intervals would be biased towards firing. Its sd is floored at one recognised
      sample over the interval (1 / ΔM): N is a count.
    - *The marginal gains decrease along the schedule*: :func:`~dsco.verdicts.trend`, the
      least-squares slope of ΔN/ΔM on the log of the interval's geometric-mean IPC within every
      replicate, then a t-interval over the replicates' slopes, *below* 0 (a decreasing trend, not
      a strictly monotone sequence: one noisy interval does not refute diminishing returns). The
      slopes' sd is floored at one recognised sample in the finest interval over the x range.

    ``unit`` names the schedule's points in the claims ("IPC"; "M" for a schedule in samples).
    Each replicate is its own synthetic sets and model seed; assumes the replicates' last gains and
    slopes are independent and roughly normal; fewer than 3 replicates: *not measured*."""
    from . import verdicts

    need = {replicate, "ipc_from", "ipc_to", "m_from", "m_to", "gain"}
    if not need <= set(gains.columns):
        raise DopingError(
            f"gains lacks column(s) {sorted(need - set(gains.columns))}: pass "
            "dsco.trigger.trigger_gains(...)"
        )
    last = gains[gains["ipc_to"] == gains["ipc_to"].max()]
    step = float((last["m_to"] - last["m_from"]).iloc[0])
    a, b = int(last["ipc_from"].iloc[0]), int(last["ipc_to"].iloc[0])
    x = f"log {unit}"  # the log of the interval's geometric-mean point
    mid = gains.assign(
        **{x: 0.5 * np.log(gains["ipc_from"] * gains["ipc_to"]), "ΔN/ΔM": gains["gain"]}
    )
    # a slope's resolution: one recognised sample more in the finest interval, over the x range
    span = float(mid[x].max() - mid[x].min())
    slope_floor = 1.0 / (float((gains["m_to"] - gains["m_from"]).max()) * span) if span > 0 else 0.0
    fires = "the Dope Trigger fires on the schedule (ΔN/ΔM below 1 by its last interval)"
    return {
        fires: verdicts.estimate(
            last["gain"], below=1.0, what=f"ΔN/ΔM of {unit} {a}→{b}", resolution=1.0 / step
        ),
        "the marginal gains ΔN/ΔM decrease along the schedule": verdicts.trend(
            mid,
            x,
            "ΔN/ΔM",
            replicate=replicate,
            decreasing=True,
            threshold=0.0,
            resolution=slope_floor,
        ),
    }
