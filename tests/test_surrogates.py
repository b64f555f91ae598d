"""Tests for dsco.surrogates: the four surrogate sets, their cache and cost, and the dataset's class
mapping."""

import pytest
import torch

from dsco import backbones, data, datasets, encoded, nopt, registry, surrogates
from dsco.data import load

TINY = dict(num_steps=3, iterations=2, n_templates=4)


def test_random_is_seeded_class_balanced_subset_of_real(tmp_path):
    s = surrogates.make("random", 2, seed=3, cache_dir=tmp_path)
    train = load("digits", "train")
    assert torch.equal(s.data.x, train.sample_per_class(2, 3).x)
    assert s.data.counts().tolist() == [2] * 10 and s.method == "random" and not s.cached


@pytest.mark.parametrize("method", ["vanilla", "dsco", "dfdsco"])
def test_synthetic_methods_are_deterministic_and_cached(tmp_path, method):
    a = surrogates.make(
        method,
        2,
        seed=1,
        classes=[0, 3],
        cache_dir=tmp_path,
        template_cache=tmp_path / "t",
        progress=False,
        **TINY,
    )
    assert a.data.x.shape == (4, 1, 8, 8) and a.data.y.tolist() == [0, 0, 3, 3]
    assert a.data.x.abs().max() <= 1 and a.wall_s > 0 and a.peak_mem_mb > 0
    b = surrogates.make(
        method,
        2,
        seed=1,
        classes=[0, 3],
        cache_dir=tmp_path,
        template_cache=tmp_path / "t",
        progress=False,
        **TINY,
    )
    assert b.cached and torch.equal(a.data.x, b.data.x) and b.wall_s == a.wall_s
    fresh = surrogates.make(
        method,
        2,
        seed=1,
        classes=[0, 3],
        cache=False,
        template_cache=tmp_path / "t",
        progress=False,
        **TINY,
    )
    assert torch.equal(fresh.data.x, a.data.x)
    assert (len(a.log) > 0) == (method != "vanilla")
    row = a.cost()
    assert row["method"] == method and row["s_per_image"] == pytest.approx(a.wall_s / 4, abs=1e-3)


def test_vanilla_equals_plain_sampler(tmp_path):
    ds = datasets.get("digits", "smoke")
    s = surrogates.make(
        "vanilla",
        1,
        seed=2,
        dataset=ds,
        classes=[5],
        cache_dir=tmp_path,
        progress=False,
        num_steps=3,
    )
    z, _ = backbones.sample(ds.backbone(), [5], 1, seed=2, num_steps=3, progress=False)
    assert torch.equal(s.latents, z) and torch.equal(
        s.data.x, z.clamp(-1, 1)
    )  # the same computation


def test_options_change_the_key(tmp_path):
    surrogates.make("dsco", 1, classes=[0], cache_dir=tmp_path, progress=False, **TINY)
    b = surrogates.make(
        "dsco", 1, classes=[0], cache_dir=tmp_path, progress=False, lambda_align=5e-2, **TINY
    )
    assert not b.cached and len(list(tmp_path.glob("*.pt"))) == 2


def test_bad_input(tmp_path):
    with pytest.raises(surrogates.SurrogateError, match="use one of"):
        surrogates.make("dm", 1, cache_dir=tmp_path)
    with pytest.raises(surrogates.SurrogateError, match="ipc must be"):
        surrogates.make("dsco", 0, cache_dir=tmp_path)
    with pytest.raises(surrogates.SurrogateError, match="unknown NOpt option"):
        surrogates.make("dsco", 1, cache_dir=tmp_path, iterationz=3)
    with pytest.raises(datasets.DatasetError, match="unknown dataset 'cifar10'"):
        surrogates.make("dsco", 1, dataset="cifar10", cache_dir=tmp_path)
    with pytest.raises(
        datasets.DatasetError, match="needs root="
    ):  # no data for an ImageNet dataset
        surrogates.make("vanilla", 1, dataset="imagenette", cache_dir=tmp_path)
    assert not list(tmp_path.glob("*"))


