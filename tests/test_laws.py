"""Tests for dsco.laws: the single-configuration scaling law err(k) = a / k^alpha + b."""

import numpy as np
import pytest

from dsco import laws


def test_scaling_law_values():
    assert laws.scaling_law(4, 10.0, 1.0) == pytest.approx(6.0)  # 10 / 2 + 1
    assert laws.scaling_law([1, 8], 8.0, 0.0, alpha=1.0).tolist() == [8.0, 1.0]


def test_fit_recovers_an_exact_law():
    k = np.array([1, 2, 5, 10, 20, 50])
    fit = laws.fit_scaling_law(k, laws.scaling_law(k, 30.0, 4.0))
    assert fit["a"] == pytest.approx(30.0) and fit["b"] == pytest.approx(4.0)
    assert fit["r2"] == pytest.approx(1.0) and fit["points"] == 6
    assert fit["k1"] == pytest.approx(900.0) and fit["alpha_free"] == pytest.approx(0.5, abs=1e-4)
    few = laws.fit_scaling_law(k[:3], laws.scaling_law(k[:3], 30.0, 4.0))
    assert np.isnan(few["alpha_free"])  # alpha is fitted with 4 or more points only


def _runs(alpha, replicates=5, noise=0.3, ks=(1, 2, 5, 10, 20, 40)):
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for m in ("Random", "DsCo"):
        for r in range(replicates):
            for k in ks:
                err = laws.scaling_law(k, 40.0, 5.0, alpha=alpha) + noise * rng.standard_normal()
                rows.append({"method": m, "replicate": r, "k": float(k), "err": err})
    return pd.DataFrame(rows)


def test_fit_replicates_gives_one_exponent_per_method_and_replicate():
    fits = laws.fit_replicates(_runs(0.5))
    assert len(fits) == 10 and list(fits.columns[:2]) == ["method", "replicate"]
    assert fits["alpha_free"].between(0.4, 0.6).all() and (fits["points"] == 6).all()
    few = laws.fit_replicates(_runs(0.5, ks=(1, 2, 5)))
    assert few["alpha_free"].isna().all()  # no free exponent with three IPCs


def test_claims_judge_the_exponent_by_equivalence_over_replicates():
    from dsco.verdicts import Verdict

    found = laws.claims(laws.fit_replicates(_runs(0.5)))
    assert len(found) == 2 and all(isinstance(v, Verdict) for v in found.values())
    claim = (
        "test error decays as a/√k + b (DsCo): the fitted exponent α of a·k^(−α) + b is 1/2 "
        "within ±0.25"
    )
    assert found[claim].verdict == "holds"
    assert laws.claims(laws.fit_replicates(_runs(1.5)))[claim].verdict == "does not hold"  # 1/k^1.5
    for few in (_runs(0.5, replicates=2), _runs(0.5, ks=(1, 2, 5))):
        assert laws.claims(laws.fit_replicates(few))[claim].verdict == "not measured"
