"""Tests for dsco.theory: occupancy (App. B, Table 13) and the RKHS toy (§3.1–3.2)."""
import math

import numpy as np
import pytest

from dsco import theory as T


# ---- Part 1: occupancy -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [10, 50, 100])
def test_monte_carlo_matches_closed_form(n):
    mean, std = T.occupancy_monte_carlo(n, n_exp=500, seed=0)
    assert abs(mean - T.expected_occupancy(n)) < 0.2
    assert abs(std - T.occupancy_std(n)) < 0.25 * T.occupancy_std(n)


def test_table13_closed_form_rounds_to_paper():
    # Table 13 (n_exp = 500): mean 6.5 / 31.7 / 63.4, std 1.0 / 2.2 / 3.2
    assert T.expected_occupancy(10) == pytest.approx(6.5132156, abs=1e-6)
    assert round(T.expected_occupancy(100), 1) == 63.4
    assert round(T.occupancy_std(10), 1) == 1.0
    assert round(T.occupancy_std(50), 1) == 2.2


def test_occupancy_hand_values():
    assert T.expected_occupancy(1) == 1.0
    assert T.expected_occupancy(2) == pytest.approx(1.5)
    assert T.expected_occupancy(3) == pytest.approx(57 / 27)
    assert T.occupancy_std(1) == 0.0
    assert T.occupancy_std(2) == pytest.approx(0.5)
    # n = 3: P(1)=3/27, P(2)=18/27, P(3)=6/27
    assert T.occupancy_pmf(3) == pytest.approx(np.array([0, 3, 18, 6]) / 27)
    assert T.occupancy_pmf(1) == pytest.approx([0.0, 1.0])


def test_occupancy_pmf_moments_match_closed_forms():
    for n in (7, 64):
        pmf = T.occupancy_pmf(n)
        k = np.arange(n + 1)
        mean = (pmf * k).sum()
        assert pmf.sum() == pytest.approx(1.0)
        assert mean == pytest.approx(T.expected_occupancy(n))
        assert math.sqrt((pmf * (k - mean) ** 2).sum()) == pytest.approx(T.occupancy_std(n))


def test_large_n_limits():
    n = 10 ** 6
    assert T.expected_occupancy(n) / n == pytest.approx(1 - math.exp(-1), rel=1e-5)
    # the occupied-count variance tends to N (e^-1 - 2 e^-2)
    assert T.occupancy_std(n) ** 2 / n == pytest.approx(math.exp(-1) - 2 * math.exp(-2), rel=1e-3)


def test_ideal_sampling_chance_values():
    assert T.ideal_sampling_chance(1) == 1.0
    assert T.ideal_sampling_chance(2) == 0.5
    assert T.ideal_sampling_chance(3) == pytest.approx(6 / 27)
    assert T.ideal_sampling_chance(10) == pytest.approx(math.factorial(10) / 10 ** 10)
    # beyond the exact-integer branch the log-space value agrees with Stirling
    assert T.ideal_sampling_chance(1001) == 0.0
    for n in (700, 10 ** 4, 10 ** 7):
        log_p = T.log_ideal_sampling_chance(n)
        assert math.isfinite(log_p)
        stirling = 0.5 * math.log(2 * math.pi * n) - n
        assert log_p == pytest.approx(stirling, abs=1e-3)
    assert T.ideal_sampling_chance(700) == pytest.approx(math.exp(T.log_ideal_sampling_chance(700)),
                                                         rel=1e-9)
    assert T.ideal_sampling_chance(700) > 0.0


def test_occupancy_deterministic_and_seeded():
    a = T.occupancy_counts(37, n_exp=20, seed=3)
    b = T.occupancy_counts(37, n_exp=20, seed=3)
    c = T.occupancy_counts(37, n_exp=20, seed=4)
    assert a.shape == (20,) and a.dtype == np.int64
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert ((a >= 1) & (a <= 37)).all()
    assert T.occupancy_monte_carlo(37, 20, 3) == (float(a.mean()), float(a.std(ddof=1)))
    assert T.occupancy_counts(1, n_exp=5).tolist() == [1] * 5