def test_imagenet_dataset_without_backbone_path_names_the_fix(tmp_path):
    from dsco import fixtures

    root = fixtures.imagenet_tree(tmp_path / "nette", train=1, val=1)
    ds = datasets.get("imagenette", "smoke", root=str(root), image_size=8)
    with pytest.raises(datasets.DatasetError, match="needs -p backbone_path"):
        surrogates.make("vanilla", 1, dataset=ds, cache_dir=tmp_path / "c")
    assert surrogates.make("random", 1, dataset=ds, cache_dir=tmp_path / "c").data.x.shape == (
        10,
        3,
        8,
        8,
    )


def test_defaults_passed_explicitly_name_the_same_set(tmp_path):
    a = surrogates.make("dsco", 1, classes=[0], cache_dir=tmp_path, progress=False, **TINY)
    b = surrogates.make(
        "dsco",
        1,
        classes=[0],
        cache_dir=tmp_path,
        progress=False,
        lambda_align=5e-4,
        guidance=4.0,
        batch_size=64,
        **TINY,
    )
    assert b.cached and torch.equal(a.data.x, b.data.x)


def test_profile_presets_are_nopt_options():
    # the paper and sweep budgets moved to the dataset registry (dsco.registry budgets)
    for entry in registry.REGISTRY.values():
        for budget in entry.budgets.values():
            assert set(budget.nopt) | set(budget.sweep_nopt) <= set(nopt.synthesize.__kwdefaults__)
    paper = registry.REGISTRY["digits"].budgets["paper"]
    assert paper.sweep_nopt["iterations"] < paper.nopt["iterations"] < nopt.DEFAULTS["iterations"]
    assert set(surrogates.FAST_PROFILE) <= set(nopt.synthesize.__kwdefaults__)
    # the cheap preset does less work than the paper's setting and makes up with a larger alignment
    # weight
    fast = {**nopt.DEFAULTS, **surrogates.FAST_PROFILE}
    assert (
        fast["iterations"] < nopt.DEFAULTS["iterations"]
        and fast["diffusion_repeats"] <= nopt.DEFAULTS["diffusion_repeats"]
    )
    assert fast["lambda_align"] > nopt.DEFAULTS["lambda_align"]


def test_make_all_cost_table_and_latents(tmp_path):
    ds = datasets.get("digits", "smoke")
    kw = dict(dataset=ds, classes=[0, 1], cache_dir=tmp_path, progress=False, num_steps=3)
    made = surrogates.make_all({"vanilla": "DiT†", "random": "Random"}, [1, 2], seed=4, **kw)
    assert list(made) == [("DiT†", 1, 0), ("DiT†", 2, 0), ("Random", 1, 0), ("Random", 2, 0)]
    for (label, ipc, r), s in made.items():
        assert s.ipc == ipc and s.seed == 4 and s.data.y.tolist() == [0] * ipc + [1] * ipc
    v = made[("DiT†", 2, 0)]
    assert v.latents.shape == (4, 1, 8, 8) and v.latents.dtype == torch.float32
    assert torch.equal(v.data.x, v.latents.clamp(-1, 1))  # digits decode is the identity
    assert made[("Random", 2, 0)].latents is None  # nothing synthesised
    table = surrogates.cost_table(made, label="method")
    assert list(table.columns) == [
        "method",
        "ipc",
        "seed",
        "wall_s",
        "s_per_image",
        "peak_mem_mb",
        "device",
        "cached",
    ]
    assert table["method"].tolist() == [
        "DiT†",
        "DiT†",
        "Random",
        "Random",
    ]  # the label, not cost()'s method name
    assert table["ipc"].tolist() == [1, 2, 1, 2] and not table["cached"].any()
    assert table["s_per_image"].tolist() == pytest.approx(
        (table["wall_s"] / (2 * table["ipc"])).tolist(), abs=0.005
    )
    again = surrogates.make_all(["vanilla"], [2], seed=4, **kw)
    s = again[("vanilla", 2, 0)]
    assert (
        s.cached and torch.equal(s.latents, v.latents) and s.wall_s == v.wall_s
    )  # read back, with its cost
    t2 = surrogates.cost_table({"DiT† (cached)": s, ("DiT†", 2): v})
    assert t2["set"].tolist() == ["DiT† (cached)", "DiT†"] and t2["cached"].tolist() == [
        True,
        False,
    ]


