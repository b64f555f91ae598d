"""Tests for dsco.theory: the RKHS toy (§3.1–3.2) and the far-apart samples (§3.5)."""

import math

import numpy as np
import pytest

from dsco import metrics
from dsco import theory as T

# ---- Part 1: RKHS toy --------------------------------------------------------------------------


def _small_case(seed=0, n=120):
    x, labels = T.sample_gaussian_mixture(n, seed=seed)
    return x, labels


def test_gaussian_mixture_sampler():
    x, labels = _small_case()
    assert x.shape == (120, 2) and labels.shape == (120,)
    x2, labels2 = _small_case()
    assert np.array_equal(x, x2) and np.array_equal(labels, labels2)
    assert not np.array_equal(x, _small_case(seed=1)[0])
    # component means are recovered roughly and the heaviest component dominates
    big, _ = T.sample_gaussian_mixture(4000, seed=0)
    _, lab = T.sample_gaussian_mixture(4000, seed=0)
    assert np.bincount(lab).argmax() == 0
    assert np.allclose(big[lab == 0].mean(0), T.GMM_MEANS[0], atol=0.1)
    with pytest.raises(ValueError, match="means must be"):
        T.sample_gaussian_mixture(5, means=[0.0, 1.0])
    with pytest.raises(ValueError, match="scales must be > 0"):
        T.sample_gaussian_mixture(5, scales=(1.0, 0.0, 1.0))


def test_kernel_properties():
    x, _ = _small_case(n=40)
    k = T.gaussian_kernel(x, x, bandwidth=0.7)
    assert k.shape == (40, 40)
    assert np.allclose(np.diag(k), 1.0)
    assert np.allclose(k, k.T)
    assert ((k > 0) & (k <= 1 + 1e-12)).all()
    assert np.linalg.eigvalsh(k).min() > -1e-9  # positive semi-definite
    # shift invariance
    assert np.allclose(T.gaussian_kernel(x + 3.0, x[:5] + 3.0, 0.7), k[:, :5])
    # hand value: distance 1, bandwidth 1 -> exp(-1/2)
    assert T.gaussian_kernel([[0.0, 0.0]], [[1.0, 0.0]])[0, 0] == pytest.approx(math.exp(-0.5))
    # Eq. 2-3: ||f^a - f^b||^2 = 2 - 2k, decreasing in k
    d2 = T.rkhs_sq_distance(x, x, 0.7)
    assert np.allclose(d2, np.diag(k)[:, None] + np.diag(k)[None, :] - 2 * k)
    assert ((d2 >= -1e-12) & (d2 <= 2)).all()


def test_recognition_radius():
    r = T.recognition_radius(bandwidth=0.5, threshold=0.05)
    assert T.gaussian_kernel([[0.0, 0.0]], [[r, 0.0]], 0.5)[0, 0] == pytest.approx(0.05)
    assert T.recognition_radius(2.0) == pytest.approx(4 * T.recognition_radius(0.5))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        T.recognition_radius(1.0, threshold=1.0)


def test_recognition_chance_eq6():
    x, _ = _small_case(n=50)
    s = x[:6]
    k = T.gaussian_kernel(x, s, 0.8)
    lin = T.recognition_chance(x, s, 0.8, h="linear")
    sat = T.recognition_chance(x, s, 0.8, h="saturating")
    log = T.recognition_chance(x, s, 0.8, h="log")
    assert np.allclose(lin, k.sum(1) / 6)
    assert np.allclose(sat, 1 - np.exp(-k.sum(1)))
    assert np.allclose(log, np.log(k.mean(1)))
    assert ((lin > 0) & (lin <= 1)).all() and ((sat > 0) & (sat < 1)).all()
    assert T.expected_recognition_chance(x, s, 0.8, "saturating") == pytest.approx(sat.mean())
    # a surrogate on top of a target recognises it more than a far one (Eq. 4)
    near = T.recognition_chance([[0.0, 0.0]], [[0.1, 0.0]], 1.0)[0]
    far = T.recognition_chance([[0.0, 0.0]], [[3.0, 0.0]], 1.0)[0]
    assert near > far
    # log h stays finite far away (log-sum-exp)
    assert np.isfinite(T.recognition_chance([[0.0, 0.0]], [[100.0, 0.0]], 0.1, h="log")).all()


