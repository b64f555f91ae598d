"""Tests for dsco.backbones: the step against diffusers, guidance, the noise contract, checkpoints."""
import json

import pytest
import rounding
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel

from dsco import backbones as B



@pytest.fixture(scope="module")
def unet():
    return B.load("digits-ddpm", random_weights=True, config=B.TINY_UNET, num_steps=10)


@pytest.fixture(scope="module")
def dit():
    return B.load("dit-xl-2-256", random_weights=True, config=B.TINY_DIT, vae_config=B.TINY_VAE, num_steps=10)


def reference_scheduler(variance_type, num_steps):
    """diffusers' own DDPMScheduler, configured independently of dsco.backbones.make_scheduler."""
    s = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                      variance_type=variance_type, clip_sample=False, prediction_type="epsilon",
                      timestep_spacing="linspace")
    s.set_timesteps(num_steps)
    return s


@pytest.mark.parametrize("which,variance_type", [("unet", "fixed_small"), ("dit", "learned_range")])
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
        # diffusers draws its noise with randn_tensor(shape, generator) on the CPU: same seed, same eps
        expected = ref.step(out, t, z, generator=torch.Generator().manual_seed(k)).prev_sample
        eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(k))
        torch.testing.assert_close(mu + sigma * eps, expected, atol=1e-5, rtol=1e-5)
        if t == bb.timesteps[-1]:
            assert torch.count_nonzero(sigma) == 0
        else:
            assert bool((sigma > 0).all())
        z = mu + sigma * eps


def test_timesteps_linspace_respacing(unet):
    bb = B.load("digits-ddpm", random_weights=True, config=B.TINY_UNET)
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


def test_dit_guidance_first_three_channels(dit):
    z = torch.randn(2, *dit.latent_shape, generator=torch.Generator().manual_seed(0))
    y, t, s = torch.tensor([1, 7]), int(dit.timesteps[3]), 4.0
    cond = dit._forward(z, t, y)
    uncond = dit._forward(z, t, torch.full_like(y, dit.null_class))
    out = dit.guided_output(z, t, y, s)
    # guided_output forwards [z, z] as ONE batch of 4, cond and uncond above are batches of 2: another batch
    # shape, so they agree up to float rounding (tests/rounding.py), bounded by the float64 run of the same
    d64 = rounding.float64_backbone(dit)
    tol = rounding.tolerance(out, d64.guided_output(z, t, y, s))
    rounding.assert_within(out[:, :3], uncond[:, :3] + s * (cond[:, :3] - uncond[:, :3]), tol, "guided channels")
    rounding.assert_within(out[:, 3:], cond[:, 3:], tol, "4th channel and variance")  # conditional path
    rounding.assert_distinct(out[:, :3], cond[:, :3], tol, "unguided")
    # the learned sigma follows the conditional prediction, whatever the guidance scale
    _, sigma4 = dit.mean_std(z, t, y, 4.0)
    _, sigma1 = dit.mean_std(z, t, y, 1.0)
    tol_sigma = rounding.tolerance(sigma4, d64.mean_std(z, t, y, 4.0)[1])
    rounding.assert_within(sigma4, sigma1, tol_sigma, "sigma")
    rounding.assert_distinct(sigma4, dit.mean_std(z, int(dit.timesteps[1]), y, 4.0)[1], tol_sigma, "other step")
    # guidance 1 runs the conditional model only: the very computation of cond, bit for bit
    assert torch.equal(dit.guided_output(z, t, y, 1.0), cond)
    # the all-channel switch guides channel 3 too (and leaves the variance conditional)
    dit.guidance_channels = "all"
    try:
        out_all = dit.guided_output(z, t, y, s)
    finally:
        dit.guidance_channels = 3
    rounding.assert_within(out_all[:, :4], uncond[:, :4] + s * (cond[:, :4] - uncond[:, :4]), tol, "all channels")
    rounding.assert_distinct(out_all[:, 3], out[:, 3], tol, "channel 3 guided or not")
    rounding.assert_within(out_all[:, 4:], cond[:, 4:], tol, "variance")


