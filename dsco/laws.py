"""The single-configuration scaling law: test error against IPC (beyond the paper; notebook 52).

A related theory paper (Luo & Xu 2025, ``shared/paper/related/``) bounds the test error after
training on ``k`` distilled samples per class by ``a / sqrt(k) + b``. :func:`fit_scaling_law`
fits it to measured errors (``scipy.optimize.curve_fit``), :func:`scaling_law` evaluates it.
(The configuration-coverage law, IPC against the number of training configurations, lives with
its experiment in :mod:`dsco.boundary`.)
"""
from __future__ import annotations

import numpy as np


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
        (a, b), cov = curve_fit(lambda x, a_, b_: scaling_law(x, a_, b_), k, e,
                                p0=(max(e[0] - e[-1], 1.0), e[-1]))
        sa, sb = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else (np.nan, np.nan)
        alpha = np.nan
        if len(k) >= 4:
            try:
                alpha = curve_fit(lambda x, a_, al, b_: scaling_law(x, a_, b_, al), k, e,
                                  p0=(a, 0.5, b),
                                  bounds=([-np.inf, 0.0, -np.inf], [np.inf, 3.0, np.inf]),
                                  maxfev=20000)[0][1]
            except RuntimeError:
                pass
    ss_tot = float(((e - e.mean()) ** 2).sum())
    r2 = 1 - float(((e - scaling_law(k, a, b)) ** 2).sum()) / ss_tot if ss_tot > 0 else np.nan
    return dict(a=a, a_se=sa, b=b, b_se=sb, r2=r2, alpha_free=alpha, k1=a ** 2, points=len(k))


def scaling_law(k, a: float, b: float, alpha: float = 0.5):
    """``err(k) = a / k^alpha + b``: the related work's bound on the test error after training on
    ``k`` distilled samples per class (``alpha = 1/2``; Luo & Xu 2025,
    ``shared/paper/related/``)."""
    return a * np.power(np.asarray(k, float), -alpha) + b
