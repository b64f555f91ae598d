"""Tests for dsco.verdicts: every rule on constructed data whose answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dsco import verdicts as V


def _runs(gap, cells=(("convnet", 1), ("convnet", 10)), reps=5, noise=0.5, seed=0):
    """Method A = B + gap (per cell, or one number) + noise, B varying by replicate and cell."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(reps):
        for i, (arch, ipc) in enumerate(cells):
            g = gap[i] if isinstance(gap, (list, tuple)) else gap
            base = rng.normal(70, 3)
            rows += [
                dict(method="B", arch=arch, ipc=ipc, replicate=r, acc=base),
                dict(
                    method="A", arch=arch, ipc=ipc, replicate=r, acc=base + g + rng.normal(0, noise)
                ),
            ]
    return pd.DataFrame(rows)


def test_superiority_holds_fails_and_is_undecided_as_the_data_say():
    assert V.superiority(_runs(3.0), "A", "B").verdict == "holds"
    assert V.superiority(_runs(3.0), "B", "A").verdict == "does not hold"
    v = V.superiority(_runs(0.0, noise=2.0), "A", "B")
    assert v.verdict == "within noise"
    assert v.resolution > 0 and f"±{v.resolution:.2g}" in v.numbers


def test_a_cell_significantly_against_means_the_claim_does_not_hold():
    """Two cells clearly for and one clearly against: not 'holds in most cells'."""
    cells = (("convnet", 1), ("convnet", 5), ("convnet", 10))
    v = V.superiority(_runs([4.0, 4.0, -4.0], cells=cells), "A", "B")
    assert v.verdict == "does not hold"
    assert list(v.cells["category"]) == ["for", "for", "against"]


def test_some_cells_for_and_none_against_holds_in_part():
    v = V.superiority(_runs([4.0, 0.0], noise=1.0), "A", "B")
    assert v.verdict == "holds in part"
    assert list(v.cells["category"]) == ["for", "undecided"]


def test_categories_are_mutually_exclusive_and_cover_every_cell():
    v = V.superiority(_runs([3, -3, 0], cells=(("a", 1), ("a", 2), ("a", 3))), "A", "B")
    assert len(v.cells) == 3 and v.cells["category"].isin(V.CATEGORIES).all()


def test_two_replicates_with_equal_differences_are_not_measured():
    """n = 2 with equal paired differences made a zero-width 'significant' interval before."""
    runs = pd.DataFrame(
        [
            dict(method=m, arch="r18", ipc=70, replicate=r, acc=a)
            for r, (x, y) in enumerate([(96.44, 96.44), (97.11, 97.11)])
            for m, a in (("A", x), ("B", y))
        ]
    )
    v = V.superiority(runs, "A", "B")
    assert v.verdict == "not measured" and v.cells["category"].tolist() == ["not measured"]


def test_one_training_and_no_cells_are_not_measured():
    one = _runs(5.0, reps=1)
    assert V.superiority(one, "A", "B").verdict == "not measured"
    empty = one[one["arch"] == "none"]
    v = V.superiority(empty, "A", "B")
    assert v.verdict == "not measured" and v.cells.empty


def test_equal_differences_cannot_make_a_zero_width_interval():
    """Five identical differences: the sd is floored at the resolution (one test image)."""
    runs = pd.DataFrame(
        [
            dict(method=m, arch="c", ipc=1, replicate=r, acc=70 + (0.22 if m == "A" else 0))
            for r in range(5)
            for m in "AB"
        ]
    )
    v = V.superiority(runs, "A", "B", resolution=100 / 450)
    c = v.cells.iloc[0]
    assert c["hi"] - c["lo"] > 0.4  # 2 · t(0.975, 4) · 0.222 / √5 ≈ 0.55
    assert v.verdict == "within noise"
    unfloored = V.superiority(runs, "A", "B", resolution=0.0)
    assert unfloored.cells.iloc[0]["hi"] == pytest.approx(unfloored.cells.iloc[0]["lo"])


def test_duplicated_pairing_keys_are_refused():
    runs = _runs(1.0)
    with pytest.raises(V.VerdictError, match="several rows for the pairing key"):
        V.superiority(pd.concat([runs, runs]), "A", "B")
    with pytest.raises(V.VerdictError, match="lack column"):
        V.superiority(runs.drop(columns="replicate"), "A", "B")


def test_holm_adjusts_stepwise_and_is_monotone():
    p = [0.01, 0.04, 0.03, 0.005]
    adj = V.holm(p)
    assert adj.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert (V.holm([0.5]) == [0.5]).all()


