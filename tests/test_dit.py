"""Tests for dsco.dit: DiT-XL/2 + SD-VAE (guidance, encode/decode, configs, loading)."""

import pytest
import rounding
import torch
from diffusers import AutoencoderKL, DiTTransformer2DModel

from dsco import backbones, checkpoints, dit


def test_dit_guidance_first_three_channels(tiny_dit):
    z = torch.randn(2, *tiny_dit.latent_shape, generator=torch.Generator().manual_seed(0))
    y, t, s = torch.tensor([1, 7]), int(tiny_dit.timesteps[3]), 4.0
    cond = tiny_dit._forward(z, t, y)
    uncond = tiny_dit._forward(z, t, torch.full_like(y, tiny_dit.null_class))
    out = tiny_dit.guided_output(z, t, y, s)
    # guided_output forwards [z, z] as ONE batch of 4, cond and uncond above are batches of 2:
    # another batch shape, so they agree up to float rounding (tests/rounding.py), bounded by the
    # float64 run of the same
    d64 = rounding.float64_backbone(tiny_dit)
    tol = rounding.tolerance(out, d64.guided_output(z, t, y, s))
    rounding.assert_within(
        out[:, :3], uncond[:, :3] + s * (cond[:, :3] - uncond[:, :3]), tol, "guided channels"
    )
    # conditional path
    rounding.assert_within(out[:, 3:], cond[:, 3:], tol, "4th channel and variance")
    rounding.assert_distinct(out[:, :3], cond[:, :3], tol, "unguided")
    # the learned sigma follows the conditional prediction, whatever the guidance scale
    _, sigma4 = tiny_dit.mean_std(z, t, y, 4.0)
    _, sigma1 = tiny_dit.mean_std(z, t, y, 1.0)
    tol_sigma = rounding.tolerance(sigma4, d64.mean_std(z, t, y, 4.0)[1])
    rounding.assert_within(sigma4, sigma1, tol_sigma, "sigma")
    rounding.assert_distinct(
        sigma4, tiny_dit.mean_std(z, int(tiny_dit.timesteps[1]), y, 4.0)[1], tol_sigma, "other step"
    )
    # guidance 1 runs the conditional model only: the very computation of cond, bit for bit
    assert torch.equal(tiny_dit.guided_output(z, t, y, 1.0), cond)
    # the all-channel switch guides channel 3 too (and leaves the variance conditional)
    tiny_dit.guidance_channels = "all"
    try:
        out_all = tiny_dit.guided_output(z, t, y, s)
    finally:
        tiny_dit.guidance_channels = 3
    rounding.assert_within(
        out_all[:, :4], uncond[:, :4] + s * (cond[:, :4] - uncond[:, :4]), tol, "all channels"
    )
    rounding.assert_distinct(out_all[:, 3], out[:, 3], tol, "channel 3 guided or not")
    rounding.assert_within(out_all[:, 4:], cond[:, 4:], tol, "variance")


def test_guidance_channels_option():
    bb = backbones.load(
        "dit-xl-2-256",
        random_weights=True,
        config=dit.TINY_DIT,
        vae_config=dit.TINY_VAE,
        guidance_channels="all",
    )
    assert bb.guidance_channels == "all"
    with pytest.raises(ValueError, match="guidance_channels"):
        backbones.load(
            "dit-xl-2-256",
            random_weights=True,
            config=dit.TINY_DIT,
            vae_config=dit.TINY_VAE,
            guidance_channels=7,
        )


