import pytest
import torch

from dsco import surrogates
from dsco.data import load

TINY = dict(num_steps=3, iterations=2, n_templates=4)


def test_random_is_seeded_class_balanced_subset_of_real(tmp_path):
    s = surrogates.make("random", 2, seed=3, cache_dir=tmp_path)
    train = load("digits", "train")
    assert torch.equal(s.data.x, train.sample_per_class(2, 3).x)
    assert s.data.counts().tolist() == [2] * 10 and s.method == "random" and not s.cached


@pytest.mark.parametrize("method", ["vanilla", "dsco", "dfdsco"])
def test_synthetic_methods_are_deterministic_and_cached(tmp_path, method):
    a = surrogates.make(method, 2, seed=1, classes=[0, 3], cache_dir=tmp_path, template_cache=tmp_path / "t",
                        progress=False, **TINY)
    assert a.data.x.shape == (4, 1, 8, 8) and a.data.y.tolist() == [0, 0, 3, 3]
    assert a.data.x.abs().max() <= 1 and a.wall_s > 0 and a.peak_mem_mb > 0
    b = surrogates.make(method, 2, seed=1, classes=[0, 3], cache_dir=tmp_path, template_cache=tmp_path / "t",
                        progress=False, **TINY)
    assert b.cached and torch.equal(a.data.x, b.data.x) and b.wall_s == a.wall_s
    fresh = surrogates.make(method, 2, seed=1, classes=[0, 3], cache=False, template_cache=tmp_path / "t",
                            progress=False, **TINY)
    assert torch.equal(fresh.data.x, a.data.x)
    assert (len(a.log) > 0) == (method != "vanilla")
    row = a.cost()
    assert row["method"] == method and row["s_per_image"] == pytest.approx(a.wall_s / 4, abs=1e-3)


def test_vanilla_equals_plain_sampler(tmp_path):
    from dsco import backbones
    s = surrogates.make("vanilla", 1, seed=2, classes=[5], cache_dir=tmp_path, progress=False, num_steps=3)
    z, _ = backbones.sample(surrogates.backbone_for("digits"), [5], 1, seed=2, num_steps=3, progress=False)
    assert torch.equal(s.data.x, z.clamp(-1, 1))


def test_options_change_the_key(tmp_path):
    a = surrogates.make("dsco", 1, classes=[0], cache_dir=tmp_path, progress=False, **TINY)
    b = surrogates.make("dsco", 1, classes=[0], cache_dir=tmp_path, progress=False, lambda_align=5e-2, **TINY)
    assert not b.cached and len(list(tmp_path.glob("*.pt"))) == 2


def test_bad_input(tmp_path):
    with pytest.raises(surrogates.SurrogateError, match="use one of"):
        surrogates.make("dm", 1, cache_dir=tmp_path)
    with pytest.raises(surrogates.SurrogateError, match="ipc must be"):
        surrogates.make("dsco", 0, cache_dir=tmp_path)
    with pytest.raises(surrogates.SurrogateError, match="unknown NOpt option"):
        surrogates.make("dsco", 1, cache_dir=tmp_path, iterationz=3)
    with pytest.raises(surrogates.SurrogateError, match="backbone="):
        surrogates.backbone_for("imagenette")
    assert not list(tmp_path.glob("*"))


def test_defaults_passed_explicitly_name_the_same_set(tmp_path):
    a = surrogates.make("dsco", 1, classes=[0], cache_dir=tmp_path, progress=False, **TINY)
    b = surrogates.make("dsco", 1, classes=[0], cache_dir=tmp_path, progress=False, lambda_align=5e-4,
                        guidance=4.0, batch_size=64, **TINY)
    assert b.cached and torch.equal(a.data.x, b.data.x)


def test_profile_presets_are_nopt_options():
    from dsco import nopt
    for preset in (surrogates.PAPER_PROFILE, surrogates.SWEEP_PROFILE, surrogates.FAST_PROFILE):
        assert set(preset) <= set(nopt.synthesize.__kwdefaults__)
    assert surrogates.SWEEP_PROFILE["iterations"] < surrogates.PAPER_PROFILE["iterations"] < nopt.DEFAULTS["iterations"]
    # the cheap preset does less work than the paper's setting and makes up with a larger alignment weight
    fast = {**nopt.DEFAULTS, **surrogates.FAST_PROFILE}
    assert fast["iterations"] < nopt.DEFAULTS["iterations"] and fast["diffusion_repeats"] <= nopt.DEFAULTS["diffusion_repeats"]
    assert fast["lambda_align"] > nopt.DEFAULTS["lambda_align"]