def test_optimiser_lowers_mmd_and_is_deterministic():
    x, _ = _small_case(n=100)
    init = np.random.default_rng(0).uniform(-6, 6, size=(8, 2))
    fit = T.optimise_surrogates(
        x,
        init,
        bandwidth=0.8,
        objective="mmd",
        steps=60,
        lr=0.1,
        log_every=10,
        snapshot_steps=(0, 60),
    )
    assert fit.surrogates.shape == (8, 2)
    assert list(fit.history.columns) == ["step", "expected_recognition", "mmd2"]
    assert fit.history.step.tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert fit.history.mmd2.iloc[-1] < 0.5 * fit.history.mmd2.iloc[0]
    assert np.array_equal(fit.snapshots[0], init)
    assert np.array_equal(fit.snapshots[60], fit.surrogates)
    again = T.optimise_surrogates(
        x, init, bandwidth=0.8, objective="mmd", steps=60, lr=0.1, log_every=10
    )
    assert np.array_equal(fit.surrogates, again.surrogates)
    # init is not modified in place
    assert np.array_equal(init, np.random.default_rng(0).uniform(-6, 6, size=(8, 2)))


@pytest.mark.parametrize("h", ["linear", "saturating"])
def test_optimiser_raises_expected_recognition(h):
    x, _ = _small_case(n=100)
    init = np.random.default_rng(1).uniform(-6, 6, size=(6, 2))
    fit = T.optimise_surrogates(x, init, bandwidth=0.8, h=h, steps=40, lr=0.1, log_every=40)
    first, last = fit.history.expected_recognition.iloc[[0, -1]]
    assert last > first
    assert last == pytest.approx(T.expected_recognition_chance(x, fit.surrogates, 0.8, h))


def test_linear_h_collapses_onto_one_mode():
    # Eq. 7 with linear h is linear in P_S: its maximiser is a point mass at the mode of g * P_T.
    x = np.random.default_rng(0).normal(size=(200, 1))
    init = np.linspace(-1.0, 1.0, 5)[:, None]
    fit = T.optimise_surrogates(
        x, init, bandwidth=1.0, h="linear", steps=120, lr=0.1, log_every=120
    )
    assert np.ptp(fit.surrogates) < 0.05


def test_rkhs_bad_input():
    x, _ = _small_case(n=10)
    with pytest.raises(ValueError, match="bandwidth must be"):
        T.gaussian_kernel(x, x, bandwidth=0)
    with pytest.raises(ValueError, match="shape \\(n, d\\)"):
        metrics.mmd2(x[:, 0], x, 1.0)
    with pytest.raises(ValueError, match="dimensions differ"):
        T.recognition_chance(x, x[:, :1], 1.0)
    with pytest.raises(ValueError, match="unknown h"):
        T.recognition_chance(x, x, 1.0, h="sigmoid")
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.mmd2(np.full((2, 2), np.nan), x, 1.0)
    with pytest.raises(ValueError, match="unknown objective"):
        T.optimise_surrogates(x, x[:2], objective="kl")
    with pytest.raises(ValueError, match="steps must be"):
        T.optimise_surrogates(x, x[:2], steps=-1)


# ---- Part 2: far-apart samples (§3.5) -----------------------------------------------------------


def test_recognised_hand_values():
    targets = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    surrogates = np.array([[0.0, 0.5]])
    assert T.recognised(targets, surrogates, 0.5).tolist() == [True, False, False]
    assert T.recognised(targets, surrogates, 1.2).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        T.recognised(targets, surrogates, 0.0)
    with pytest.raises(ValueError, match="point dimensions differ"):
        T.recognised(targets, np.zeros((1, 3)), 1.0)