def test_tiny_dit_encode_sample_decode_end_to_end(tiny_dit):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = tiny_dit.encode(x)
    assert z.shape == (2, *tiny_dit.latent_shape)
    assert torch.equal(z, tiny_dit.encode(x))  # posterior mean: deterministic
    zs = tiny_dit.encode(x, posterior="sample", generator=torch.Generator().manual_seed(0))
    assert zs.shape == z.shape and not torch.equal(zs, z)
    lat, lab = backbones.sample(
        tiny_dit, [0, 9], ipc=2, seed=0, guidance=4.0, num_steps=4, progress=False
    )
    img = tiny_dit.decode(lat)
    assert (
        img.shape == (4, 3, 8, 8)
        and bool(torch.isfinite(img).all())
        and lab.tolist() == [0, 0, 9, 9]
    )
    torch.testing.assert_close(tiny_dit.decode(z), tiny_dit.vae.decode(z / 0.18215).sample)


def test_real_size_configs():
    """DiT-XL/2 and the SD-VAE at real size, built on the meta device (no memory, no download)."""
    with torch.device("meta"):
        transformer = DiTTransformer2DModel(**dit.DIT_XL_2)
        vae = AutoencoderKL(**dit.SD_VAE)
    assert transformer.config.out_channels == 8 and transformer.config.sample_size == 32
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863  # sd-vae-ft-mse
    assert sum(p.numel() for p in transformer.parameters()) > 600_000_000


def test_dit_needs_a_path():
    with pytest.raises(ValueError, match="path="):
        backbones.load("dit-xl-2-256")


def test_dit_loads_from_local_folder(tmp_path, tiny_dit):
    tiny_dit.model.save_pretrained(tmp_path / "transformer")
    tiny_dit.vae.save_pretrained(tmp_path / "vae")
    bb = backbones.load(
        "dit-xl-2-256", tmp_path, local_files_only=True, num_steps=tiny_dit.num_steps
    )
    z = torch.randn(1, *tiny_dit.latent_shape)
    t = int(bb.timesteps[0])
    torch.testing.assert_close(bb.mean_std(z, t, 1)[0], tiny_dit.mean_std(z, t, 1)[0])
    bb2 = backbones.load(
        "dit-xl-2-256", tmp_path / "transformer", vae_path=tmp_path / "vae", guidance_channels="all"
    )
    assert bb2.guidance_channels == "all" and bb2.latent_shape == tiny_dit.latent_shape


def test_dit_configs_read_without_weights(tmp_path, tiny_dit):
    tiny_dit.model.save_pretrained(tmp_path / "pipe" / "transformer")
    tiny_dit.vae.save_pretrained(tmp_path / "pipe" / "vae")
    # a diffusers pipeline folder: transformer/ and vae/
    cfg, vae = dit.dit_configs(tmp_path / "pipe")
    assert (
        cfg["num_embeds_ada_norm"],
        cfg["in_channels"],
        cfg["sample_size"],
        cfg["out_channels"],
    ) == (10, 4, 4, 8)
    assert vae["latent_channels"] == 4 and len(vae["block_out_channels"]) == 2
    # model folders
    cfg2, vae2 = dit.dit_configs(tmp_path / "pipe" / "transformer", tmp_path / "pipe" / "vae")
    assert cfg2 == cfg and vae2 == vae
    assert dit.dit_sources(tmp_path / "pipe") == (
        (str(tmp_path / "pipe"), "transformer"),
        (str(tmp_path / "pipe"), "vae"),
    )
    assert dit.dit_sources(tmp_path / "pipe" / "transformer", tmp_path / "pipe")[1] == (
        str(tmp_path / "pipe"),
        "vae",
    )
    assert dit.dit_sources("facebook/DiT-XL-2-256", "stabilityai/sd-vae-ft-mse")[1] == (
        "stabilityai/sd-vae-ft-mse",
        None,
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        checkpoints.CheckpointError, match="no DiTTransformer2DModel config .*pass -p backbone_path"
    ) as e:
        dit.dit_configs(tmp_path / "empty", tmp_path / "pipe" / "vae")
    assert "\n" not in str(e.value)
    with pytest.raises(
        checkpoints.CheckpointError, match="no AutoencoderKL config .*pass -p vae_path"
    ):
        dit.dit_configs(tmp_path / "pipe" / "transformer", tmp_path / "empty")
