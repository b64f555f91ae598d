"""Tests for dsco.latent_ddpm (the latent recipe's backbone; trained and sampled in
tests/test_recipes.py)."""

import torch

from dsco import latent_ddpm


def test_pad_centred_pads_with_the_background_and_keeps_the_image_in_the_middle():
    x = torch.rand(2, 1, 28, 27)
    p = latent_ddpm.pad_centred(x, 32)
    assert p.shape == (2, 1, 32, 32) and torch.equal(p[..., 2:30, 2:29], x)
    assert (p[..., :2, :] == -1).all() and (p[..., :, 29:] == -1).all()
