"""Tests for dsco.occupancy: occupancy of N regions by N uniform draws (App. B, Table 13), exact and
Monte Carlo, and the ideal-sampling chance."""

import math

import numpy as np
import pytest

from dsco import occupancy


@pytest.mark.parametrize("n", [10, 50, 100])
def test_monte_carlo_matches_closed_form(n):
    mean, std = occupancy.occupancy_monte_carlo(n, n_exp=500, seed=0)
    assert abs(mean - occupancy.expected_occupancy(n)) < 0.2
    assert abs(std - occupancy.occupancy_std(n)) < 0.25 * occupancy.occupancy_std(n)


def test_table13_closed_form_rounds_to_paper():
    # Table 13 (n_exp = 500): mean 6.5 / 31.7 / 63.4, std 1.0 / 2.2 / 3.2
    assert occupancy.expected_occupancy(10) == pytest.approx(6.5132156, abs=1e-6)
    assert round(occupancy.expected_occupancy(100), 1) == 63.4
    assert round(occupancy.occupancy_std(10), 1) == 1.0
    assert round(occupancy.occupancy_std(50), 1) == 2.2


def test_occupancy_hand_values():
    assert occupancy.expected_occupancy(1) == 1.0
    assert occupancy.expected_occupancy(2) == pytest.approx(1.5)
    assert occupancy.expected_occupancy(3) == pytest.approx(57 / 27)
    assert occupancy.occupancy_std(1) == 0.0
    assert occupancy.occupancy_std(2) == pytest.approx(0.5)
    # n = 3: P(1)=3/27, P(2)=18/27, P(3)=6/27
    assert occupancy.occupancy_pmf(3) == pytest.approx(np.array([0, 3, 18, 6]) / 27)
    assert occupancy.occupancy_pmf(1) == pytest.approx([0.0, 1.0])


def test_occupancy_pmf_moments_match_closed_forms():
    for n in (7, 64):
        pmf = occupancy.occupancy_pmf(n)
        k = np.arange(n + 1)
        mean = (pmf * k).sum()
        assert pmf.sum() == pytest.approx(1.0)
        assert mean == pytest.approx(occupancy.expected_occupancy(n))
        assert math.sqrt((pmf * (k - mean) ** 2).sum()) == pytest.approx(occupancy.occupancy_std(n))


def test_large_n_limits():
    n = 10**6
    assert occupancy.expected_occupancy(n) / n == pytest.approx(1 - math.exp(-1), rel=1e-5)
    # the occupied-count variance tends to N (e^-1 - 2 e^-2)
    assert occupancy.occupancy_std(n) ** 2 / n == pytest.approx(
        math.exp(-1) - 2 * math.exp(-2), rel=1e-3
    )


def test_ideal_sampling_chance_values():
    assert occupancy.ideal_sampling_chance(1) == 1.0
    assert occupancy.ideal_sampling_chance(2) == 0.5
    assert occupancy.ideal_sampling_chance(3) == pytest.approx(6 / 27)
    assert occupancy.ideal_sampling_chance(10) == pytest.approx(math.factorial(10) / 10**10)
    # beyond the exact-integer branch the log-space value agrees with Stirling
    assert occupancy.ideal_sampling_chance(1001) == 0.0
    for n in (700, 10**4, 10**7):
        log_p = occupancy.log_ideal_sampling_chance(n)
        assert math.isfinite(log_p)
        stirling = 0.5 * math.log(2 * math.pi * n) - n
        assert log_p == pytest.approx(stirling, abs=1e-3)
    assert occupancy.ideal_sampling_chance(700) == pytest.approx(
        math.exp(occupancy.log_ideal_sampling_chance(700)), rel=1e-9
    )
    assert occupancy.ideal_sampling_chance(700) > 0.0


def test_occupancy_deterministic_and_seeded():
    a = occupancy.occupancy_counts(37, n_exp=20, seed=3)
    b = occupancy.occupancy_counts(37, n_exp=20, seed=3)
    c = occupancy.occupancy_counts(37, n_exp=20, seed=4)
    assert a.shape == (20,) and a.dtype == np.int64
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert ((a >= 1) & (a <= 37)).all()
    assert occupancy.occupancy_monte_carlo(37, 20, 3) == (float(a.mean()), float(a.std(ddof=1)))
    assert occupancy.occupancy_counts(1, n_exp=5).tolist() == [1] * 5


@pytest.mark.parametrize(
    "call",
    [
        lambda: occupancy.expected_occupancy(0),
        lambda: occupancy.occupancy_std(-3),
        lambda: occupancy.ideal_sampling_chance(0),
        lambda: occupancy.log_ideal_sampling_chance(2.5),
        lambda: occupancy.occupancy_pmf(True),
        lambda: occupancy.occupancy_counts(10, n_exp=0),
        lambda: occupancy.occupancy_monte_carlo(10, n_exp=1),
        lambda: occupancy.occupancy_monte_carlo(10, seed=-1),
    ],
)
def test_occupancy_bad_input(call):
    with pytest.raises(ValueError, match="integer >="):
        call()
