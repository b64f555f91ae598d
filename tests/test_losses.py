"""Tests for dsco.losses (Eq. 18-27), with hand-computed values on tiny tensors."""

import math

import pytest
import torch

from dsco import losses


def test_absn2_values_and_gradient():
    x = torch.tensor([-2.0, 0.0, 0.5], requires_grad=True)
    y = losses.absn2(x)
    assert torch.allclose(y, torch.tensor([6.0, 0.0, 0.75]))
    y.sum().backward()
    # d/dx (|x| + x^2) = sign(x) + 2x, exactly 0 at x = 0
    assert torch.equal(x.grad, torch.tensor([-5.0, 0.0, 2.0]))


def test_reality_loss_hand_values():
    d_sqrt = 2.0  # C*H*W = 4
    eps = torch.zeros(3, 1, 2, 2)
    eps[0] = 1.0  # norm 2 -> absn2(0) = 0
    eps[1, 0, 0, 0] = 3.0  # norm 3 -> absn2(1) = 2
    # eps[2] = 0               # norm 0 -> absn2(-2) = 6
    assert math.isclose(losses.reality_loss(eps).item(), 0.0 + 2.0 + 6.0)
    eps = eps.requires_grad_()
    losses.reality_loss(eps[:1] * 1.0).backward()
    assert eps.grad.abs().sum() == 0  # on the sphere of radius sqrt(CHW): zero gradient
    assert d_sqrt == math.sqrt(eps[0].numel())


def test_pool_and_channel_stats_hand_values():
    f = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 6.0]]]])  # (N=2, J=1, K=1, L=2)
    assert torch.allclose(losses.pool(f), torch.tensor([[1.5], [4.5]]))
    mean, std = losses.channel_stats(f)
    assert torch.allclose(mean, torch.tensor([3.0]))
    assert torch.allclose(std, torch.tensor([math.sqrt(3.5)]))  # population: (4+1+0+9)/4
    mean2, std2 = losses.channel_stats(torch.tensor([[1.0, 0.0], [3.0, 4.0]]))
    assert torch.allclose(mean2, torch.tensor([2.0, 2.0])) and torch.allclose(
        std2, torch.tensor([1.0, 2.0])
    )


def test_cross_normalise_hand_values():
    f = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 6.0]]]])
    out = losses.cross_normalise(f, torch.tensor([2.0]), torch.tensor([2.0]))
    assert torch.allclose(out.flatten(), torch.tensor([-0.5, 0.0, 0.5, 2.0]))
    pooled = losses.cross_normalise(
        torch.tensor([[1.0, 0.0]]), torch.tensor([2.0, 2.0]), torch.tensor([1.0, 2.0])
    )
    assert torch.allclose(pooled, torch.tensor([[-1.0, -1.0]]))


def test_ot_pivots_hand_values_and_error():
    t = torch.tensor([[4.0, 0.0], [1.0, 10.0], [3.0, 20.0], [2.0, 30.0]])
    piv = losses.ot_pivots(t, 2)
    assert torch.allclose(piv, torch.tensor([[1.5, 5.0], [3.5, 25.0]]))
    assert torch.allclose(losses.ot_pivots(t, 1), t.mean(0, keepdim=True))
    with pytest.raises(ValueError, match="multiple of 3"):
        losses.ot_pivots(t, 3)


def test_channel_ot_loss_hand_value():
    feats = torch.tensor([[3.5], [1.0]])
    pivots = torch.tensor([[1.5], [3.5]])
    # sorted feats [1.0, 3.5] - pivots [1.5, 3.5] = [-0.5, 0] -> 0.5 + 0.25
    assert math.isclose(losses.channel_ot_loss(feats, pivots).item(), 0.75)
    with pytest.raises(ValueError, match="ot_pivots"):
        losses.channel_ot_loss(feats, pivots[:1])


def test_channel_ot_loss_permutation_invariant_and_zero_on_pivots():
    g = torch.Generator().manual_seed(0)
    feats, targets = torch.randn(6, 5, generator=g), torch.randn(30, 5, generator=g)
    piv = losses.ot_pivots(targets, 6)
    a = losses.channel_ot_loss(feats, piv)
    b = losses.channel_ot_loss(feats[torch.randperm(6, generator=g)], piv)
    assert torch.allclose(a, b)
    shuffled_pivots = piv[torch.randperm(6, generator=g)]
    assert losses.channel_ot_loss(shuffled_pivots, piv).item() == 0.0


def test_max_occupation_hand_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # nearest cosine: a->b 1/sqrt2, b->a or c 1/sqrt2, c->b 1/sqrt2
    assert math.isclose(losses.max_occupation_loss(a).item(), 3 / math.sqrt(2), rel_tol=1e-6)
    same = torch.ones(2, 3, 2, 2)
    assert math.isclose(losses.max_occupation_loss(same).item(), 2.0, rel_tol=1e-6)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert math.isclose(losses.max_occupation_loss(opposite).item(), -2.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        losses.max_occupation_loss(a[:1])


def test_max_occupation_gradient_pushes_apart():
    x = torch.tensor([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.0]], requires_grad=True)
    before = losses.max_occupation_loss(x)
    before.backward()
    after = losses.max_occupation_loss(x.detach() - 0.1 * x.grad)
    assert after < before


def test_stats_loss_hand_value_and_zero_on_standardised():
    f = torch.tensor([[1.0], [3.0]])  # mean 2, population std 1 -> absn2(2) + absn2(0) = 6
    assert math.isclose(losses.stats_loss(f).item(), 6.0)
    g = torch.Generator().manual_seed(0)
    maps = 3 + 2 * torch.randn(7, 4, 2, 2, generator=g)
    standard = losses.cross_normalise(maps, *losses.channel_stats(maps))
    assert losses.stats_loss(standard).item() < 1e-5
    assert losses.stats_loss(maps).item() > 1.0