def test_holm_makes_a_borderline_cell_undecided_among_many():
    """A cell significant on its own (one-sided p ≈ 0.005 < 0.025) is undecided once ten cells share
    the family's error rate (Holm's first step needs p < 0.025 / 10)."""
    first, null = [1.0, 2.0, 1.5, 0.5, 1.0], [0.1, -0.1, 0.2, -0.2, 0.0]
    rows = [
        dict(
            method=m,
            arch="c",
            ipc=ipc,
            replicate=r,
            acc=70 + ((first if ipc == 0 else null)[r] if m == "A" else 0),
        )
        for ipc in range(10)
        for r in range(5)
        for m in "AB"
    ]
    runs = pd.DataFrame(rows)
    alone = V.superiority(runs[runs.ipc == 0], "A", "B")
    assert alone.cells.iloc[0]["category"] == "for" and alone.verdict == "holds"
    v = V.superiority(runs, "A", "B")
    assert v.cells.iloc[0]["category"] == "undecided" and v.verdict == "within noise"
    c = v.cells.iloc[0]
    assert c["lo"] > 0 and c["half"] > (c["hi"] - c["lo"]) / 2  # stricter than its own 95 %


def test_lower_is_better_flips_the_direction_but_not_the_numbers():
    runs = _runs(-3.0)  # A's distance is lower: A is closer
    v = V.superiority(runs, "A", "B", higher=False)
    assert v.verdict == "holds"
    assert (v.cells["estimate"] < 0).all() and (v.cells["hi"] < 0).all()


def test_non_inferiority_uses_the_fixed_margin():
    assert (
        V.non_inferiority(_runs(-0.1, noise=0.1), "A", "B", 0.5, on=("arch", "ipc")).verdict
        == "holds"
    )
    assert (
        V.non_inferiority(_runs(-2.0, noise=0.1), "A", "B", 0.5, on=("arch", "ipc")).verdict
        == "does not hold"
    )
    noisy = V.non_inferiority(_runs(-0.2, noise=3.0), "A", "B", 0.5, on=("arch", "ipc"))
    assert noisy.verdict == "within noise"
    with pytest.raises(V.VerdictError, match="margin"):
        V.non_inferiority(_runs(0.0), "A", "B", -1)


def test_non_inferiority_never_counts_a_cell_both_ways():
    v = V.non_inferiority(_runs([-0.1, -3.0], noise=0.1), "A", "B", 0.5, on=("arch", "ipc"))
    assert list(v.cells["category"]) == ["for", "against"] and v.verdict == "does not hold"


def test_best_within_compares_the_choice_with_every_other_setting():
    rng = np.random.default_rng(1)
    rows = []
    for r in range(5):
        for ipc in (1, 5):
            base = rng.normal(60, 2)
            for lam, gain in ((5e-4, 2.0), (5e-3, 1.9), (5e-5, -3.0)):
                rows.append(
                    dict(lam=lam, ipc=ipc, replicate=r, acc=base + gain + rng.normal(0, 0.1))
                )
    runs = pd.DataFrame(rows)
    assert V.best_within(runs, 5e-4, 1.0, by="lam").verdict == "holds"
    v = V.best_within(runs, 5e-5, 1.0, by="lam")
    assert v.verdict == "does not hold" and len(v.cells) == 4
    with pytest.raises(V.VerdictError):
        V.best_within(runs, 1.0, 1.0, by="lam")


def test_trend_reads_the_slope_per_replicate():
    rng = np.random.default_rng(2)
    down = pd.DataFrame(
        [dict(replicate=r, x=x, y=10 - x + rng.normal(0, 0.1)) for r in range(4) for x in range(5)]
    )
    v = V.trend(down, "x", "y")
    assert v.verdict == "holds" and v.cells.iloc[0]["estimate"] == pytest.approx(-1, abs=0.1)
    assert V.trend(down, "x", "y", decreasing=False).verdict == "does not hold"
    flat = down.assign(y=1.0)
    assert V.trend(flat, "x", "y", resolution=0.05).verdict == "within noise"
    assert V.trend(down[down.replicate < 2], "x", "y").verdict == "not measured"
    decay = pd.DataFrame(
        [
            dict(replicate=r, m=m, c=m**-0.5 * (1 + rng.normal(0, 0.01)))
            for r in range(3)
            for m in (8, 32, 128)
        ]
    )
    v = V.trend(decay, "m", "c", log=True, threshold=-0.4)
    assert v.verdict == "holds" and v.cells.iloc[0]["estimate"] == pytest.approx(-0.5, abs=0.05)


def test_estimate_against_a_threshold_in_either_direction():
    assert V.estimate([1.1, 1.3, 0.9, 1.2], above=0).verdict == "holds"
    assert V.estimate([1.1, 1.3, 0.9, 1.2], below=0).verdict == "does not hold"
    assert V.estimate([0.1, -0.1, 0.05], above=0).verdict == "within noise"
    assert V.estimate([1.0, 2.0], above=0).verdict == "not measured"
    with pytest.raises(V.VerdictError):
        V.estimate([1.0], above=0, below=1)