def test_make_all_replicate_r_is_made_from_seed_plus_r(tmp_path):
    """The replicate design: every replicate draws its own random subset and its own noise."""
    ds = datasets.get("digits", "smoke")
    kw = dict(dataset=ds, classes=[0, 1], cache_dir=tmp_path, progress=False, num_steps=3)
    made = surrogates.make_all(["random", "vanilla"], [2], seed=4, replicates=3, **kw)
    assert sorted(made) == [(m, 2, r) for m in ("random", "vanilla") for r in range(3)]
    for (m, _, r), s in made.items():
        assert s.seed == 4 + r
        assert torch.equal(s.data.x, surrogates.make(m, 2, 4 + r, **kw).data.x)  # the same set
    for m in ("random", "vanilla"):
        assert not torch.equal(made[(m, 2, 0)].data.x, made[(m, 2, 1)].data.x)
    with pytest.raises(surrogates.SurrogateError, match="replicates=0"):
        surrogates.make_all(["random"], [1], replicates=0, **kw)


@pytest.fixture
def latent_cache(tmp_path, monkeypatch):
    """Real latents of a folder dataset are cached by dsco.encoded: keep them out of build/."""
    monkeypatch.setattr(encoded, "CACHE_DIR", tmp_path / "latents")
    return tmp_path / "latents"


def test_imagenette_labels_are_the_datasets_while_dit_sees_imagenet_classes(
    nette_ds, tmp_path, latent_cache
):
    ds = nette_ds
    bb = ds.backbone()
    assert ds.class_ids[1] == 217  # ImageNette's English springer is DiT's class 217
    kw = dict(dataset=ds, seed=3, cache_dir=tmp_path / "sets", progress=False, num_steps=3)
    v = surrogates.make("vanilla", 1, classes=[0, 1], **kw)
    assert (
        v.data.y.tolist() == [0, 1]
        and v.data.classes == ds.classes
        and v.data.x.shape == (2, 3, 8, 8)
    )
    z, _ = backbones.sample(
        bb, [ds.class_ids[0], ds.class_ids[1]], 1, seed=3, num_steps=3, progress=False
    )
    assert torch.equal(
        v.latents, z
    )  # the same computation: conditioned on ImageNet indices 0 and 217
    assert torch.equal(v.data.x, bb.decode(z).clamp(-1, 1))
    wrong, _ = backbones.sample(
        bb, [1], 1, seed=3, num_steps=3, progress=False
    )  # label 1 taken as DiT class 1
    assert (wrong - z[1:]).abs().max() > 1e-2
    full = surrogates.make_all(
        ["vanilla", "dsco"], [1], **{**kw, "iterations": 2, "n_templates": 2}
    )
    for s in full.values():
        assert s.data.y.tolist() == list(range(10)) and s.latents.shape == (10, 4, 4, 4)
    dsco_set = full[("dsco", 1, 0)]
    assert sorted(dsco_set.log["class"].unique().tolist()) == list(
        range(10)
    )  # the log speaks in labels too
    assert (
        len(list(latent_cache.glob("*.safetensors"))) == 10
    )  # each class's real latents encoded once
    assert not torch.equal(dsco_set.latents, full[("vanilla", 1, 0)].latents)  # NOpt moved them


