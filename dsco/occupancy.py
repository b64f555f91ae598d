"""Random sampling bias, counted (paper §3.4, Appendix B, Table 13): how many of ``N`` equal regions
do ``N`` uniform draws occupy?

The paper's stand-in for ``N`` Gaussian noises on the sphere: ``N`` uniform labels out of ``N``
equal regions. :func:`occupancy_monte_carlo` estimates the number of occupied regions (the paper's
experiment; :func:`occupancy_counts` gives every experiment's count), :func:`expected_occupancy`
and :func:`occupancy_std` give the exact mean and standard deviation, :func:`occupancy_pmf` the
exact distribution, :func:`ideal_sampling_chance` the chance ``N!/N^N`` that every region gets
exactly one draw (:func:`log_ideal_sampling_chance` its log). :func:`check_int` is the integer
check these and :mod:`dsco.theory` share.

Everything is CPU, float64 and deterministic for a given seed.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def occupancy_counts(n: int, n_exp: int = 500, seed: int = 0) -> np.ndarray:
    """Number of occupied regions in each of ``n_exp`` Monte-Carlo experiments (Appendix B).

    One experiment draws ``n`` region indices uniformly from ``{0, ..., n-1}`` (the paper's
    ``torch.randint(n_smps, (n_exp, n_smps))``) and counts the regions hit at least once.
    Vectorised with one ``bincount`` per chunk of experiments; the chunk size depends on ``n`` only,
    so the result is a deterministic function of ``(n, n_exp, seed)``.

    Returns an int64 array of shape ``(n_exp,)``.
    """
    n = check_int(n, "n")
    n_exp = check_int(n_exp, "n_exp")
    seed = check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // n)  # keep each chunk at ~4M draws
    counts = np.empty(n_exp, dtype=np.int64)
    for lo in range(0, n_exp, chunk):
        rows = min(chunk, n_exp - lo)
        draws = rng.integers(0, n, size=(rows, n))
        # offset each experiment's region ids so a single bincount counts all experiments
        flat = (draws + n * np.arange(rows)[:, None]).ravel()
        hits = np.bincount(flat, minlength=rows * n).reshape(rows, n)
        counts[lo : lo + rows] = (hits > 0).sum(axis=1)
    return counts


def occupancy_monte_carlo(n: int, n_exp: int = 500, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the number of occupied regions (Appendix B, Table 13).

    ``n`` uniform draws into ``n`` equal regions, repeated ``n_exp`` times (the paper uses
    ``n_exp = 500``). The standard deviation is the sample one (``ddof=1``), like ``torch.std``.
    Needs ``n_exp >= 2``.
    """
    n_exp = check_int(n_exp, "n_exp", minimum=2)
    counts = occupancy_counts(n, n_exp, seed)
    return float(counts.mean()), float(counts.std(ddof=1))


def expected_occupancy(n: int) -> float:
    """Exact expected number of occupied regions, ``N (1 - (1 - 1/N)^N)``.

    Each region stays empty with chance ``(1 - 1/N)^N``, which tends to ``1/e``: asymptotically a
    fraction ``1 - 1/e ≈ 0.632`` of the regions is occupied (Appendix B: "no less than 35% of the
    regions are unoccupied").
    """
    n = check_int(n, "n")
    return n * (1.0 - _empty_chance(n, 1))


def occupancy_std(n: int) -> float:
    """Exact standard deviation of the number of occupied regions (the ``std`` row of Table 13).

    With ``q1 = (1-1/N)^N`` and ``q2 = (1-2/N)^N`` the number of empty regions has variance
    ``N q1 + N(N-1) q2 - N^2 q1^2``; the occupied count ``N - empty`` has the same variance. The
    difference ``q2 - q1^2`` is formed as ``q1^2 · expm1(...)`` to avoid cancellation at large N.
    """
    n = check_int(n, "n")
    if n == 1:
        return 0.0
    q1 = _empty_chance(n, 1)
    if n == 2:
        q2_minus_q1sq = 0.0 - q1 * q1
    else:
        log_ratio = n * math.log1p(-2.0 / n) - 2.0 * n * math.log1p(-1.0 / n)
        q2_minus_q1sq = q1 * q1 * math.expm1(log_ratio)
    q2 = q1 * q1 + q2_minus_q1sq
    var = n * q1 - n * q2 + n * n * q2_minus_q1sq
    return math.sqrt(max(var, 0.0))


def occupancy_pmf(n: int) -> np.ndarray:
    """Exact distribution of the number of occupied regions: ``pmf[k] = P(k regions occupied)``.

    Built draw by draw: after one more draw, ``k`` occupied regions stay ``k`` with chance ``k/N``
    or grow from ``k-1`` with chance ``(N-k+1)/N``. Returns an array of length ``N + 1`` (index =
    number of occupied regions) that sums to 1; its mean and standard deviation are
    :func:`expected_occupancy` and :func:`occupancy_std`. O(N^2) time.
    """
    n = check_int(n, "n")
    k = np.arange(n + 1, dtype=np.float64)
    pmf = np.zeros(n + 1)
    pmf[0] = 1.0  # before any draw, no region is occupied
    for _ in range(n):
        grown = np.zeros_like(pmf)
        grown[1:] = pmf[:-1] * (n - k[1:] + 1) / n
        pmf = pmf * k / n + grown
    return pmf


def log_ideal_sampling_chance(n: int) -> float:
    """Natural log of the ideal-sampling chance ``log(N!/N^N) = lgamma(N+1) - N log N``.

    Finite for every ``N`` (about ``-N`` for large ``N``, by Stirling); use it where
    :func:`ideal_sampling_chance` underflows.
    """
    n = check_int(n, "n")
    return math.lgamma(n + 1) - n * math.log(n)


def ideal_sampling_chance(n: int) -> float:
    """Chance ``N!/N^N`` that ``N`` uniform draws hit each of ``N`` regions exactly once (App. B).

    Up to ``N = 1000`` this is the correctly rounded ratio of the exact integers (Python's ``int /
    int``); beyond, ``exp`` of the log-space value (``lgamma``). Either way the float result is
    ``0.0`` only where the true value is below the smallest double (~1e-308 with subnormals,
    from ``N = 750`` on). See :func:`log_ideal_sampling_chance` for the always-finite log.
    """
    n = check_int(n, "n")
    if n <= 1000:
        return math.factorial(n) / n**n
    return math.exp(log_ideal_sampling_chance(n))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _empty_chance(n: int, k: int) -> float:
    """``(1 - k/n)^n``: the chance that ``k`` given regions all stay empty (stable via log1p)."""
    if k == n:
        return 0.0
    return math.exp(n * math.log1p(-k / n))


def check_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise one clear ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be an integer >= {minimum} (got {value!r}): pass a whole number"
        )
    if value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum} (got {value}): pass a larger {name}"
        )
    return int(value)
