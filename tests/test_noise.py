"""Tests for dsco.noise: the auxiliary random streams and the Latin-hypercube draw."""

import torch

from dsco import backbones, noise


def test_lhs_normal_is_a_stratified_normal_sample():
    g = torch.Generator().manual_seed(0)
    x = noise.lhs_normal((5, 2, 3), g)
    q = torch.special.ndtri((torch.arange(5, dtype=torch.float64) + 0.5) / 5).float()
    assert x.shape == (5, 2, 3)
    for col in x.reshape(5, -1).T:  # each coordinate is a permutation of the 5 quantiles
        assert torch.equal(col.sort().values, q)
    assert torch.equal(x, noise.lhs_normal((5, 2, 3), torch.Generator().manual_seed(0)))
    assert (noise.lhs_normal((1, 4), g) == 0).all()


def test_aux_generators():
    a = torch.randn(3, generator=noise.aux_generator(0, 1, "targets"))
    assert torch.equal(a, torch.randn(3, generator=noise.aux_generator(0, 1, "targets")))
    assert not torch.equal(a, torch.randn(3, generator=noise.aux_generator(0, 1, "templates")))
    assert not torch.equal(a, torch.randn(3, generator=backbones.class_generator(0, 1)))