@pytest.mark.parametrize("call", [
    lambda: T.expected_occupancy(0),
    lambda: T.occupancy_std(-3),
    lambda: T.ideal_sampling_chance(0),
    lambda: T.log_ideal_sampling_chance(2.5),
    lambda: T.occupancy_pmf(True),
    lambda: T.occupancy_counts(10, n_exp=0),
    lambda: T.occupancy_monte_carlo(10, n_exp=1),
    lambda: T.occupancy_monte_carlo(10, seed=-1),
])
def test_occupancy_bad_input(call):
    with pytest.raises(ValueError, match="integer >="):
        call()


# ---- Part 2: RKHS toy --------------------------------------------------------------------------

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


def test_mmd2():
    x, _ = _small_case(n=80)
    assert T.mmd2(x, x, 0.5) == pytest.approx(0.0, abs=1e-12)
    assert T.mmd2(x, x + 2.0, 0.5) > T.mmd2(x, x + 0.2, 0.5) > 0
    assert T.mmd2(x[:10], x, 0.5) == pytest.approx(T.mmd2(x, x[:10], 0.5))
    # hand value: one point each, distance 1, bandwidth 1 -> 2 - 2 exp(-1/2)
    assert T.mmd2([[0.0]], [[1.0]], 1.0) == pytest.approx(2 - 2 * math.exp(-0.5))


def test_optimiser_lowers_mmd_and_is_deterministic():
    x, _ = _small_case(n=100)
    init = np.random.default_rng(0).uniform(-6, 6, size=(8, 2))
    fit = T.optimise_surrogates(x, init, bandwidth=0.8, objective="mmd", steps=60, lr=0.1,
                                log_every=10, snapshot_steps=(0, 60))
    assert fit.surrogates.shape == (8, 2)
    assert list(fit.history.columns) == ["step", "expected_recognition", "mmd2"]
    assert fit.history.step.tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert fit.history.mmd2.iloc[-1] < 0.5 * fit.history.mmd2.iloc[0]
    assert np.array_equal(fit.snapshots[0], init)
    assert np.array_equal(fit.snapshots[60], fit.surrogates)
    again = T.optimise_surrogates(x, init, bandwidth=0.8, objective="mmd", steps=60, lr=0.1,
                                  log_every=10)
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
    fit = T.optimise_surrogates(x, init, bandwidth=1.0, h="linear", steps=120, lr=0.1,
                                log_every=120)
    assert np.ptp(fit.surrogates) < 0.05


def test_rkhs_bad_input():
    x, _ = _small_case(n=10)
    with pytest.raises(ValueError, match="bandwidth must be"):
        T.gaussian_kernel(x, x, bandwidth=0)
    with pytest.raises(ValueError, match="shape \\(n, d\\)"):
        T.mmd2(x[:, 0], x, 1.0)
    with pytest.raises(ValueError, match="dimensions differ"):
        T.recognition_chance(x, x[:, :1], 1.0)
    with pytest.raises(ValueError, match="unknown h"):
        T.recognition_chance(x, x, 1.0, h="sigmoid")
    with pytest.raises(ValueError, match="NaN or inf"):
        T.mmd2(np.full((2, 2), np.nan), x, 1.0)
    with pytest.raises(ValueError, match="unknown objective"):
        T.optimise_surrogates(x, x[:2], objective="kl")
    with pytest.raises(ValueError, match="steps must be"):
        T.optimise_surrogates(x, x[:2], steps=-1)


# ---- Part 3: exact-score Gaussian-mixture diffusion (§3.4) ---------------------------------------

import torch  # noqa: E402

from dsco import backbones as B  # noqa: E402
from dsco import nopt  # noqa: E402


