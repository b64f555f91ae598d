"""Tests for dsco.projector (App. C random feature projector)."""

import pytest
import torch

from dsco import projector


def test_paper_preset_shape_and_widths():
    p = projector.make("paper", seed=0)
    assert p.widths == (256, 512, 1024, 2048) and p.groups == 16
    assert p.output_shape(32, 32) == (2048, 4, 4)
    out = p(torch.randn(1, 4, 32, 32))
    assert out.shape == (1, 2048, 4, 4)


def test_digits_preset_shape():
    p = projector.make("digits", seed=0)
    out = p(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, *p.output_shape(8, 8)) == (3, 256, 2, 2)


def test_layer_structure_dense_then_grouped():
    p = projector.RandomProjector(4, widths=(32, 64, 128), groups=16, seed=0)
    convs = [m for m in p if isinstance(m, torch.nn.Conv2d)]
    acts = [m for m in p if isinstance(m, torch.nn.LeakyReLU)]
    assert len(convs) == 3 and len(acts) == 2
    assert all(a.negative_slope == 0.01 for a in acts)
    assert isinstance(p[-1], torch.nn.Conv2d)  # no activation after the last layer
    first, *rest = convs
    assert first.groups == 1 and first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert first.weight.shape == (32, 4, 3, 3)
    assert rest[0].weight.shape == (64, 32 // 16, 4, 4) and rest[1].weight.shape == (
        128,
        64 // 16,
        4,
        4,
    )
    assert all(c.groups == 16 and c.stride == (2, 2) and c.padding == (1, 1) for c in rest)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in p.modules())


def test_frozen_and_eval():
    p = projector.make("digits", seed=0)
    assert all(not q.requires_grad for q in p.parameters())
    p.train()
    assert not p.training
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    p(x).sum().backward()  # gradients still flow to the input
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_seeded_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = projector.make("digits", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = projector.make("digits", seed=7)
    c = projector.make("digits", seed=8)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_last_layer_linear_gives_negative_outputs():
    p = projector.make("digits", seed=0)
    out = p(torch.randn(16, 1, 8, 8))
    assert (out < 0).float().mean() > 0.2  # a LeakyReLU at the end would leave few, tiny negatives
    assert out.min() < -0.1 * out.abs().max()


def test_bad_config_errors():
    with pytest.raises(ValueError, match="multiples of 16"):
        projector.RandomProjector(1, widths=(24, 64), groups=16)
    with pytest.raises(ValueError, match="unknown projector preset"):
        projector.make("nope")
    with pytest.raises(ValueError, match="no projector preset"):
        projector.preset_for((3, 5, 5))
    assert projector.preset_for((4, 32, 32)) == "paper"
    assert projector.preset_for((1, 8, 8)) == "digits"


def test_overrides():
    p = projector.make("digits", seed=0, widths=(32, 64))
    assert p(torch.randn(1, 1, 8, 8)).shape == (1, 64, 4, 4)


def test_for_latents_defaults():
    assert projector.for_latents((4, 32, 32)).widths == (256, 512, 1024, 2048)
    p = projector.for_latents((1, 8, 8), seed=3)
    assert p.widths == (64, 128, 256) and p.seed == 3
    q = projector.for_latents((4, 8, 8))
    assert q.in_channels == 4 and q(torch.randn(2, 4, 8, 8)).shape == (2, 256, 2, 2)


def test_for_latents_refuses_a_shape_without_a_preset():
    for shape in [(4, 6, 6), (3, 64, 64), (4, 64, 64)]:
        with pytest.raises(ValueError) as e:
            projector.for_latents(shape)
        msg = str(e.value)
        assert "\n" not in msg and "×".join(map(str, shape)) in msg
        assert "4×32×32 (paper)" in msg and "1×8×8 (digits)" in msg
        assert 'projector="latent"' in msg
        assert "dsco.registry.REGISTRY" in msg


def test_the_tiny_dit_keeps_the_projector_it_had():
    """4×4×4 (dit.TINY_DIT, the offline ImageNette fixture) is known: the latent preset, the
    very weights it got before as "the digits widths with in_channels=4"."""
    p = projector.for_latents((4, 4, 4), seed=2)
    before = projector.make("digits", seed=2, in_channels=4)
    assert projector.preset_for((4, 4, 4)) == "latent"
    assert all(
        torch.equal(a, b) for a, b in zip(p.state_dict().values(), before.state_dict().values())
    )


# --- measuring a projector (notebook 13) ----------------------------------------------------------


def test_channel_rows_pooled_and_full():
    f = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # N=2, J=3, 2×2 maps
    pooled = projector.channel_rows(f)
    assert pooled.shape == (3, 2) and torch.equal(pooled[1], f[:, 1].mean((1, 2)))
    full = projector.channel_rows(f, pooled=False)
    assert full.shape == (3, 2 * 4) and torch.equal(
        full[2], torch.cat([f[0, 2].flatten(), f[1, 2].flatten()])
    )


def test_mean_abs_correlation_and_effective_rank_known_answers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, generator=g)
    assert projector.mean_abs_correlation(torch.stack([a, -2 * a, a + 1])) == pytest.approx(1.0)
    assert projector.effective_rank(torch.stack([a, -2 * a, 3 * a])) == pytest.approx(
        1.0
    )  # one direction
    iso = torch.randn(8, 20_000, generator=g)  # 8 independent unit-variance channels
    assert projector.effective_rank(iso) == pytest.approx(8.0, rel=0.02)
    assert projector.mean_abs_correlation(iso) < 0.02  # E|r| ≈ √(2/(π·20000)) ≈ 0.006
    assert projector.effective_rank(
        iso * torch.tensor([10.0] + [1e-3] * 7)[:, None]
    ) == pytest.approx(1.0, rel=1e-3)


def test_decay_claims_judge_the_seeds_log_log_slopes_with_the_trend_rule():
    import numpy as np
    import pandas as pd

    m = np.array([16, 64, 256])

    def rows(exponent, seeds=3):  # one curve per projector seed, slopes spread by ±0.01
        return pd.DataFrame(
            [
                {"curve": "c", "m": w, "seed": s, "mean |corr|": 0.5 * w ** (exponent - 0.01 * s)}
                for s in range(seeds)
                for w in m
            ]
        )

    claim, flat = projector.decay_claims(rows(-0.1), "c").popitem()
    assert claim.startswith(
        "the random projector's channel correlations fall as O(1/√m): "
        "log-log slope below -0.4 (-0.5 within 0.1; c, widths 16–256)"
    )
    assert type(flat).__name__ == "Verdict" and flat.verdict == "does not hold"
    assert flat.cells.iloc[0]["estimate"] == pytest.approx(-0.11) and "log-log slope" in flat.rule
    assert projector.decay_claims(rows(-0.5), "c").popitem()[1].verdict == "holds"
    # slopes -0.38..-0.40: the interval straddles -0.4
    assert projector.decay_claims(rows(-0.38), "c").popitem()[1].verdict == "within noise"
    assert projector.decay_claims(rows(-0.5, seeds=2), "c").popitem()[1].verdict == "not measured"
    # a stricter tolerance moves the threshold: a -0.45 slope fails "below -0.5 + 0.0"
    strict = projector.decay_claims(rows(-0.45), "c", tolerance=0.0)
    assert strict.popitem()[1].verdict == "does not hold"
    with pytest.raises(ValueError, match="tolerance"):
        projector.decay_claims(rows(-0.5), "c", tolerance=-1)
