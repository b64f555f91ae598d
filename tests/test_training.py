"""Tests for dsco.training: protocols (App. D), augmentation, CutMix, losses, accuracy."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from dsco import training as tr
from dsco.architectures import build
from dsco.data import load


@pytest.fixture(scope="module")
def train():
    return load("digits", "train")


# --- 1. protocols ---------------------------------------------------------------------------


def test_protocol_presets_follow_appendix_d():
    h = tr.HARD
    assert (h.optimizer, h.lr, h.betas, h.eps, h.weight_decay) == (
        "adamw",
        1e-3,
        (0.9, 0.999),
        1e-8,
        0.01,
    )
    assert (h.schedule, h.milestones, h.gamma, h.batch_size) == (
        "multistep",
        (2 / 3, 5 / 6),
        0.2,
        64,
    )
    assert (h.rrc_scale, h.cutmix_p, h.cutmix_beta, h.labels) == ((0.5, 1.0), 1.0, 1.0, "hard")
    s = tr.SOFT
    assert (s.labels, s.temperature, s.schedule, s.optimizer) == ("soft", 20.0, "cosine", "adamw")
    # the documented scale adaptation
    assert s.lr == 1e-2 and tr.get_protocol("soft", lr=1e-3).lr == 1e-3
    g = tr.SGD
    assert (g.optimizer, g.lr, g.momentum, g.weight_decay, g.schedule) == (
        "sgd",
        0.01,
        0.9,
        1e-4,
        "multistep",
    )


def test_get_protocol_overrides_and_errors():
    p = tr.get_protocol("soft", "smoke", epochs=3)
    assert (p.labels, p.profile, p.epochs) == ("soft", "smoke", 3)
    with pytest.raises(ValueError, match="unknown protocol 'adam'"):
        tr.get_protocol("adam")
    with pytest.raises(ValueError, match="unknown Protocol field"):
        tr.get_protocol("hard", lr_max=1)
    with pytest.raises(ValueError, match="schedule must be"):
        tr.get_protocol("hard", schedule="linear")


def test_schedules_step_per_epoch():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = tr._scheduler(tr.HARD, opt, 12)  # milestones at epochs 8 and 10
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[7] == pytest.approx(1e-3) and lrs[8] == pytest.approx(2e-4)
    assert lrs[10] == pytest.approx(4e-5)
    for epochs in range(1, 400):  # the official milestones 2E//3 and 5E//6
        milestones = tr._scheduler(tr.HARD, opt, epochs).milestones
        assert sorted(milestones.elements()) == [2 * epochs // 3, 5 * epochs // 6]
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = tr._scheduler(tr.SOFT, opt, 10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5e-3)  # T_max = 2 x epochs: ends at half


def test_epochs_for_documented_values():
    paper = {1: 1000, 5: 1000, 10: 500, 20: 250, 40: 143, 135: 45}
    assert {ipc: tr.epochs_for(ipc, "paper") for ipc in paper} == paper
    smoke = [tr.epochs_for(ipc, "smoke") for ipc in (1, 5, 10, 20, 135, 400)]
    assert smoke == [40, 40, 20, 10, 2, 1]
    assert tr.epochs_for(10, "paper", num_classes=2) == 1000  # 20 images: one step per epoch
    # "full": the paper's own epoch schedule (3000 / 2000 / 1500 / 1000 / 500 up to IPC
    # 1 / 10 / 50 / 200 / above)
    full = {
        1: 3000,
        5: 2000,
        10: 2000,
        11: 1500,
        50: 1500,
        100: 1000,
        200: 1000,
        201: 500,
        1300: 500,
    }
    assert {ipc: tr.epochs_for(ipc, "full") for ipc in full} == full
    # epochs, whatever the batches
    assert tr.epochs_for(10, "full", num_classes=1000, batch_size=256) == 2000
    with pytest.raises(ValueError, match="unknown profile 'huge': use one of paper, smoke, full"):
        tr.epochs_for(10, "huge")
    with pytest.raises(ValueError, match="ipc > 0"):
        tr.epochs_for(0)


def test_resolve_takes_the_flip_from_its_caller_and_the_colour_from_the_data():
    d = tr.resolve(replace(tr.HARD, flip=False), "digits", 1)
    assert d.flip is False and d.color is False
    n = tr.resolve(replace(tr.HARD, flip=True), "imagenette", 3)
    assert n.flip is True and n.color is True
    assert tr.resolve(replace(tr.HARD, flip=True), "digits", 1).flip is True  # no name decides it
    with pytest.raises(tr.EvaluateError) as e:  # unset: one line naming the fix
        tr.resolve(tr.HARD, "folder", 1)
    assert "\n" not in str(e.value) and "ds.protocol('hard')" in str(e.value)
    assert "flip=True/False" in str(e.value)
    flipped = replace(tr.HARD, flip=True)
    assert tr.resolve(replace(flipped, color=False), "imagenet1k", 3).color is False
    with pytest.raises(ValueError, match="color=False"):
        tr.resolve(replace(tr.HARD, flip=False, color=True), "digits", 1)


# --- 2. augmentation, CutMix, losses, accuracy -----------------------------------------------


def test_random_resized_crop_no_flip_for_digits(train):
    x = train.x[:64]
    assert not torch.equal(x, x.flip(-1))
    p = replace(
        tr.resolve(replace(tr.HARD, flip=False), "digits", 1),
        rrc_scale=(1.0, 1.0),
        rrc_ratio=(1.0, 1.0),
    )
    augment = tr.make_augment(p)
    torch.manual_seed(0)
    for _ in range(5):
        assert torch.equal(augment(x), x)  # a whole-image crop is the identity, and never mirrored
    flipped = tr.make_augment(replace(p, flip=True))(x)
    mirrored = (flipped - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-6
    kept = (flipped - x).abs().amax((1, 2, 3)) < 1e-6
    assert mirrored.any() and kept.any() and bool((mirrored | kept).all())


def test_random_resized_crop_is_seeded_and_crops(train):
    x = train.x[:32]
    torch.manual_seed(1)
    a = tr.random_resized_crop(x)
    torch.manual_seed(1)
    b = tr.random_resized_crop(x)
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    assert a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6  # bilinear: stays in the pixel range


def test_colour_augmentation_on_rgb():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = tr.make_augment(tr.resolve(replace(tr.HARD, flip=True), "imagenette", 3))(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    lit = tr.lighting(torch.full((2, 3, 4, 4), 0.5))
    assert lit.shape == (2, 3, 4, 4) and not torch.equal(lit[0], lit[1])


def test_cutmix_targets_sum_to_one_and_match_pasted_area():
    torch.manual_seed(0)
    mix = tr.make_cutmix(tr.HARD, 10)
    n, side = 10, 32
    x = torch.arange(n, dtype=torch.float)[:, None, None, None].expand(n, 1, side, side).clone()
    y = torch.arange(n)
    lams = []
    for _ in range(300):
        xm, t = mix(x, y)
        assert t.shape == (n, 10) and torch.allclose(t.sum(1), torch.ones(n))
        own = (xm == x).float().mean((1, 2, 3))  # fraction of each image still its own
        assert torch.allclose(t[torch.arange(n), y], own)
        partner = (xm == x.roll(1, 0)).float().mean((1, 2, 3))
        assert torch.allclose(t[torch.arange(n), y.roll(1)], partner)
        lams.append(float(own[0]))
    # lam ~ Beta(1, 1) = U(0, 1), then corrected to the pasted box (clipped at the image border):
    # compare quartiles with a simulation of that rule for beta = 1
    rng = np.random.default_rng(0)
    lam = rng.beta(1.0, 1.0, 20000)
    half = (0.5 * np.sqrt(1 - lam) * side).astype(int)
    cx, cy = rng.integers(0, side, (2, 20000))
    area = (np.minimum(cx + half, side) - np.maximum(cx - half, 0)) * (
        np.minimum(cy + half, side) - np.maximum(cy - half, 0)
    )
    expected = np.quantile(1 - area / side**2, [0.25, 0.5, 0.75])
    assert np.allclose(np.quantile(lams, [0.25, 0.5, 0.75]), expected, atol=0.07)
    assert not np.allclose(np.quantile(lams, [0.25, 0.5, 0.75]), [0.5, 0.5, 0.5], atol=0.1)


def test_cutmix_off_gives_one_hot():
    mix = tr.make_cutmix(replace(tr.HARD, cutmix_p=0.0), 4)
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 3, 1])
    xm, t = mix(x, y)
    assert torch.equal(xm, x) and torch.equal(t, nn.functional.one_hot(y, 4).float())


def test_soft_label_loss():
    a = torch.randn(5, 10)
    assert tr.soft_label_loss(a, a, 20.0).abs() < 1e-6
    loss = tr.soft_label_loss(a, torch.randn(5, 10) * 30, 20.0)
    assert torch.isfinite(loss) and loss > 0


def test_accuracy_counts_top1():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float() + self.w

    x = torch.tensor([0, 1, 2, 1.0])[:, None, None, None].expand(4, 1, 2, 2)
    assert tr.accuracy(Fixed(), x, torch.tensor([0, 1, 2, 0]), batch_size=3) == 75.0


def test_accuracy_reads_a_data_set(train):
    model = build("convnet", 10, seed=0, width=8).eval()
    s = train.subset(torch.arange(0, 300, 3))
    # the same batches: the same computation
    assert tr.accuracy(model, s) == tr.accuracy(model, s.x, s.y)
    assert tr.accuracy(model, (s.x, s.y)) == tr.accuracy(model, s.x, s.y)
    assert model.training is False


def test_peak_mem_mb_is_the_process_peak_on_cpu():
    import resource

    peak = tr.peak_mem_mb("cpu")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak > 0 and peak == pytest.approx(rss, rel=0.05)