def test_guidance_channels_option():
    bb = B.load("dit-xl-2-256", random_weights=True, config=B.TINY_DIT, vae_config=B.TINY_VAE,
                guidance_channels="all")
    assert bb.guidance_channels == "all"
    with pytest.raises(ValueError, match="guidance_channels"):
        B.load("dit-xl-2-256", random_weights=True, config=B.TINY_DIT, vae_config=B.TINY_VAE,
               guidance_channels=7)


def test_mean_std_rejects_foreign_timestep_and_shape(unet):
    z = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="sampling timestep"):
        unet.mean_std(z, 998, 0)
    with pytest.raises(ValueError, match="shape"):
        unet.mean_std(torch.randn(2, 1, 4, 4), int(unet.timesteps[0]), 0)


def test_sample_shapes_determinism_and_batch_independence(unet):
    kw = dict(ipc=3, guidance=2.0, num_steps=5, progress=False)
    lat, lab = B.sample(unet, [2, 5], seed=7, **kw)
    assert lat.shape == (6, 1, 8, 8) and lab.tolist() == [2, 2, 2, 5, 5, 5]
    assert lat.device.type == "cpu" and bool(torch.isfinite(lat).all())
    again, _ = B.sample(unet, [2, 5], seed=7, **kw)
    assert torch.equal(lat, again)  # the same computation: bit for bit
    # batch_size=2 forwards each class's 6 guided latents as 2 + 2 + 2 instead of one batch of 6: another
    # batch shape, so the contract is equality up to float rounding, not bit for bit (an AMD EPYC CPU gave
    # |Δ| = 1.6e-4 here; the random tiny UNet takes latents to |z| ~ 500 in 5 steps). The tolerance is
    # derived from the float64 run (tests/rounding.py): here the float32-vs-float64 error is 1.5e-4
    # (relative 3e-7), the tolerance 7.6e-3, and another seed differs by 570.
    split, _ = B.sample(unet, [2, 5], seed=7, batch_size=2, **kw)
    lat64, _ = B.sample(rounding.float64_backbone(unet), [2, 5], seed=7, **kw)
    assert lat64.dtype == torch.float64
    tol = rounding.tolerance(lat, lat64)
    rounding.assert_within(split, lat, tol, "batch_size=2")
    other, _ = B.sample(unet, [2, 5], seed=8, **kw)
    rounding.assert_distinct(other, lat, tol, "another seed")
    # a class's samples do not depend on which other classes are drawn with it: sampling goes class by
    # class, so class 5 runs the very same forwards (same inputs, same batch shapes) with or without
    # class 2 -- the same computation, hence bit for bit
    alone, _ = B.sample(unet, [5], seed=7, **kw)
    assert torch.equal(alone, lat[3:])


def test_sample_noise_contract(unet):
    """The documented contract, rebuilt by hand: what NOpt's mode='none' must reproduce bit for bit."""
    seed, c, ipc, shape = 3, 4, 2, (2, 1, 8, 8)
    lat, _ = B.sample(unet, [c], ipc=ipc, seed=seed, guidance=4.0, num_steps=4, progress=False)
    g = torch.Generator().manual_seed(seed * 1_000_003 + c)
    assert B.class_generator(seed, c).initial_seed() == g.initial_seed()
    z = torch.randn(shape, generator=g)
    ts = unet.timesteps.tolist()
    for i, t in enumerate(ts):
        mu, sigma = unet.mean_std(z, t, c, 4.0)
        z = mu + sigma * torch.randn(shape, generator=g) if i < len(ts) - 1 else mu
    assert torch.equal(z, lat)


def test_sample_rejects_bad_input(unet):
    with pytest.raises(ValueError, match="out of range"):
        B.sample(unet, [10], ipc=1, seed=0, progress=False)
    with pytest.raises(ValueError, match="ipc"):
        B.sample(unet, [0], ipc=0, seed=0, progress=False)


