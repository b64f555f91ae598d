"""Tests for dsco.laws: the single-configuration scaling law err(k) = a / k^alpha + b."""
import numpy as np
import pytest

from dsco import laws


def test_scaling_law_values():
    assert laws.scaling_law(4, 10.0, 1.0) == pytest.approx(6.0)             # 10 / 2 + 1
    assert laws.scaling_law([1, 8], 8.0, 0.0, alpha=1.0).tolist() == [8.0, 1.0]


def test_fit_recovers_an_exact_law():
    k = np.array([1, 2, 5, 10, 20, 50])
    fit = laws.fit_scaling_law(k, laws.scaling_law(k, 30.0, 4.0))
    assert fit["a"] == pytest.approx(30.0) and fit["b"] == pytest.approx(4.0)
    assert fit["r2"] == pytest.approx(1.0) and fit["points"] == 6
    assert fit["k1"] == pytest.approx(900.0) and fit["alpha_free"] == pytest.approx(0.5, abs=1e-4)
    few = laws.fit_scaling_law(k[:3], laws.scaling_law(k[:3], 30.0, 4.0))
    assert np.isnan(few["alpha_free"])   # alpha is fitted with 4 or more points only
