"""Tests for dsco.metrics: MMD², the set distance, coverage and the per-class Reference."""

import math

import numpy as np
import pytest
import torch

from dsco import metrics as M
from dsco import theory


def test_mmd2():
    x, _ = theory.sample_gaussian_mixture(80, seed=0)
    assert M.mmd2(x, x, 0.5) == pytest.approx(0.0, abs=1e-12)
    assert M.mmd2(x, x + 2.0, 0.5) > M.mmd2(x, x + 0.2, 0.5) > 0
    assert M.mmd2(x[:10], x, 0.5) == pytest.approx(M.mmd2(x, x[:10], 0.5))
    # hand value: one point each, distance 1, bandwidth 1 -> 2 - 2 exp(-1/2)
    assert M.mmd2([[0.0]], [[1.0]], 1.0) == pytest.approx(2 - 2 * math.exp(-0.5))


def test_set_distance():
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    assert M.set_distance(x, x) == 0.0
    assert M.set_distance(x, x + [1.0, 3.0]) == pytest.approx(2.0)  # mean of W1 = 1 and 3
    assert M.set_distance(x, x + 1.0, "mmd") == pytest.approx(M.mmd2(x, x + 1.0))
    with pytest.raises(ValueError, match="unknown metric"):
        M.set_distance(x, x, "l2")


# ---- coverage of a real class by a synthetic set ----------------------------------------------


def test_coverage_hand_values():
    real = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [10.0, 0.0]])
    synthetic = np.array([[0.0, 1.0], [3.0, 2.0]])
    # nearest synthetic distances: 1, 2, 3, sqrt(49 + 4) = 7.28
    assert M.coverage(real, synthetic, 0.5) == 0.0
    assert M.coverage(real, synthetic, 1.0) == 0.25  # the radius is inclusive
    assert M.coverage(real, synthetic, 2.5) == 0.5
    assert M.coverage(real, synthetic, 3.0) == 0.75
    assert M.coverage(real, synthetic, 8.0) == 1.0
    assert M.coverage(real, real, 1e-9) == 1.0


def test_coverage_flattens_image_tensors():
    torch = pytest.importorskip("torch")
    real = torch.zeros(3, 1, 2, 2)
    real[1] += 1.0  # distance 2 from the zero image (4 pixels of 1)
    real[2] += 3.0  # distance 6
    synthetic = torch.zeros(1, 1, 2, 2)
    assert M.coverage(real, synthetic, 2.0) == pytest.approx(2 / 3)
    assert M.coverage(real.numpy(), synthetic.numpy(), 1.0) == pytest.approx(1 / 3)


def test_coverage_radius_hand_values():
    real = np.array([[0.0], [1.0], [3.0], [7.0]])
    # nearest-neighbour distances: 1, 1, 2, 4 -> median 1.5, min 1, max 4
    assert M.coverage_radius(real) == pytest.approx(1.5)
    assert M.coverage_radius(real, 0.0) == pytest.approx(1.0)
    assert M.coverage_radius(real, 1.0) == pytest.approx(4.0)
    # with the median radius the real set covers itself fully, a far-away set not at all
    r = M.coverage_radius(real)
    assert M.coverage(real, real + 100.0, r) == 0.0


def test_coverage_rejects_bad_input():
    real = np.zeros((4, 2))
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        M.coverage(real, real, 0.0)
    with pytest.raises(ValueError, match="differ in size"):
        M.coverage(real, np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match=r"shape \(n, \.\.\.\)"):
        M.coverage(np.zeros(4), real, 1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        M.coverage(real, np.full((1, 2), np.nan), 1.0)
    with pytest.raises(ValueError, match="at least 2 real samples"):
        M.coverage_radius(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"quantile must be a number in \[0, 1\]"):
        M.coverage_radius(real, 1.5)


def test_reference_measures_mmd_and_coverage_per_class():
    g = torch.Generator().manual_seed(0)
    real = {0: torch.randn(60, 1, 2, 2, generator=g), 3: torch.randn(40, 4, generator=g) + 5}
    ref = M.Reference(real)
    assert sorted(ref.points) == [0, 3] and ref.points[0].shape == (60, 4)
    assert ref.points[0].dtype == torch.float64
    median = torch.pdist(real[0].reshape(60, -1).double()).median()
    assert ref.bandwidth[0] == pytest.approx(float(median))
    assert ref.radius[3] == pytest.approx(M.coverage_radius(real[3]))
    same = ref.measure(real[0], 0)
    # the class itself
    assert same["mmd2"] == pytest.approx(0.0, abs=1e-12) and same["coverage"] == 1.0
    far = ref.measure(real[3].reshape(40, 1, 2, 2), 0)  # another class, 5 away
    assert far["mmd2"] > 0.5 and far["coverage"] == 0.0
    mid = ref.measure(real[0][:10], 0)
    assert 0 < mid["mmd2"] < far["mmd2"] and 0 < mid["coverage"] < 1