@pytest.mark.parametrize("means,scales,weights", [
    (T.GMM_MEANS, T.GMM_SCALES, T.GMM_WEIGHTS),
    ([[-2.0], [1.5]], [0.5, 0.8], [0.3, 0.7]),
])
@pytest.mark.parametrize("t", [0, 300, 999])
def test_gmm_exact_score_matches_finite_difference(means, scales, weights, t):
    bb = T.GaussianMixtureDiffusion(means, scales, weights)
    z = torch.as_tensor(np.random.default_rng(0).normal(size=(5, bb.dim)) * 2)
    h = 1e-5
    fd = torch.stack([(bb.log_prob(z + h * e, t) - bb.log_prob(z - h * e, t)) / (2 * h)
                      for e in torch.eye(bb.dim, dtype=torch.float64)], dim=1)
    assert torch.allclose(bb.score(z, t), fd, atol=1e-6)
    # the ε-prediction is −√(1−ᾱ_t)·score, with the latent shape (D, 1, 1)
    a = bb.scheduler.alphas_cumprod[t].double()
    eps = bb._forward(z.float().reshape(5, bb.dim, 1, 1), t, 0)
    assert eps.shape == (5, bb.dim, 1, 1)
    assert torch.allclose(eps.reshape(5, -1).double(), -(1 - a).sqrt() * bb.score(z, t), atol=1e-5)


def test_gmm_log_prob_is_the_noisy_mixture_density():
    bb = T.GaussianMixtureDiffusion([[0.0], [3.0]], [1.0, 0.5], [0.5, 0.5])
    a = float(bb.scheduler.alphas_cumprod[500])
    z = torch.tensor([[0.7]], dtype=torch.float64)
    dens = sum(0.5 / math.sqrt(2 * math.pi * v) * math.exp(-(0.7 - math.sqrt(a) * m) ** 2 / (2 * v))
               for m, v in ((0.0, a * 1.0 + 1 - a), (3.0, a * 0.25 + 1 - a)))
    assert float(bb.log_prob(z, 500)) == pytest.approx(math.log(dens), rel=1e-10)


def test_gmm_sampling_recovers_mean_and_variance():
    torch.set_num_threads(1)
    bb = T.GaussianMixtureDiffusion()
    z, labels = B.sample(bb, [0], 2000, seed=0, num_steps=250, progress=False)
    assert z.shape == (2000, 2, 1, 1) and labels.tolist() == [0] * 2000
    x = z.reshape(-1, 2).double().numpy()
    ref = T.sample_gaussian_mixture(50_000, seed=1)[0]
    assert np.allclose(x.mean(0), ref.mean(0), atol=0.15)
    assert np.allclose(x.var(0), ref.var(0), rtol=0.1)


def test_gmm_marginal_sample_is_the_diffused_target():
    bb = T.GaussianMixtureDiffusion()
    x0 = T.sample_gaussian_mixture(20_000, seed=3)[0]
    noise = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    zt = bb.q_sample(torch.as_tensor(x0), 600, noise).numpy()
    direct = bb.marginal_sample(20_000, 600, seed=4)
    assert T.set_distance(zt, direct) < 0.05
    assert np.allclose(zt.var(0), direct.var(0), rtol=0.05)


def test_gmm_backbone_runs_through_nopt_and_traces_steps():
    torch.set_num_threads(1)
    bb = T.GaussianMixtureDiffusion(num_steps=5)
    plain, _ = B.sample(bb, [0], 8, seed=1, num_steps=5, progress=False)
    bb.trace = []
    none, _, log = nopt.synthesize(bb, [0], 8, "none", seed=1, num_steps=5, progress=False)
    assert torch.equal(plain, none) and log.empty
    assert [t for t, _ in bb.trace] == bb.timesteps.tolist() and bb.trace[0][1].shape == (8, 2)
    real = {0: torch.as_tensor(T.sample_gaussian_mixture(200, seed=0)[0], dtype=torch.float32).reshape(-1, 2, 1, 1)}
    z, _, log = nopt.synthesize(bb, [0], 8, "accessible", seed=1, num_steps=5, iterations=20,
                                real_latents=real, projector={"in_channels": 2, "widths": (16,), "groups": 1},
                                progress=False)
    assert z.shape == (8, 2, 1, 1) and torch.isfinite(z).all()
    assert (log["align_last"] < log["align_first"]).all()


