"""Tests for dsco.exact_diffusion: the exact-score Gaussian-mixture diffusion and §3.4's
sampling-bias experiment."""

import math

import numpy as np
import pytest
import torch

from dsco import backbones as B
from dsco import exact_diffusion as D
from dsco import nopt, theory
from dsco.metrics import set_distance


@pytest.mark.parametrize(
    "means,scales,weights",
    [
        (theory.GMM_MEANS, theory.GMM_SCALES, theory.GMM_WEIGHTS),
        ([[-2.0], [1.5]], [0.5, 0.8], [0.3, 0.7]),
    ],
)
@pytest.mark.parametrize("t", [0, 300, 999])
def test_gmm_exact_score_matches_finite_difference(means, scales, weights, t):
    bb = D.GaussianMixtureDiffusion(means, scales, weights)
    z = torch.as_tensor(np.random.default_rng(0).normal(size=(5, bb.dim)) * 2)
    h = 1e-5
    fd = torch.stack(
        [
            (bb.log_prob(z + h * e, t) - bb.log_prob(z - h * e, t)) / (2 * h)
            for e in torch.eye(bb.dim, dtype=torch.float64)
        ],
        dim=1,
    )
    assert torch.allclose(bb.score(z, t), fd, atol=1e-6)
    # the ε-prediction is −√(1−ᾱ_t)·score, with the latent shape (D, 1, 1)
    a = bb.scheduler.alphas_cumprod[t].double()
    eps = bb._forward(z.float().reshape(5, bb.dim, 1, 1), t, 0)
    assert eps.shape == (5, bb.dim, 1, 1)
    assert torch.allclose(eps.reshape(5, -1).double(), -(1 - a).sqrt() * bb.score(z, t), atol=1e-5)


def test_gmm_log_prob_is_the_noisy_mixture_density():
    bb = D.GaussianMixtureDiffusion([[0.0], [3.0]], [1.0, 0.5], [0.5, 0.5])
    a = float(bb.scheduler.alphas_cumprod[500])
    z = torch.tensor([[0.7]], dtype=torch.float64)
    dens = sum(
        0.5 / math.sqrt(2 * math.pi * v) * math.exp(-((0.7 - math.sqrt(a) * m) ** 2) / (2 * v))
        for m, v in ((0.0, a * 1.0 + 1 - a), (3.0, a * 0.25 + 1 - a))
    )
    assert float(bb.log_prob(z, 500)) == pytest.approx(math.log(dens), rel=1e-10)


def test_gmm_sampling_recovers_mean_and_variance():
    torch.set_num_threads(1)
    bb = D.GaussianMixtureDiffusion()
    z, labels = B.sample(bb, [0], 2000, seed=0, num_steps=250, progress=False)
    assert z.shape == (2000, 2, 1, 1) and labels.tolist() == [0] * 2000
    x = z.reshape(-1, 2).double().numpy()
    ref = theory.sample_gaussian_mixture(50_000, seed=1)[0]
    assert np.allclose(x.mean(0), ref.mean(0), atol=0.15)
    assert np.allclose(x.var(0), ref.var(0), rtol=0.1)


def test_gmm_marginal_sample_is_the_diffused_target():
    bb = D.GaussianMixtureDiffusion()
    x0 = theory.sample_gaussian_mixture(20_000, seed=3)[0]
    noise = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    zt = bb.q_sample(torch.as_tensor(x0), 600, noise).numpy()
    direct = bb.marginal_sample(20_000, 600, seed=4)
    assert set_distance(zt, direct) < 0.05
    assert np.allclose(zt.var(0), direct.var(0), rtol=0.05)


def test_gmm_backbone_runs_through_nopt_and_traces_steps():
    torch.set_num_threads(1)
    bb = D.GaussianMixtureDiffusion(num_steps=5)
    plain, _ = B.sample(bb, [0], 8, seed=1, num_steps=5, progress=False)
    bb.trace = []
    none, _, log = nopt.synthesize(bb, [0], 8, "none", seed=1, num_steps=5, progress=False)
    assert torch.equal(plain, none) and log.empty
    assert [t for t, _ in bb.trace] == bb.timesteps.tolist() and bb.trace[0][1].shape == (8, 2)
    points = theory.sample_gaussian_mixture(200, seed=0)[0]
    real = {0: torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2, 1, 1)}
    z, _, log = nopt.synthesize(
        bb,
        [0],
        8,
        "accessible",
        seed=1,
        num_steps=5,
        iterations=20,
        real_latents=real,
        projector={"in_channels": 2, "widths": (16,), "groups": 1},
        progress=False,
    )
    assert z.shape == (8, 2, 1, 1) and torch.isfinite(z).all()
    assert (log["align_last"] < log["align_first"]).all()


def test_gmm_backbone_rejects_bad_input():
    with pytest.raises(ValueError, match="means must be"):
        D.GaussianMixtureDiffusion(means=[0.0, 1.0])
    bb = D.GaussianMixtureDiffusion()
    with pytest.raises(ValueError, match="points must be"):
        bb.score(torch.zeros(3, 5), 10)
    with pytest.raises(ValueError, match="training timestep"):
        bb.log_prob(torch.zeros(3, 2), 1000)


def test_sampling_bias_measures_every_step_of_plain_nopt_and_the_iid_floor():
    bb = D.GaussianMixtureDiffusion(num_steps=3)
    points = theory.sample_gaussian_mixture(64, seed=1)[0]
    real = {0: torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2, 1, 1)}
    kw = dict(
        iterations=2,
        projector={"in_channels": 2, "widths": (8,), "groups": 1},
        n_reference=100,
        progress=False,
    )
    bias = D.sampling_bias(bb, [4, 6], [0], real, **kw)
    d = bias.distance
    assert len(d) == 2 * 3 * 4  # N × methods × levels
    assert set(d["method"]) == {"plain", "NOpt", "i.i.d. from p_t"}
    assert d.groupby(["N", "method"])["step"].apply(list).map(lambda s: s == [0, 1, 2, 3]).all()
    assert (d["distance"] >= 0).all() and d.loc[d.step == 3, "t"].eq(-1).all()
    assert bias.finals[(0, 6, "NOpt")].shape == (6, 2)
    assert list(bias.timing.columns) == ["NOpt", "plain"]
    assert len(bias.logs) and bb.trace is None
    plain = d[(d.method == "plain") & (d.step == 0)]["distance"].to_numpy()
    nopt_start = d[(d.method == "NOpt") & (d.step == 0)]["distance"].to_numpy()
    assert np.array_equal(plain, nopt_start)  # both start from the same z_T
    again = D.sampling_bias(bb, [4, 6], [0], real, **kw).distance
    assert again["distance"].tolist() == d["distance"].tolist()  # same seed, same numbers