def test_tiny_dit_encode_sample_decode_end_to_end(dit):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = dit.encode(x)
    assert z.shape == (2, *dit.latent_shape)
    assert torch.equal(z, dit.encode(x))  # posterior mean: deterministic
    zs = dit.encode(x, posterior="sample", generator=torch.Generator().manual_seed(0))
    assert zs.shape == z.shape and not torch.equal(zs, z)
    lat, lab = B.sample(dit, [0, 9], ipc=2, seed=0, guidance=4.0, num_steps=4, progress=False)
    img = dit.decode(lat)
    assert img.shape == (4, 3, 8, 8) and bool(torch.isfinite(img).all()) and lab.tolist() == [0, 0, 9, 9]
    torch.testing.assert_close(dit.decode(z), dit.vae.decode(z / 0.18215).sample)


def test_identity_autoencoder_for_digits(unet):
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(unet.encode(x), x) and torch.equal(unet.decode(x), x)


def test_real_size_configs():
    """DiT-XL/2 and the SD-VAE at real size, built on the meta device (no memory, no download)."""
    with torch.device("meta"):
        dit = DiTTransformer2DModel(**B.DIT_XL_2)
        vae = AutoencoderKL(**B.SD_VAE)
    assert dit.config.out_channels == 8 and dit.config.sample_size == 32
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863  # sd-vae-ft-mse
    assert sum(p.numel() for p in dit.parameters()) > 600_000_000


def test_unknown_backbone_lists_names():
    with pytest.raises(ValueError, match="digits-ddpm, dit-xl-2-256"):
        B.load("dit-xl-2-512")


def test_dit_needs_a_path():
    with pytest.raises(ValueError, match="path="):
        B.load("dit-xl-2-256")


def test_dit_loads_from_local_folder(tmp_path, dit):
    dit.model.save_pretrained(tmp_path / "transformer")
    dit.vae.save_pretrained(tmp_path / "vae")
    bb = B.load("dit-xl-2-256", tmp_path, local_files_only=True, num_steps=dit.num_steps)
    z = torch.randn(1, *dit.latent_shape)
    t = int(bb.timesteps[0])
    torch.testing.assert_close(bb.mean_std(z, t, 1)[0], dit.mean_std(z, t, 1)[0])
    bb2 = B.load("dit-xl-2-256", tmp_path / "transformer", vae_path=tmp_path / "vae", guidance_channels="all")
    assert bb2.guidance_channels == "all" and bb2.latent_shape == dit.latent_shape


def test_checkpoint_roundtrip_hash_and_shape_errors(tmp_path, unet):
    path = tmp_path / "d.safetensors"
    card = B.save_digits_ddpm(unet, dict(loss=[1.0, 0.5], epochs=2), path)
    assert card["sha256"] == B.sha256(path) and json.loads(path.with_suffix(".json").read_text())["file"] == path.name
    bb = B.load("digits-ddpm", path, num_steps=unet.num_steps)
    z = torch.randn(2, 1, 8, 8)
    t = int(bb.timesteps[0])
    torch.testing.assert_close(bb.mean_std(z, t, 3)[0], unet.mean_std(z, t, 3)[0])
    # wrong shape: a card whose architecture does not fit the weights (hash updated so it passes)
    bad = dict(card, unet_config=dict(card["unet_config"], block_out_channels=[16, 16]))
    path.with_suffix(".json").write_text(json.dumps(bad))
    with pytest.raises(B.CheckpointError, match="does not fit"):
        B.load("digits-ddpm", path)
    # wrong hash: the file was changed after its card was written
    path.with_suffix(".json").write_text(json.dumps(card))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(B.CheckpointError, match="SHA-256"):
        B.load("digits-ddpm", path)
    with pytest.raises(B.CheckpointError, match="missing"):
        B.load("digits-ddpm", tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="random_weights"):
        B.load("digits-ddpm", config=B.TINY_UNET)


def test_shipped_digits_ddpm_loads_and_verifies():
    bb = B.load("digits-ddpm")
    card = json.loads(B.DIGITS_WEIGHTS.with_suffix(".json").read_text())
    assert card["sha256"] == B.sha256(B.DIGITS_WEIGHTS)
    assert bb.latent_shape == (1, 8, 8) and bb.num_classes == 10
    assert B.DIGITS_WEIGHTS.stat().st_size < 5_000_000
    assert card["training"]["epochs"] > 0 and card["training"]["wall_time_s"] > 0


