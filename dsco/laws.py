"""The single-configuration scaling law: test error against IPC (beyond the paper; notebook 52).

A related theory paper (Luo & Xu 2025, ``shared/paper/related/``) bounds the test error after
training on ``k`` distilled samples per class by ``a / sqrt(k) + b``. :func:`fit_scaling_law`
fits it to measured errors (``scipy.optimize.curve_fit``), :func:`scaling_law` evaluates it,
:func:`fit_replicates` fits every replicate's curve and :func:`claims` judges the law's exponent
with a rule of :mod:`dsco.verdicts`. (The configuration-coverage law, IPC against the number of
training configurations, lives with its experiment in :mod:`dsco.boundary`.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The exponent of the related work's law (err − b ∝ k^(−1/2)) and the claim's tolerance on it:
#: half the way to the nearest other simple rate on either side, 1/k (α = 1) and no decay (α = 0),
#: so an exponent shown inside 1/2 ± 1/4 is closer to 1/√k than to either.
EXPONENT, TOLERANCE = 0.5, 0.25


def fit_scaling_law(k, err) -> dict:
    """Least-squares fit of :func:`scaling_law` (``scipy.optimize.curve_fit``) to errors ``err``
    at IPCs ``k``: ``a, a_se, b, b_se, r2`` for α = 1/2, ``alpha_free`` (α fitted too, with 4 or
    more points; NaN if the fit does not converge), ``k1 = a²`` (the IPC where the estimation
    term is one error point) and ``points``."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    k, e = np.asarray(k, float), np.asarray(err, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        (a, b), cov = curve_fit(
            lambda x, a_, b_: scaling_law(x, a_, b_), k, e, p0=(max(e[0] - e[-1], 1.0), e[-1])
        )
        sa, sb = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else (np.nan, np.nan)
        alpha = np.nan
        if len(k) >= 4:
            try:
                alpha = curve_fit(
                    lambda x, a_, al, b_: scaling_law(x, a_, b_, al),
                    k,
                    e,
                    p0=(a, 0.5, b),
                    bounds=([-np.inf, 0.0, -np.inf], [np.inf, 3.0, np.inf]),
                    maxfev=20000,
                )[0][1]
            except RuntimeError:
                pass
    ss_tot = float(((e - e.mean()) ** 2).sum())
    r2 = 1 - float(((e - scaling_law(k, a, b)) ** 2).sum()) / ss_tot if ss_tot > 0 else np.nan
    return dict(a=a, a_se=sa, b=b, b_se=sb, r2=r2, alpha_free=alpha, k1=a**2, points=len(k))


def scaling_law(k, a: float, b: float, alpha: float = 0.5):
    """``err(k) = a / k^alpha + b``: the related work's bound on the test error after training on
    ``k`` distilled samples per class (``alpha = 1/2``; Luo & Xu 2025,
    ``shared/paper/related/``)."""
    return a * np.power(np.asarray(k, float), -alpha) + b


def fit_replicates(
    runs: pd.DataFrame, x: str = "k", y: str = "err", by=("method",), replicate: str = "replicate"
) -> pd.DataFrame:
    """:func:`fit_scaling_law` of ``y`` on ``x`` within every group of ``by`` and ``replicate``
    (the mean over any repeated rows of an ``x``): columns ``*by``, ``replicate``, ``a``, ``b``,
    ``r2``, ``alpha_free``, ``points``. A fit that does not converge gives NaN."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, g in runs.groupby([*by, replicate], sort=False):
        curve = g.groupby(x)[y].mean().sort_index()
        row = dict(zip([*by, replicate], key if isinstance(key, tuple) else (key,)))
        try:
            f = fit_scaling_law(curve.index.to_numpy(float), curve.to_numpy(float))
        except (RuntimeError, ValueError, TypeError):  # no convergence, or too few points
            f = dict.fromkeys(("a", "b", "r2", "alpha_free"), np.nan) | {"points": len(curve)}
        rows.append(row | {k: f[k] for k in ("a", "b", "r2", "alpha_free", "points")})
    return pd.DataFrame(rows)


def claims(fits: pd.DataFrame, tolerance: float = TOLERANCE, by: str = "method") -> dict:
    """The related work's single-configuration law per group of ``by`` (a method) as
    ``{claim: Verdict}`` (:func:`dsco.scorecard.record`): "the test error decays as a/√k + b".

    Rule: :func:`dsco.verdicts.equivalent` -- the free exponent α of ``a·k^(−α) + b``
    (``alpha_free`` of :func:`fit_replicates`, one per replicate: each its own sets and training
    seed) equals :data:`EXPONENT` within ``tolerance`` (two one-sided t-tests over the replicates,
    95 %). A replicate without a free exponent (fewer than 4 IPCs, or no convergence) is left out;
    fewer than 3 left: not measured. Assumes independent, roughly normal exponents."""
    from . import verdicts

    out = {}
    for group, g in fits.groupby(by, sort=False):
        alpha = g["alpha_free"].dropna()
        out[
            f"test error decays as a/√k + b ({group}): the fitted exponent α of a·k^(−α) + b is "
            f"1/2 within ±{tolerance:g}"
        ] = verdicts.equivalent(alpha, EXPONENT, tolerance, what=f"α ({group})")
    return out
