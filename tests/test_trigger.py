"""Tests for dsco.trigger: the Dope Trigger (Eq. 30), its per-replicate gains and the verdicts on
§4.2.1's two claims."""

import numpy as np
import pytest

from dsco import trigger
from dsco.errors import DopingError


def test_dope_trigger_table_and_firing_point():
    # M = 10, 50, 100, 200, 400 samples; gains 200/40=5, 150/50=3, 150/100=1.5, 150/200=0.75
    t = trigger.dope_trigger([1, 5, 10, 20, 40], [50, 250, 400, 550, 700], num_classes=10)
    assert t.table["m_to"].tolist() == [50, 100, 200, 400]
    assert np.allclose(t.table["gain"], [5, 3, 1.5, 0.75])
    assert t.fires_at == 20 and t.num_classes == 10
    # gain exactly 1 fires ("<= 1"); per-class units via num_classes=1
    assert trigger.dope_trigger([1, 2, 4], [10, 13, 15], num_classes=1).fires_at == 2
    assert trigger.dope_trigger([1, 2], [0, 50], num_classes=10).fires_at is None


def _counts(curves):
    """One row per replicate and schedule point: N_M of the replicate's curve."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"replicate": r, "ipc": ipc, "N": n}
            for r, curve in enumerate(curves)
            for ipc, n in curve.items()
        ]
    )


def _gains(curves):
    return trigger.trigger_gains(_counts(curves), num_classes=10)


def test_trigger_gains_stack_one_eq30_table_per_replicate():
    gains = trigger.trigger_gains(
        _counts([{1: 50, 5: 250, 10: 400}, {1: 40, 5: 260, 10: 380}]), num_classes=10
    )
    assert gains["replicate"].tolist() == [0, 0, 1, 1]
    assert np.allclose(gains["gain"], [5, 3, 5.5, 2.4]) and not gains["fires"].any()
    with pytest.raises(DopingError, match="empty"):
        trigger.trigger_gains(_counts([]), num_classes=10)


def test_trigger_findings_judge_the_replicates_with_the_rules():
    schedule = [1, 5, 10, 20, 40]
    # diminishing returns, the last gain (IPC 20 -> 40, ΔM = 200) about 0.75: both claims hold
    falling = [
        dict(zip(schedule, [50 + d, 250 + d, 400 + d, 550 + 2 * d, 700 + 3 * d])) for d in range(5)
    ]
    v = trigger.trigger_findings(_gains(falling))
    fires, down = v.values()
    assert {type(x).__name__ for x in v.values()} == {"Verdict"}
    assert fires.verdict == "holds" and "ΔN/ΔM of IPC 20→40 below 1" in fires.rule
    assert down.verdict == "holds" and "trend" in down.rule
    # rising gains that never reach 1: both claims fail
    rising = [dict(zip(schedule, [0 + d, 20 + d, 70 + 2 * d, 270 + d, 1000 + d])) for d in range(5)]
    fires, down = trigger.trigger_findings(_gains(rising)).values()
    assert fires.verdict == "does not hold" and down.verdict == "does not hold"
    # two replicates decide nothing
    few = trigger.trigger_findings(_gains(falling[:2]))
    assert {x.verdict for x in few.values()} == {"not measured"}
    # identical replicates: the count's resolution (one sample over ΔM) keeps the interval open
    same = trigger.trigger_findings(_gains([{1: 0, 2: 10, 3: 19}] * 3))
    assert list(same.values())[0].verdict == "within noise"  # last gain 0.9 ± the floor 1/10
    flat = trigger.trigger_findings(_gains([{1: 0, 2: 10, 3: 20}] * 3))
    assert list(flat.values())[1].verdict == "within noise"  # equal gains, floored sd: not 0/0
    with pytest.raises(DopingError, match="trigger_gains"):
        trigger.trigger_findings(_gains(falling).drop(columns="m_to"))


def test_dope_trigger_on_a_concave_curve():
    # N(M) = 2000 (1 - exp(-M / 400)), M = 10 * IPC: slope 5 exp(-M/400) <= 1 for M >= 400 ln 5 ~
    # 644, so the secant over [M1, M1 + 10] first drops <= 1 at IPC 64 (M1 = 640, M2 = 650).
    ipc = np.arange(1, 120)
    n = 2000 * (1 - np.exp(-ipc * 10 / 400))
    t = trigger.dope_trigger(ipc, n, num_classes=10)
    assert (np.diff(t.table["gain"]) < 0).all()
    assert t.fires_at == 64


def test_dope_trigger_bad_input():
    with pytest.raises(DopingError, match="equal length"):
        trigger.dope_trigger([1, 5, 10], [3, 4], num_classes=10)
    with pytest.raises(DopingError, match="strictly increasing"):
        trigger.dope_trigger([5, 1], [3, 4], num_classes=10)
    with pytest.raises(DopingError, match="num_classes"):
        trigger.dope_trigger([1, 5], [3, 4], num_classes=0)