def test_far_apart_mask_definition():
    # nearest-neighbour distances: 1, 1, 4.0 (point 2 to point 1) -> with radius 1 only point 2 is >
    # 2
    points = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    assert T.far_apart_mask(points, 1.0).tolist() == [False, False, True]
    assert T.far_apart_mask(points, 2.0).tolist() == [False, False, False]
    assert T.far_apart_mask(points[:1], 1.0).tolist() == [True]


def test_sample_far_apart_target_places_far_points_and_is_deterministic():
    r = 0.3
    pts, scattered = T.sample_far_apart_target(200, 15, r, seed=3)
    assert pts.shape == (215, 2) and scattered.sum() == 15 and not scattered[:200].any()
    assert T.far_apart_mask(pts, r)[scattered].all()
    # a surrogate ball of radius r around any point holds at most one scattered point
    far = pts[scattered]
    d = np.linalg.norm(far[:, None] - far[None], axis=-1) + np.eye(15) * 1e9
    assert d.min() > 2 * r
    pts2, _ = T.sample_far_apart_target(200, 15, r, seed=3)
    np.testing.assert_array_equal(pts, pts2)
    with pytest.raises(ValueError, match="use a larger box"):
        T.sample_far_apart_target(10, 50, 1.0, box=2.0, max_tries=200)


def test_describe_set_counts_positions_coverage_and_component_shares():
    targets, _ = T.sample_gaussian_mixture(300, seed=0)
    means = np.array(T.GMM_MEANS)
    collapsed = np.repeat(means[:1], 4, axis=0)  # every surrogate on the first component's mean
    row = T.describe_set(collapsed, targets, 0.5)
    assert row["distinct_positions"] == 1 and row["mean_nn_distance"] == 0.0
    assert (row["share_c0"], row["share_c1"], row["share_c2"]) == (1.0, 0.0, 0.0)
    spread = T.describe_set(means, targets, 0.5)
    assert spread["distinct_positions"] == 3 and spread["share_c2"] == pytest.approx(1 / 3)
    assert spread["mmd2"] == pytest.approx(metrics.mmd2(means, targets, 0.5))
    assert spread["covered_pct"] > row["covered_pct"] and 0 <= spread["covered_pct"] <= 100


def test_smoothed_draws_and_farthest_first_doping():
    target = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    a = T.smoothed_draws(target, 50, 0.1, [0, 1, 7])
    assert a.shape == (50, 2) and np.array_equal(a, T.smoothed_draws(target, 50, 0.1, [0, 1, 7]))
    assert np.abs(a[:, 1]).max() < 1.0  # every draw stays near a target point
    doped = T.dope_farthest(target, np.array([[0.0, 0.0]]), 2)
    assert doped.tolist() == [[0.0, 0.0], [10.0, 0.0], [1.0, 0.0]]  # the farthest first


def test_prop1_draw_is_seeded_and_prop1_sweep_has_one_row_per_replicate_and_bandwidth():
    targets, init, subsets = T.prop1_draw(60, 5, 3, seed=2)
    assert targets.shape == (60, 2) and init.shape == (5, 2) and len(subsets) == 3
    assert np.array_equal(targets, T.sample_gaussian_mixture(60, seed=2)[0])
    assert all((s[:, None] == targets[None]).all(-1).any(1).all() for s in subsets)  # points of T
    assert (init >= targets.min(0)).all() and (init <= targets.max(0)).all()
    again = T.prop1_draw(60, 5, 3, seed=2)
    assert np.array_equal(init, again[1]) and not np.array_equal(init, T.prop1_draw(60, 5, 3, 3)[1])
    fits = {"MMD": dict(objective="mmd"), "linear h": dict(h="linear")}
    sweep = T.prop1_sweep(60, 5, [0.5, 1.0], fits, seeds=[2, 3], steps=30, lr=0.1, n_subsets=3)
    assert sweep[["replicate", "seed", "bandwidth"]].values.tolist() == [
        [0, 2, 0.5],
        [0, 2, 1.0],
        [1, 3, 0.5],
        [1, 3, 1.0],
    ]
    assert {"start", "random_subset", "MMD", "linear h", "MMD: distinct"} <= set(sweep.columns)
    assert (sweep["MMD"] < sweep["start"]).all()  # the optimiser moved towards the targets
