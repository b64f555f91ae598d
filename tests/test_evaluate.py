"""Tests for dsco.evaluate: architectures, protocols (App. D), training, evaluate() and its cache."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from dsco import evaluate as ev
from dsco.data import load


@pytest.fixture(scope="module")
def train():
    return load("digits", "train")


@pytest.fixture(scope="module")
def test():
    return load("digits", "test")


@pytest.fixture(scope="module")
def small_test(test):
    return test.subset(torch.arange(0, len(test), 3))  # 150 images, all classes


def tiny(epochs=2, name="hard", **kw):
    """A short protocol for the digits sets of these tests (no flips: digits' registry entry)."""
    return ev.get_protocol(name, epochs=epochs, **{"flip": False, **kw})


# --- 1. architectures ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ev.ARCHS))
def test_build_every_arch_forward_backward_on_digits(name, train):
    model = ev.build(name, 10, (1, 8, 8), seed=0)
    out = model(train.x[:2])
    assert out.shape == (2, 10)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_build_unknown_arch_lists_names():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'.*convnet.*densenet121"):
        ev.build("vgg", 10)


def test_build_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = (ev.build("convnet", 10, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), state)
    wa, wb, wc = (m.features[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_instance_norm_is_groupnorm_per_channel():
    norm = ev.instance_norm(16)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 16 and norm.affine
    model = ev.build("resnet_ap10", 10)
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in ev.build("resnet18", 10, norm="batch").modules())


def _smallest_normalised_map(model, x):
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1] * o.shape[-2]))
             for m in model.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    model(x)
    for h in hooks:
        h.remove()
    return min(sizes)