def test_agreement_is_an_equivalence_test():
    e = 1 / np.e
    assert V.agreement(0.3679, 0.0005, e, 0.01).verdict == "holds"
    assert V.agreement(0.40, 0.0005, e, 0.01).verdict == "does not hold"
    v = V.agreement(0.37, 0.01, e, 0.01)
    assert v.verdict == "within noise" and v.resolution == pytest.approx(
        stats.norm.ppf(0.975) * 0.01
    )


def test_exact_needs_a_reason_and_verdicts_are_checked():
    assert V.exact(True, "3 = 3", why="closed form").verdict == "holds"
    with pytest.raises(V.VerdictError):
        V.exact(True, "x", why="")
    with pytest.raises(V.VerdictError):
        V.Verdict("holds in most cells", "", "")


def test_describe_and_cells_json_carry_the_evidence():
    v = V.superiority(_runs(3.0), "A", "B")
    text = V.describe({"A > B": v})
    assert text.startswith("- ✓ **A > B** — *holds*") and "Holm over 2 cells" in text
    cells = pd.read_json(__import__("io").StringIO(v.cells_json()))
    assert list(cells["category"]) == ["for", "for"] and (cells["n"] == 5).all()


def test_equivalent_is_two_one_sided_tests_over_replicates():
    assert V.equivalent([0.49, 0.51, 0.50, 0.52], 0.5, 0.1).verdict == "holds"
    assert V.equivalent([0.1, 0.12, 0.11, 0.09], 0.5, 0.1).verdict == "does not hold"
    assert V.equivalent([0.3, 0.7, 0.5, 0.4], 0.5, 0.1).verdict == "within noise"
    assert V.equivalent([0.5, 0.5], 0.5, 0.1).verdict == "not measured"
    with pytest.raises(V.VerdictError):
        V.equivalent([0.5] * 3, 0.5, -1)


def _lossless(gaps_a, gaps_b, reps=5, noise=0.05):
    """Methods A and B at three IPCs, each gap below Full given per IPC; Full varies by
    replicate."""
    rng = np.random.default_rng(7)
    rows = []
    for r in range(reps):
        for ipc, ga, gb in zip((10, 20, 40), gaps_a, gaps_b):
            full = 95 + rng.normal(0, 1)
            rows += [
                dict(method="Full", ipc=ipc, replicate=r, acc=full),
                dict(method="A", ipc=ipc, replicate=r, acc=full + ga + rng.normal(0, noise)),
                dict(method="B", ipc=ipc, replicate=r, acc=full + gb + rng.normal(0, noise)),
            ]
    return pd.DataFrame(rows)


def test_lossless_earlier_reads_the_first_lossless_ipc_of_both():
    holds = V.lossless_earlier(_lossless([-3, 0, 0], [-3, -3, 0]), "A", "B", "Full", 0.5)
    assert (
        holds.verdict == "holds" and "lossless first at ipc 20 (A) and ipc 40 (B)" in holds.numbers
    )
    same = V.lossless_earlier(_lossless([-3, 0, 0], [-3, 0, 0]), "A", "B", "Full", 0.5)
    assert same.verdict == "does not hold"  # lossless at the same IPC: not earlier
    later = V.lossless_earlier(_lossless([-3, -3, 0], [-3, 0, 0]), "A", "B", "Full", 0.5)
    assert later.verdict == "does not hold"
    noisy = V.lossless_earlier(
        _lossless([-3, 0, 0], [-3, -0.4, 0], noise=2.0), "A", "B", "Full", 0.5
    )
    assert noisy.verdict == "within noise" and noisy.resolution > 0
    few = V.lossless_earlier(_lossless([-3, 0, 0], [-3, -3, 0], reps=2), "A", "B", "Full", 0.5)
    assert few.verdict == "not measured"


def test_identical_replicates_on_the_threshold_are_undecided_not_unmeasured():
    v = V.estimate([0.5, 0.5, 0.5], above=0.5)  # sd 0 and no resolution: t = 0/0
    assert v.verdict == "within noise"
    assert V.estimate([0.7, 0.7, 0.7], above=0.5).verdict == "holds"


def test_cells_keep_their_key_columns_and_small_numbers_keep_their_digits():
    v = V.superiority(_runs(3.0), "A", "B")
    assert list(v.cells[["arch", "ipc"]].itertuples(index=False, name=None)) == [
        ("convnet", 1),
        ("convnet", 10),
    ]
    tiny = V.estimate([0.0041, 0.0043, 0.0039, 0.0042], above=0)
    assert "+0.0041 [" in tiny.numbers
    lower = V.non_inferiority(
        _runs(0.1, noise=0.1), "A", "B", 0.5, on=("arch", "ipc"), higher=False
    )
    assert "below +0.5 (lower is better)" in lower.rule and lower.verdict == "holds"
