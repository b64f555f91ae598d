"""Tests for dsco.digits_ddpm: the shipped digits DDPM, its checkpoint and its training."""

import json

import pytest
import torch

from dsco import backbones, checkpoints, digits_ddpm


def test_identity_autoencoder_for_digits(unet):
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(unet.encode(x), x) and torch.equal(unet.decode(x), x)


def test_checkpoint_roundtrip_hash_and_shape_errors(tmp_path, unet):
    path = tmp_path / "d.safetensors"
    card = digits_ddpm.save_digits_ddpm(unet, dict(loss=[1.0, 0.5], epochs=2), path)
    assert (
        card["sha256"] == checkpoints.sha256(path)
        and json.loads(path.with_suffix(".json").read_text())["file"] == path.name
    )
    bb = backbones.load("digits-ddpm", path, num_steps=unet.num_steps)
    z = torch.randn(2, 1, 8, 8)
    t = int(bb.timesteps[0])
    torch.testing.assert_close(bb.mean_std(z, t, 3)[0], unet.mean_std(z, t, 3)[0])
    # wrong shape: a card whose architecture does not fit the weights (hash updated so it passes)
    bad = dict(card, unet_config=dict(card["unet_config"], block_out_channels=[16, 16]))
    path.with_suffix(".json").write_text(json.dumps(bad))
    with pytest.raises(checkpoints.CheckpointError, match="does not fit"):
        backbones.load("digits-ddpm", path)
    # wrong hash: the file was changed after its card was written
    path.with_suffix(".json").write_text(json.dumps(card))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match="SHA-256"):
        backbones.load("digits-ddpm", path)
    with pytest.raises(checkpoints.CheckpointError, match="missing"):
        backbones.load("digits-ddpm", tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="random_weights"):
        backbones.load("digits-ddpm", config=digits_ddpm.TINY_UNET)


def test_shipped_digits_ddpm_loads_and_verifies():
    bb = backbones.load("digits-ddpm")
    card = json.loads(digits_ddpm.DIGITS_WEIGHTS.with_suffix(".json").read_text())
    assert card["sha256"] == checkpoints.sha256(digits_ddpm.DIGITS_WEIGHTS)
    assert bb.latent_shape == (1, 8, 8) and bb.num_classes == 10
    assert digits_ddpm.DIGITS_WEIGHTS.stat().st_size < 5_000_000
    assert card["training"]["epochs"] > 0 and card["training"]["wall_time_s"] > 0


def test_train_digits_ddpm_tiny(tmp_path):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(x=torch.rand(40, 1, 8, 8, generator=g) * 2 - 1, y=torch.arange(40) % 10)
    snaps = []
    bb, hist = digits_ddpm.train_digits_ddpm(
        data,
        epochs=3,
        batch_size=20,
        config=digits_ddpm.TINY_UNET,
        warmup_steps=1,
        progress=False,
        callback=lambda e, b: snaps.append(e),
        callback_every=1,
    )
    assert len(hist["loss"]) == 3 and all(v == v for v in hist["loss"]) and snaps == [1, 2]
    assert isinstance(bb, digits_ddpm.DigitsDDPM) and hist["steps"] == 6
    bb2, hist2 = digits_ddpm.train_digits_ddpm(
        data, epochs=3, batch_size=20, config=digits_ddpm.TINY_UNET, warmup_steps=1, progress=False
    )
    assert hist2["loss"] == hist["loss"]  # same seed => same run
    with pytest.raises(ValueError, match="shape"):
        digits_ddpm.train_digits_ddpm(
            SimpleNamespace(x=torch.zeros(4, 3, 8, 8), y=torch.zeros(4).long()), epochs=1
        )