def test_gmm_backbone_rejects_bad_input():
    with pytest.raises(ValueError, match="means must be"):
        T.GaussianMixtureDiffusion(means=[0.0, 1.0])
    bb = T.GaussianMixtureDiffusion()
    with pytest.raises(ValueError, match="points must be"):
        bb.score(torch.zeros(3, 5), 10)
    with pytest.raises(ValueError, match="training timestep"):
        bb.log_prob(torch.zeros(3, 2), 1000)


def test_set_distance():
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    assert T.set_distance(x, x) == 0.0
    assert T.set_distance(x, x + [1.0, 3.0]) == pytest.approx(2.0)  # mean of W1 = 1 and 3
    assert T.set_distance(x, x + 1.0, "mmd") == pytest.approx(T.mmd2(x, x + 1.0))
    with pytest.raises(ValueError, match="unknown metric"):
        T.set_distance(x, x, "l2")


# ---- Part 4: coverage of a real class by a synthetic set ---------------------------------------

def test_coverage_hand_values():
    real = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [10.0, 0.0]])
    synthetic = np.array([[0.0, 1.0], [3.0, 2.0]])
    # nearest synthetic distances: 1, 2, 3, sqrt(49 + 4) = 7.28
    assert T.coverage(real, synthetic, 0.5) == 0.0
    assert T.coverage(real, synthetic, 1.0) == 0.25          # the radius is inclusive
    assert T.coverage(real, synthetic, 2.5) == 0.5
    assert T.coverage(real, synthetic, 3.0) == 0.75
    assert T.coverage(real, synthetic, 8.0) == 1.0
    assert T.coverage(real, real, 1e-9) == 1.0


def test_coverage_flattens_image_tensors():
    torch = pytest.importorskip("torch")
    real = torch.zeros(3, 1, 2, 2)
    real[1] += 1.0                      # distance 2 from the zero image (4 pixels of 1)
    real[2] += 3.0                      # distance 6
    synthetic = torch.zeros(1, 1, 2, 2)
    assert T.coverage(real, synthetic, 2.0) == pytest.approx(2 / 3)
    assert T.coverage(real.numpy(), synthetic.numpy(), 1.0) == pytest.approx(1 / 3)


def test_coverage_radius_hand_values():
    real = np.array([[0.0], [1.0], [3.0], [7.0]])
    # nearest-neighbour distances: 1, 1, 2, 4 -> median 1.5, min 1, max 4
    assert T.coverage_radius(real) == pytest.approx(1.5)
    assert T.coverage_radius(real, 0.0) == pytest.approx(1.0)
    assert T.coverage_radius(real, 1.0) == pytest.approx(4.0)
    # with the median radius the real set covers itself fully, a far-away set not at all
    r = T.coverage_radius(real)
    assert T.coverage(real, real + 100.0, r) == 0.0