def test_train_digits_ddpm_tiny(tmp_path):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x=torch.rand(40, 1, 8, 8, generator=g) * 2 - 1, y=torch.arange(40) % 10)
    snaps = []
    bb, hist = B.train_digits_ddpm(data, epochs=3, batch_size=20, config=B.TINY_UNET, warmup_steps=1,
                                   progress=False, callback=lambda e, b: snaps.append(e), callback_every=1)
    assert len(hist["loss"]) == 3 and all(l == l for l in hist["loss"]) and snaps == [1, 2]
    assert isinstance(bb, B.DigitsDDPM) and hist["steps"] == 6
    bb2, hist2 = B.train_digits_ddpm(data, epochs=3, batch_size=20, config=B.TINY_UNET, warmup_steps=1,
                                     progress=False)
    assert hist2["loss"] == hist["loss"]  # same seed => same run
    with pytest.raises(ValueError, match="shape"):
        B.train_digits_ddpm(SimpleNamespace(x=torch.zeros(4, 3, 8, 8), y=torch.zeros(4).long()), epochs=1)


def test_dit_configs_read_without_weights(tmp_path, dit):
    dit.model.save_pretrained(tmp_path / "pipe" / "transformer")
    dit.vae.save_pretrained(tmp_path / "pipe" / "vae")
    cfg, vae = B.dit_configs(tmp_path / "pipe")  # a diffusers pipeline folder: transformer/ and vae/
    assert (cfg["num_embeds_ada_norm"], cfg["in_channels"], cfg["sample_size"], cfg["out_channels"]) == (10, 4, 4, 8)
    assert vae["latent_channels"] == 4 and len(vae["block_out_channels"]) == 2
    cfg2, vae2 = B.dit_configs(tmp_path / "pipe" / "transformer", tmp_path / "pipe" / "vae")  # model folders
    assert cfg2 == cfg and vae2 == vae
    assert B._dit_sources(tmp_path / "pipe") == ((str(tmp_path / "pipe"), "transformer"), (str(tmp_path / "pipe"), "vae"))
    assert B._dit_sources(tmp_path / "pipe" / "transformer", tmp_path / "pipe")[1] == (str(tmp_path / "pipe"), "vae")
    assert B._dit_sources("facebook/DiT-XL-2-256", "stabilityai/sd-vae-ft-mse")[1] == ("stabilityai/sd-vae-ft-mse", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(B.CheckpointError, match="no DiTTransformer2DModel config .*pass -p backbone_path") as e:
        B.dit_configs(tmp_path / "empty", tmp_path / "pipe" / "vae")
    assert "\n" not in str(e.value)
    with pytest.raises(B.CheckpointError, match="no AutoencoderKL config .*pass -p vae_path"):
        B.dit_configs(tmp_path / "pipe" / "transformer", tmp_path / "empty")


def test_image_factor(unet, dit):
    assert unet.image_factor == 1  # pixel space
    assert dit.image_factor == 2 and dit.decode(torch.zeros(1, *dit.latent_shape)).shape[-1] == 2 * dit.latent_shape[-1]


def test_retrain_hints_name_an_existing_notebook(tmp_path):
    import re

    from dsco import teacher

    for load in (lambda: B.load("digits-ddpm", tmp_path / "nothing.safetensors"),
                 lambda: teacher.load_teacher(tmp_path / "nothing.safetensors")):
        with pytest.raises(B.CheckpointError) as e:
            load()
        notebook = re.search(r"notebooks/\S+\.ipynb", str(e.value)).group(0)
        assert (B.ROOT / notebook).is_file(), notebook


def test_pad_centred_pads_with_the_background_and_keeps_the_image_in_the_middle():
    x = torch.rand(2, 1, 28, 27)
    p = B.pad_centred(x, 32)
    assert p.shape == (2, 1, 32, 32) and torch.equal(p[..., 2:30, 2:29], x)
    assert (p[..., :2, :] == -1).all() and (p[..., :, 29:] == -1).all()