def test_nopt_options_put_the_datasets_defaults_under_the_users_and_resolve_every_option():
    ds = datasets.get("digits", "smoke")
    opts, resolved = surrogates.nopt_options(ds, "dsco", {"iterations": 7})
    assert opts == {**ds.nopt_defaults, "iterations": 7}
    assert (
        resolved["iterations"] == 7
        and set(resolved) == set(nopt.synthesize.__kwdefaults__) - surrogates.NOT_IN_KEY
    )
    assert all(resolved[k] == v for k, v in ds.nopt_defaults.items())
    assert surrogates.nopt_options(ds, "random", {"iterations": 7}) == ({}, None)
    with pytest.raises(surrogates.SurrogateError, match=r"unknown NOpt option\(s\) \['progress'\]"):
        surrogates.nopt_options(ds, "random", {"progress": False})


# --- what the cache key says about the real data ------------------------------------------------


def test_the_embedded_datasets_keep_their_real_key():
    """digits' and mnist's cached sets keep their keys: their own split is named, not hashed."""
    for name, n in (("digits", 1347), ("mnist", 4000)):
        ds = datasets.get(name, "smoke")
        assert surrogates.real_key(ds, ds.train()) == [name, "train", n]
        assert surrogates.real_key(ds, datasets.get(name, "smoke").train()) == [name, "train", n]
    ds = datasets.get("digits", "smoke")
    other = data.ImageSet(
        ds.train().x.flip(-1), ds.train().y, list(ds.train().classes), "digits", "train"
    )  # the same name, split and size, other images
    assert surrogates.real_key(ds, other)[:3] == ["digits", "train", 1347]
    assert surrogates.real_key(ds, other) != surrogates.real_key(ds, ds.train())


def test_a_random_set_from_a_folder_tree_is_keyed_by_the_trees_content(tmp_path):
    import os

    from dsco import fixtures

    trees = [fixtures.folder_tree(tmp_path / f"tree{s}", seed=s) for s in (0, 1)]  # equal sizes
    a, b = (datasets.get("folder", "smoke", root=str(t)) for t in trees)
    first = surrogates.make("random", 2, dataset=a, cache_dir=tmp_path / "c")
    assert surrogates.make("random", 2, dataset=a, cache_dir=tmp_path / "c").cached
    other = surrogates.make("random", 2, dataset=b, cache_dir=tmp_path / "c")
    assert not other.cached and not torch.equal(other.data.x, first.data.x)
    changed = trees[0] / "class_1" / "3.png"  # rewritten in place: a new modification time
    changed.write_bytes(changed.read_bytes())
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    again = datasets.get("folder", "smoke", root=str(trees[0]))
    assert not surrogates.make("random", 2, dataset=again, cache_dir=tmp_path / "c").cached


def test_the_folder_registry_entry_passes_its_projector_to_nopt(tmp_path):
    from dsco import fixtures

    ds = datasets.get("folder", "smoke", root=str(fixtures.folder_tree(tmp_path / "t")))
    opts, resolved = surrogates.nopt_options(ds, "dsco", {})
    assert opts == {"projector": "latent"} and resolved["projector"] == "latent"
    assert surrogates.nopt_options(ds, "dsco", {"projector": "digits"})[0]["projector"] == "digits"
    digits = datasets.get("digits")  # digits keeps NOpt's default (its key is unchanged)
    assert surrogates.nopt_options(digits, "dsco", {})[1]["projector"] is None


def test_make_alone_builds_the_set_in_a_fresh_process_and_reads_it_back(tmp_path):
    ds = datasets.get("digits", "smoke")
    s = surrogates.make_alone(ds, "random", 1, 3, cache_dir=tmp_path, threads=1)
    assert s.cached and len(list(tmp_path.glob("*.pt"))) == 1  # made by the child, read back
    assert s.peak_mem_mb > 0 and s.wall_s >= 0 and len(s.data) == ds.num_classes
    here = surrogates.make("random", 1, 3, dataset=ds, cache=False, progress=False)
    assert torch.equal(s.data.x, here.data.x)  # the same set as made here
    with pytest.raises(RuntimeError, match="fresh process failed"):
        surrogates.make_alone(ds, "nope", 1, 0, cache_dir=tmp_path)
