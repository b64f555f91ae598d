"""Tests for dsco.backbones: the registry, the vanilla sampler and its noise contract."""

import pytest
import rounding
import torch

from dsco import ROOT, backbones, checkpoints, diffusion, digits_ddpm, dit


def test_sample_shapes_determinism_and_batch_independence(unet):
    kw = dict(ipc=3, guidance=2.0, num_steps=5, progress=False)
    lat, lab = backbones.sample(unet, [2, 5], seed=7, **kw)
    assert lat.shape == (6, 1, 8, 8) and lab.tolist() == [2, 2, 2, 5, 5, 5]
    assert lat.device.type == "cpu" and bool(torch.isfinite(lat).all())
    again, _ = backbones.sample(unet, [2, 5], seed=7, **kw)
    assert torch.equal(lat, again)  # the same computation: bit for bit
    # batch_size=2 forwards each class's 6 guided latents as 2 + 2 + 2 instead of one batch of 6:
    # another batch shape, so the contract is equality up to float rounding, not bit for bit (an AMD
    # EPYC CPU gave |Δ| = 1.6e-4 here; the random tiny UNet takes latents to |z| ~ 500 in 5 steps).
    # The tolerance is derived from the float64 run (tests/rounding.py): here the float32-vs-float64
    # error is 1.5e-4 (relative 3e-7), the tolerance 7.6e-3, and another seed differs by 570.
    split, _ = backbones.sample(unet, [2, 5], seed=7, batch_size=2, **kw)
    lat64, _ = backbones.sample(rounding.float64_backbone(unet), [2, 5], seed=7, **kw)
    assert lat64.dtype == torch.float64
    tol = rounding.tolerance(lat, lat64)
    rounding.assert_within(split, lat, tol, "batch_size=2")
    other, _ = backbones.sample(unet, [2, 5], seed=8, **kw)
    rounding.assert_distinct(other, lat, tol, "another seed")
    # a class's samples do not depend on which other classes are drawn with it: sampling goes class
    # by class, so class 5 runs the very same forwards (same inputs, same batch shapes) with or
    # without class 2 -- the same computation, hence bit for bit
    alone, _ = backbones.sample(unet, [5], seed=7, **kw)
    assert torch.equal(alone, lat[3:])


def test_sample_noise_contract(unet):
    """The documented contract, rebuilt by hand: what NOpt's mode='none' must reproduce bit for
    bit."""
    seed, c, ipc, shape = 3, 4, 2, (2, 1, 8, 8)
    lat, _ = backbones.sample(
        unet, [c], ipc=ipc, seed=seed, guidance=4.0, num_steps=4, progress=False
    )
    g = torch.Generator().manual_seed(seed * 1_000_003 + c)
    assert backbones.class_generator(seed, c).initial_seed() == g.initial_seed()
    z = torch.randn(shape, generator=g)
    ts = unet.timesteps.tolist()
    for i, t in enumerate(ts):
        mu, sigma = unet.mean_std(z, t, c, 4.0)
        z = mu + sigma * torch.randn(shape, generator=g) if i < len(ts) - 1 else mu
    assert torch.equal(z, lat)


def test_sample_rejects_bad_input(unet):
    with pytest.raises(ValueError, match="out of range"):
        backbones.sample(unet, [10], ipc=1, seed=0, progress=False)
    with pytest.raises(ValueError, match="ipc"):
        backbones.sample(unet, [0], ipc=0, seed=0, progress=False)


def test_unknown_backbone_lists_names():
    with pytest.raises(ValueError, match="digits-ddpm, dit-xl-2-256"):
        backbones.load("dit-xl-2-512")


def test_image_factor(unet, tiny_dit):
    assert unet.image_factor == 1  # pixel space
    assert (
        tiny_dit.image_factor == 2
        and tiny_dit.decode(torch.zeros(1, *tiny_dit.latent_shape)).shape[-1]
        == 2 * tiny_dit.latent_shape[-1]
    )


def test_retrain_hints_name_an_existing_notebook(tmp_path):
    import re

    from dsco import teacher

    for load in (
        lambda: backbones.load("digits-ddpm", tmp_path / "nothing.safetensors"),
        lambda: teacher.load_teacher(tmp_path / "nothing.safetensors"),
    ):
        with pytest.raises(checkpoints.CheckpointError) as e:
            load()
        notebook = re.search(r"notebooks/\S+\.ipynb", str(e.value)).group(0)
        assert (ROOT / notebook).is_file(), notebook


def test_the_registry_hands_out_the_interface_and_the_digits_training():
    """The name notebook 00 reads from this module: one object, two names."""
    assert diffusion.NUM_TRAIN_TIMESTEPS == 1000
    assert backbones.train_digits_ddpm is digits_ddpm.train_digits_ddpm
    assert set(backbones.BACKBONES) == {"digits-ddpm", "dit-xl-2-256", "latent-ddpm"}
    assert backbones.BACKBONES["dit-xl-2-256"] is dit.load_dit
