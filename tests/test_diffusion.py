"""Tests for dsco.diffusion: the DDPM step against diffusers', the respacing, Eq. 12, and the
step in a lower precision."""

import pytest
import torch
from diffusers import DDPMScheduler

from dsco import backbones, diffusion, digits_ddpm


def reference_scheduler(variance_type, num_steps):
    """diffusers' own DDPMScheduler, configured independently of dsco.diffusion.make_scheduler."""
    s = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        variance_type=variance_type,
        clip_sample=False,
        prediction_type="epsilon",
        timestep_spacing="linspace",
    )
    s.set_timesteps(num_steps)
    return s


@pytest.mark.parametrize(
    "which,variance_type", [("unet", "fixed_small"), ("tiny_dit", "learned_range")]
)
@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_mean_std_matches_diffusers_step(which, variance_type, guidance, request):
    bb = request.getfixturevalue(which)
    ref = reference_scheduler(variance_type, bb.num_steps)
    assert torch.equal(ref.timesteps, bb.timesteps)
    z = torch.randn(4, *bb.latent_shape, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 5, 9])
    for k, t in enumerate(bb.timesteps.tolist()):
        mu, sigma = bb.mean_std(z, t, y, guidance)
        assert mu.shape == sigma.shape == z.shape
        out = bb.guided_output(z, t, y, guidance)
        assert out.shape[1] == (2 if variance_type == "learned_range" else 1) * z.shape[1]
        # diffusers draws its noise with randn_tensor(shape, generator) on the CPU: same seed, same
        # eps
        expected = ref.step(out, t, z, generator=torch.Generator().manual_seed(k)).prev_sample
        eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(k))
        torch.testing.assert_close(mu + sigma * eps, expected, atol=1e-5, rtol=1e-5)
        if t == bb.timesteps[-1]:
            assert torch.count_nonzero(sigma) == 0
        else:
            assert bool((sigma > 0).all())
        z = mu + sigma * eps


def test_timesteps_linspace_respacing(unet):
    bb = backbones.load("digits-ddpm", random_weights=True, config=digits_ddpm.TINY_UNET)
    ts = bb.timesteps
    assert ts.dtype == torch.long and len(ts) == 50 and ts[0] == 999 and ts[-1] == 0
    assert bool((ts[:-1] > ts[1:]).all())
    assert ts[1] == 979 and ts[-2] == 20  # round(linspace(0, 999, 50)) as in DiT's respacing
    bb.set_steps(4)
    assert bb.timesteps.tolist() == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="num_steps"):
        bb.set_steps(0)


def test_q_sample_is_eq12(unet):
    z0, noise = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    ac = unet.scheduler.alphas_cumprod
    zt = unet.q_sample(z0, 500, noise)
    torch.testing.assert_close(zt, ac[500].sqrt() * z0 + (1 - ac[500]).sqrt() * noise)
    t = torch.tensor([0, 10, 999])
    zt = unet.q_sample(z0, t, noise)
    torch.testing.assert_close(zt[2], ac[999].sqrt() * z0[2] + (1 - ac[999]).sqrt() * noise[2])
    with pytest.raises(ValueError, match="timesteps"):
        unet.q_sample(z0, 1000, noise)


def test_mean_std_rejects_foreign_timestep_and_shape(unet):
    z = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="sampling timestep"):
        unet.mean_std(z, 998, 0)
    with pytest.raises(ValueError, match="shape"):
        unet.mean_std(torch.randn(2, 1, 4, 4), int(unet.timesteps[0]), 0)


def test_as_dtype():
    assert diffusion.as_dtype("bf16") is torch.bfloat16 and diffusion.as_dtype("fp32") is None
    assert diffusion.as_dtype(torch.float32) is None and diffusion.as_dtype(None) is None
    with pytest.raises(ValueError, match="backbone_dtype"):
        diffusion.as_dtype("int8")


def test_backbone_step_in_fp32_is_mean_std_and_under_autocast_comes_back_fp32(unet):
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t, y = int(unet.timesteps[0]), torch.tensor([1, 2])
    mu, sigma = diffusion.backbone_step(unet, z, t, y, 4.0, None, None)
    ref_mu, ref_sigma = unet.mean_std(z, t, y, 4.0)
    assert torch.equal(mu, ref_mu) and torch.equal(sigma, ref_sigma)  # the very same computation
    mu16, sigma16 = diffusion.backbone_step(unet, z, t, y, 4.0, None, torch.bfloat16)
    assert mu16.dtype == sigma16.dtype == torch.float32
    # bf16 rounds (here about 1 % of |μ|), but it is the same step
    assert 0 < (mu16 - mu).norm() / mu.norm() < 0.05