def test_adapt_to_input_small_and_large():
    # digits: small stems, and every instance-normalised map of the own families is >= 2x2
    for name in ("convnet", "resnet_ap10", "resnet18"):
        assert _smallest_normalised_map(ev.build(name, 10, (1, 8, 8)), torch.randn(2, 1, 8, 8)) >= 4
    conv6 = ev.build("convnet", 10, (1, 8, 8), depth=6)
    assert sum(isinstance(m, nn.AvgPool2d) for m in conv6.modules()) == 2
    assert sum(isinstance(m, nn.AvgPool2d) for m in ev.build("convnet", 10, (1, 8, 8)).modules()) == 3
    r = ev.build("timm_resnet18", 10, (1, 8, 8))
    assert r.conv1.stride == (1, 1) and isinstance(r.maxpool, nn.Identity) and r.conv1.in_channels == 1
    assert ev.build("efficientnet_b0", 10, (1, 8, 8)).conv_stem.stride == (1, 1)
    d = ev.build("densenet121", 10, (1, 8, 8))
    assert d.features.conv0.stride == (1, 1) and isinstance(d.features.pool0, nn.Identity)
    # ImageNet-sized inputs keep the models as designed
    big = ev.build("timm_resnet18", 10, (3, 64, 64))
    assert big.conv1.stride == (2, 2) and isinstance(big.maxpool, nn.MaxPool2d)
    own = ev.build("resnet18", 10, (3, 64, 64))
    assert own.config["stem"] == "imagenet" and own(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least 8×8"):
        ev.build("convnet", 10, (1, 4, 4))


# --- 2. protocols ---------------------------------------------------------------------------

def test_protocol_presets_follow_appendix_d():
    h = ev.HARD
    assert (h.optimizer, h.lr, h.betas, h.eps, h.weight_decay) == ("adamw", 1e-3, (0.9, 0.999), 1e-8, 0.01)
    assert (h.schedule, h.milestones, h.gamma, h.batch_size) == ("multistep", (2 / 3, 5 / 6), 0.2, 64)
    assert (h.rrc_scale, h.cutmix_p, h.cutmix_beta, h.labels) == ((0.5, 1.0), 1.0, 1.0, "hard")
    s = ev.SOFT
    assert (s.labels, s.temperature, s.schedule, s.optimizer) == ("soft", 20.0, "cosine", "adamw")
    assert s.lr == 1e-2 and ev.get_protocol("soft", lr=1e-3).lr == 1e-3  # documented scale adaptation
    g = ev.SGD
    assert (g.optimizer, g.lr, g.momentum, g.weight_decay, g.schedule) == ("sgd", 0.01, 0.9, 1e-4, "multistep")


def test_get_protocol_overrides_and_errors():
    p = ev.get_protocol("soft", "smoke", epochs=3)
    assert (p.labels, p.profile, p.epochs) == ("soft", "smoke", 3)
    with pytest.raises(ValueError, match="unknown protocol 'adam'"):
        ev.get_protocol("adam")
    with pytest.raises(ValueError, match="unknown Protocol field"):
        ev.get_protocol("hard", lr_max=1)
    with pytest.raises(ValueError, match="schedule must be"):
        ev.get_protocol("hard", schedule="linear")


def test_schedules_step_per_epoch():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = ev._scheduler(ev.HARD, opt, 12)  # milestones at epochs 8 and 10
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[7] == pytest.approx(1e-3) and lrs[8] == pytest.approx(2e-4) and lrs[10] == pytest.approx(4e-5)
    for epochs in range(1, 400):  # the official milestones 2E//3 and 5E//6
        milestones = ev._scheduler(ev.HARD, opt, epochs).milestones
        assert sorted(milestones.elements()) == [2 * epochs // 3, 5 * epochs // 6]
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = ev._scheduler(ev.SOFT, opt, 10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5e-3)  # T_max = 2 x epochs: ends at half


def test_epochs_for_documented_values():
    paper = {1: 1000, 5: 1000, 10: 500, 20: 250, 40: 143, 135: 45}
    assert {ipc: ev.epochs_for(ipc, "paper") for ipc in paper} == paper
    assert [ev.epochs_for(ipc, "smoke") for ipc in (1, 5, 10, 20, 135, 400)] == [40, 40, 20, 10, 2, 1]
    assert ev.epochs_for(10, "paper", num_classes=2) == 1000  # 20 images: one step per epoch
    # "full": the paper's own epoch schedule (3000 / 2000 / 1500 / 1000 / 500 up to IPC 1 / 10 / 50 / 200 / above)
    full = {1: 3000, 5: 2000, 10: 2000, 11: 1500, 50: 1500, 100: 1000, 200: 1000, 201: 500, 1300: 500}
    assert {ipc: ev.epochs_for(ipc, "full") for ipc in full} == full
    assert ev.epochs_for(10, "full", num_classes=1000, batch_size=256) == 2000  # epochs, whatever the batches
    with pytest.raises(ValueError, match="unknown profile 'huge': use one of paper, smoke, full"):
        ev.epochs_for(10, "huge")
    with pytest.raises(ValueError, match="ipc > 0"):
        ev.epochs_for(0)


def test_resolve_takes_the_flip_from_its_caller_and_the_colour_from_the_data():
    d = ev.resolve(replace(ev.HARD, flip=False), "digits", 1)
    assert d.flip is False and d.color is False
    n = ev.resolve(replace(ev.HARD, flip=True), "imagenette", 3)
    assert n.flip is True and n.color is True
    assert ev.resolve(replace(ev.HARD, flip=True), "digits", 1).flip is True  # no name decides it
    with pytest.raises(ev.EvaluateError) as e:  # unset: one line naming the fix
        ev.resolve(ev.HARD, "folder", 1)
    assert "\n" not in str(e.value) and "ds.protocol('hard')" in str(e.value)
    assert "flip=True/False" in str(e.value)
    flipped = replace(ev.HARD, flip=True)
    assert ev.resolve(replace(flipped, color=False), "imagenet1k", 3).color is False
    with pytest.raises(ValueError, match="color=False"):
        ev.resolve(replace(ev.HARD, flip=False, color=True), "digits", 1)


# --- 3. augmentation, CutMix, losses --------------------------------------------------------

def test_random_resized_crop_no_flip_for_digits(train):
    x = train.x[:64]
    assert not torch.equal(x, x.flip(-1))
    p = replace(ev.resolve(tiny(), "digits", 1), rrc_scale=(1.0, 1.0), rrc_ratio=(1.0, 1.0))
    augment = ev.make_augment(p)
    torch.manual_seed(0)
    for _ in range(5):
        assert torch.equal(augment(x), x)  # a whole-image crop is the identity, and never mirrored
    flipped = ev.make_augment(replace(p, flip=True))(x)
    mirrored = (flipped - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-6
    kept = (flipped - x).abs().amax((1, 2, 3)) < 1e-6
    assert mirrored.any() and kept.any() and bool((mirrored | kept).all())


def test_random_resized_crop_is_seeded_and_crops(train):
    x = train.x[:32]
    torch.manual_seed(1)
    a = ev.random_resized_crop(x)
    torch.manual_seed(1)
    b = ev.random_resized_crop(x)
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    assert a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6  # bilinear: stays in the pixel range


def test_colour_augmentation_on_rgb():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = ev.make_augment(ev.resolve(replace(ev.HARD, flip=True), "imagenette", 3))(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    lit = ev.lighting(torch.full((2, 3, 4, 4), 0.5))
    assert lit.shape == (2, 3, 4, 4) and not torch.equal(lit[0], lit[1])


def test_cutmix_targets_sum_to_one_and_match_pasted_area():
    torch.manual_seed(0)
    mix = ev.make_cutmix(ev.HARD, 10)
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
    area = (np.minimum(cx + half, side) - np.maximum(cx - half, 0)) * \
           (np.minimum(cy + half, side) - np.maximum(cy - half, 0))
    expected = np.quantile(1 - area / side ** 2, [0.25, 0.5, 0.75])
    assert np.allclose(np.quantile(lams, [0.25, 0.5, 0.75]), expected, atol=0.07)
    assert not np.allclose(np.quantile(lams, [0.25, 0.5, 0.75]), [0.5, 0.5, 0.5], atol=0.1)


def test_cutmix_off_gives_one_hot():
    mix = ev.make_cutmix(replace(ev.HARD, cutmix_p=0.0), 4)
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 3, 1])
    xm, t = mix(x, y)
    assert torch.equal(xm, x) and torch.equal(t, nn.functional.one_hot(y, 4).float())


def test_soft_label_loss():
    a = torch.randn(5, 10)
    assert ev.soft_label_loss(a, a, 20.0).abs() < 1e-6
    loss = ev.soft_label_loss(a, torch.randn(5, 10) * 30, 20.0)
    assert torch.isfinite(loss) and loss > 0


def test_accuracy_counts_top1():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float() + self.w

    x = torch.tensor([0, 1, 2, 1.0])[:, None, None, None].expand(4, 1, 2, 2)
    assert ev.accuracy(Fixed(), x, torch.tensor([0, 1, 2, 0]), batch_size=3) == 75.0


# --- 4. training and evaluate() -------------------------------------------------------------

def test_hard_label_training_beats_chance(train, test):
    res = ev.evaluate(train.sample_per_class(10, 0), "convnet", tiny(epochs=30), repeats=1,
                      test_set=test, cache=False, progress=False)
    assert res.accs[0] > 30.0  # chance is 10 %
    assert res.steps == 60 and res.epochs == 30 and res.metric == "final"
    assert res.wall_s[0] > 0 and res.peak_mem_mb[0] > 0


def test_soft_label_path_with_stand_in_teacher(train, small_test):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    surrogate = train.sample_per_class(2, 0)
    p = ev.resolve(tiny(name="soft"), "digits", 1)
    out = ev.train_model(ev.build("convnet", 10), surrogate.x, surrogate.y, p, 2, num_classes=10,
                         teacher=teacher, test=(small_test.x, small_test.y))
    assert math.isfinite(out["last_loss"]) and out["last_loss"] >= 0 and out["steps"] == 2
    res = ev.evaluate(surrogate, "convnet", tiny(name="soft"), repeats=1, test_set=small_test,
                      teacher=teacher, cache=False, progress=False)
    assert res.protocol == "soft" and 0 <= res.accs[0] <= 100
    with pytest.raises(ValueError, match="needs teacher="):
        ev.evaluate(surrogate, "convnet", tiny(name="soft"), repeats=1, test_set=small_test,
                    cache=False)


def test_sgd_variant_runs(train, small_test):
    res = ev.evaluate(train.sample_per_class(2, 0), "resnet_ap10", tiny(name="sgd"), repeats=1,
                      test_set=small_test, cache=False, progress=False)
    assert res.protocol == "sgd" and 0 <= res.accs[0] <= 100


def test_evaluate_is_deterministic_per_seed(train, small_test):
    s = train.sample_per_class(3, 0)
    a, b = (ev.evaluate(s, "convnet", tiny(epochs=3), repeats=2, seed=5, test_set=small_test,
                        cache=False, progress=False) for _ in range(2))
    assert a.accs == b.accs and a.seeds == [5, 6]
    state = torch.get_rng_state()
    ev.evaluate((s.x, s.y), "convnet", tiny(epochs=1), repeats=1, test_set=small_test, cache=False,
                progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched


def test_cache_hit_skips_training(train, small_test, tmp_path, monkeypatch):
    s = train.sample_per_class(2, 1)
    kw = dict(test_set=small_test, cache_dir=tmp_path, progress=False)
    first = ev.evaluate(s, "convnet", tiny(), repeats=2, **kw)
    assert first.cached == [False, False] and len(list(tmp_path.glob("*.json"))) == 2

    def boom(*a, **k):
        raise AssertionError("trained although the runs are cached")

    monkeypatch.setattr(ev, "train_model", boom)
    again = ev.evaluate(s, "convnet", tiny(), repeats=2, **kw)
    assert again.cached == [True, True]
    assert (again.accs, again.wall_s, again.mean, again.std) == (first.accs, first.wall_s, first.mean, first.std)
    with pytest.raises(AssertionError, match="trained although"):  # anything different trains again
        ev.evaluate(s, "convnet", tiny(epochs=3), repeats=1, **kw)
    with pytest.raises(AssertionError, match="trained although"):
        ev.evaluate(s, "convnet", tiny(), repeats=1, seed=7, **kw)
    with pytest.raises(AssertionError, match="trained although"):
        ev.evaluate(s, "convnet", tiny(), repeats=1, cache=False, test_set=small_test, progress=False)


def test_best_of_last_third_is_at_least_final(train, small_test):
    res = ev.evaluate(train.sample_per_class(5, 0), "convnet", tiny(epochs=9), repeats=1,
                      test_set=small_test, best_of_last_third=True, cache=False, progress=False)
    assert res.metric == "best_of_last_third"
    assert res.accs[0] >= res.final_accs[0]


def test_eval_result_uses_population_std():
    r = ev.EvalResult("convnet", "hard", "final", 1.0, 1, 1, [0, 1], [10.0, 20.0], [10.0, 20.0],
                      [1.0, 1.0], [1.0, 1.0], [False, False], "cpu")
    assert (r.mean, r.std) == (15.0, 5.0) and str(r) == "15.0 ± 5.0"
    assert r.to_dict()["accs"] == [10.0, 20.0]


def test_teacher_fingerprint_tells_teachers_apart():
    x = torch.randn(4, 1, 8, 8)
    torch.manual_seed(0)
    t1, t2 = nn.Linear(64, 10), nn.Linear(64, 10)
    f1 = lambda z: t1(z.flatten(1))  # noqa: E731 -- any callable returning logits works
    assert ev.teacher_fingerprint(f1, x) == ev.teacher_fingerprint(f1, x)
    assert ev.teacher_fingerprint(f1, x) != ev.teacher_fingerprint(lambda z: t2(z.flatten(1)), x)


def test_evaluate_rejects_bad_input(train, small_test):
    s = train.sample_per_class(1, 0)
    kw = dict(repeats=1, test_set=small_test, cache=False, progress=False)
    with pytest.raises(ValueError, match="unknown architecture"):
        ev.evaluate(s, "vgg", tiny(), **kw)
    with pytest.raises(ValueError, match="decode/resize the surrogate"):
        ev.evaluate((torch.zeros(2, 1, 16, 16), torch.tensor([0, 1])), "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        ev.evaluate((s.x, s.y + 5), "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match="one per image"):
        ev.evaluate((s.x, s.y[:3]), "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match="ImageSet"):
        ev.evaluate("digits", "convnet", tiny(), **kw)
    with pytest.raises(ValueError, match="repeats must be"):
        ev.evaluate(s, "convnet", tiny(), **(kw | {"repeats": 0}))


def test_soft_labels_with_the_shipped_digits_teacher(train, small_test):
    teacher_mod = pytest.importorskip("dsco.teacher")
    if not teacher_mod.TEACHER_WEIGHTS.is_file():
        pytest.skip("the digits teacher weights are not shipped yet")
    teacher = teacher_mod.load_teacher()
    s = train.sample_per_class(2, 0)
    assert ev.teacher_fingerprint(teacher, s.x) == ev.teacher_fingerprint(teacher_mod.load_teacher(), s.x)
    res = ev.evaluate(s, "convnet", tiny(name="soft"), repeats=1, test_set=small_test, teacher=teacher,
                      cache=False, progress=False)
    assert res.protocol == "soft" and 0 <= res.accs[0] <= 100


def test_grid_rows_seeds_and_workers_agree(tmp_path):
    train = load("digits", "train")
    sets = {("random", 1): train.sample_per_class(1, 0), ("random", 2): train.sample_per_class(2, 0)}
    p = ev.get_protocol("hard", "smoke", epochs=2, flip=False)
    test = load("digits", "test")
    df = ev.grid(sets, ["convnet"], p, repeats=2, seed=5, names=("method", "ipc"), progress=False,
                 test_set=test, cache_dir=tmp_path, width=8)
    assert len(df) == 4 and list(df.columns[:5]) == ["method", "ipc", "arch", "protocol", "run_seed"]
    assert df.run_seed.tolist() == [5, 6, 5, 6] and df.ipc.tolist() == [1, 1, 2, 2]
    one = ev.evaluate(sets[("random", 2)], "convnet", p, repeats=2, seed=5, progress=False, cache_dir=tmp_path,
                      test_set=test, width=8)
    assert df.acc.tolist()[2:] == one.accs and all(one.cached)
    par = ev.grid(sets, ["convnet"], p, repeats=2, seed=5, names=("method", "ipc"), progress=False,
                  workers=2, test_set=test, cache_dir=tmp_path / "fresh", width=8)
    assert par.acc.tolist() == df.acc.tolist()
    table = ev.summary(df, "method", ["arch", "ipc"])
    mean, std = np.mean(one.accs), np.std(one.accs)
    assert table.loc["random", ("convnet", 2)] == f"{mean:.1f} ± {std:.1f}"


def test_grid_bad_input(small_test):
    with pytest.raises(ev.EvaluateError, match="unknown architecture"):
        ev.grid({"a": None}, ["vgg"])
    with pytest.raises(ev.EvaluateError, match="grid needs test_set= .* or dataset="):
        ev.grid({"a": None}, ["convnet"])
    with pytest.raises(ev.EvaluateError, match="names="):
        ev.grid({("a", 1): None}, ["convnet"], test_set=small_test)
    with pytest.raises(ev.EvaluateError, match="evaluate needs test_set="):
        ev.evaluate((small_test.x, small_test.y), "convnet", tiny(), repeats=1, cache=False)


def test_budget_widths_build_narrower_models():
    from dsco import datasets

    for profile, budget in datasets.REGISTRY["digits"].budgets.items():
        for arch, kwargs in {**budget.widths, **budget.timm}.items():
            narrow, full = ev.build(arch, 10, (1, 8, 8), **kwargs), ev.build(arch, 10, (1, 8, 8))
            assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in full.parameters()), (profile, arch)
            assert narrow(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_grid_takes_what_the_dataset_fixes(train, tmp_path):
    from dsco import datasets

    ds = datasets.get("digits", "smoke")
    sets = {"random": train.sample_per_class(1, 0)}
    df = ev.grid(sets, ["convnet"], "hard", dataset=ds, cache_dir=tmp_path, progress=False)
    # repeats (1), the smoke step budget (40 steps: 40 epochs of one batch) and the width (16) come from ds
    assert len(df) == ds.budget.repeats == 1 and df.epochs.tolist() == [ev.epochs_for(1, "smoke")] == [40]
    assert df.steps.tolist() == [40] and not df.cached.any()
    one = ev.evaluate(sets["random"], "convnet", ds.protocol("hard"), repeats=1, test_set=ds.test(), cache_dir=tmp_path,
                      progress=False, width=16)
    assert one.cached == [True] and one.accs == df.acc.tolist()  # the very same run
    wide = ev.grid(sets, ["convnet"], "hard", dataset=ds, cache_dir=tmp_path, progress=False, width=8)
    assert not wide.cached.any()  # an explicit arch kwarg wins over the profile's
    paper = ev.grid(sets, ["convnet"], ev.get_protocol("hard", epochs=1, flip=False), dataset=ds,
                    repeats=2, cache_dir=tmp_path, progress=False)
    assert paper.run_seed.tolist() == [0, 1] and paper.epochs.tolist() == [1, 1]  # a Protocol is taken as given


def test_summary_numbers_long_frame():
    import pandas as pd

    df = pd.DataFrame({"method": ["a", "a", "a", "b", "b"], "arch": ["x", "x", "y", "x", "x"],
                       "acc": [10.0, 20.0, 30.0, 40.0, 41.0]})
    long = ev.summary(df, "method", "arch", numbers=True)
    assert list(long.columns) == ["method", "arch", "mean", "std", "n"]
    assert long.values.tolist() == [["a", "x", 15.0, 5.0, 2], ["a", "y", 30.0, 0.0, 1], ["b", "x", 40.5, 0.5, 2]]
    text = ev.summary(df, "method", "arch")
    assert text.loc["a", "x"] == "15.0 ± 5.0" and text.loc["b", "x"] == "40.5 ± 0.5" and pd.isna(text.loc["b", "y"])
    flat = ev.summary(df, ["method", "arch"], None, digits=2)
    assert flat.loc[("b", "x")] == "40.50 ± 0.50"


def test_accuracy_reads_a_data_set(train):
    model = ev.build("convnet", 10, seed=0, width=8).eval()
    s = train.subset(torch.arange(0, 300, 3))
    assert ev.accuracy(model, s) == ev.accuracy(model, s.x, s.y)  # the same batches: the same computation
    assert ev.accuracy(model, (s.x, s.y)) == ev.accuracy(model, s.x, s.y) and model.training is False


def test_peak_mem_mb_is_the_process_peak_on_cpu():
    import resource
    peak = ev.peak_mem_mb("cpu")
    assert peak > 0 and peak == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rel=0.05)