def test_coverage_rejects_bad_input():
    real = np.zeros((4, 2))
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        T.coverage(real, real, 0.0)
    with pytest.raises(ValueError, match="differ in size"):
        T.coverage(real, np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match=r"shape \(n, \.\.\.\)"):
        T.coverage(np.zeros(4), real, 1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        T.coverage(real, np.full((1, 2), np.nan), 1.0)
    with pytest.raises(ValueError, match="at least 2 real samples"):
        T.coverage_radius(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"quantile must be a number in \[0, 1\]"):
        T.coverage_radius(real, 1.5)


# ---- Part 5: far-apart samples (§3.5) -----------------------------------------------------------

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
    # nearest-neighbour distances: 1, 1, 4.0 (point 2 to point 1) -> with radius 1 only point 2 is > 2
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


def test_reference_measures_mmd_and_coverage_per_class():
    g = torch.Generator().manual_seed(0)
    real = {0: torch.randn(60, 1, 2, 2, generator=g), 3: torch.randn(40, 4, generator=g) + 5}
    ref = T.Reference(real)
    assert sorted(ref.points) == [0, 3] and ref.points[0].shape == (60, 4) and ref.points[0].dtype == torch.float64
    assert ref.bandwidth[0] == pytest.approx(float(torch.pdist(real[0].reshape(60, -1).double()).median()))
    assert ref.radius[3] == pytest.approx(T.coverage_radius(real[3]))
    same = ref.measure(real[0], 0)
    assert same["mmd2"] == pytest.approx(0.0, abs=1e-12) and same["coverage"] == 1.0  # the class itself
    far = ref.measure(real[3].reshape(40, 1, 2, 2), 0)  # another class, 5 away
    assert far["mmd2"] > 0.5 and far["coverage"] == 0.0
    mid = ref.measure(real[0][:10], 0)
    assert 0 < mid["mmd2"] < far["mmd2"] and 0 < mid["coverage"] < 1


def test_describe_set_counts_positions_coverage_and_component_shares():
    targets, _ = T.sample_gaussian_mixture(300, seed=0)
    means = np.array(T.GMM_MEANS)
    collapsed = np.repeat(means[:1], 4, axis=0)   # every surrogate on the first component's mean
    row = T.describe_set(collapsed, targets, 0.5)
    assert row["distinct_positions"] == 1 and row["mean_nn_distance"] == 0.0
    assert (row["share_c0"], row["share_c1"], row["share_c2"]) == (1.0, 0.0, 0.0)
    spread = T.describe_set(means, targets, 0.5)
    assert spread["distinct_positions"] == 3 and spread["share_c2"] == pytest.approx(1 / 3)
    assert spread["mmd2"] == pytest.approx(T.mmd2(means, targets, 0.5))
    assert spread["covered_pct"] > row["covered_pct"] and 0 <= spread["covered_pct"] <= 100


def test_sampling_bias_measures_every_step_of_plain_nopt_and_the_iid_floor():
    bb = T.GaussianMixtureDiffusion(num_steps=3)
    real = {0: torch.as_tensor(T.sample_gaussian_mixture(64, seed=1)[0], dtype=torch.float32).reshape(-1, 2, 1, 1)}
    kw = dict(iterations=2, projector={"in_channels": 2, "widths": (8,), "groups": 1}, n_reference=100,
              progress=False)
    bias = T.sampling_bias(bb, [4, 6], [0], real, **kw)
    d = bias.distance
    assert len(d) == 2 * 3 * 4 and set(d["method"]) == {"plain", "NOpt", "i.i.d. from p_t"}   # N × methods × levels
    assert d.groupby(["N", "method"])["step"].apply(list).map(lambda s: s == [0, 1, 2, 3]).all()
    assert (d["distance"] >= 0).all() and d.loc[d.step == 3, "t"].eq(-1).all()
    assert bias.finals[(0, 6, "NOpt")].shape == (6, 2) and list(bias.timing.columns) == ["NOpt", "plain"]
    assert len(bias.logs) and bb.trace is None
    plain = d[(d.method == "plain") & (d.step == 0)]["distance"].to_numpy()
    nopt_start = d[(d.method == "NOpt") & (d.step == 0)]["distance"].to_numpy()
    assert np.array_equal(plain, nopt_start)   # both start from the same z_T
    again = T.sampling_bias(bb, [4, 6], [0], real, **kw).distance
    assert again["distance"].tolist() == d["distance"].tolist()   # same seed, same numbers


def test_smoothed_draws_and_farthest_first_doping():
    target = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    a = T.smoothed_draws(target, 50, 0.1, [0, 1, 7])
    assert a.shape == (50, 2) and np.array_equal(a, T.smoothed_draws(target, 50, 0.1, [0, 1, 7]))
    assert np.abs(a[:, 1]).max() < 1.0   # every draw stays near a target point
    doped = T.dope_farthest(target, np.array([[0.0, 0.0]]), 2)
    assert doped.tolist() == [[0.0, 0.0], [10.0, 0.0], [1.0, 0.0]]   # the farthest first
