"""Tests for dsco.datasets: get()'s errors, the paper's columns, the per-profile
budgets, and Dataset.check() on the offline fixture (dsco.fixtures) with every bad input it must
refuse."""

import csv
import shutil

import pytest

from dsco import backbones, data, datasets, dit, folders, models, registry, teacher, training
from dsco.checkpoints import CheckpointError
from dsco.datasets import DatasetError


def one_line_error(exc_info, *fragments):
    """The error is one line and names each fragment (the fix)."""
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def test_get_resolves_and_drops_empty_params():
    ds = datasets.get("imagenette", "paper", root=None, backbone_path="", image_size="64")
    assert ds.params == {"image_size": 64} and ds.image_size == 64 and ds.image_shape == (3, 64, 64)
    assert (
        ds.budget is registry.REGISTRY["imagenette"].budgets["paper"] and ds.ipcs is ds.budget.ipcs
    )
    assert datasets.get("imagewoof").image_size == 256  # the default without -p image_size
    d = datasets.get("digits")
    assert (d.profile, d.image_shape, d.gray, d.num_classes) == ("smoke", (1, 8, 8), True, 10)
    assert "digits" in repr(d) and "smoke" in repr(d)


@pytest.mark.parametrize(
    "args,kwargs,fragments",
    [
        (
            ("cifar10",),
            {},
            [
                "unknown dataset 'cifar10'",
                "digits, mnist, folder, imagenette, imagewoof, imagenet1k",
            ],
        ),
        (("digits", "fast"), {}, ["unknown profile 'fast'", "smoke, paper"]),
        (
            ("imagenette",),
            {"rooot": "/x"},
            ["unknown dataset parameter(s) ['rooot']", "root, backbone_path"],
        ),
        (("digits",), {"image_size": 16}, ["fixed image size (8 px)", "drop -p image_size"]),
        (("imagenette",), {"image_size": "big"}, ["image_size='big'", "integer >= 8"]),
        (("imagenette",), {"image_size": 4}, ["image_size=4", "integer >= 8"]),
    ],
)
def test_get_errors_name_the_fix(args, kwargs, fragments):
    with pytest.raises(DatasetError) as e:
        datasets.get(*args, **kwargs)
    one_line_error(e, *fragments)
    assert issubclass(DatasetError, ValueError) and data.DatasetError is DatasetError


def test_ipc_map_by_rank_and_by_scale():
    smoke, paper = datasets.get("digits", "smoke"), datasets.get("digits", "paper")
    assert smoke.ipc_map("low") == {1: 10, 2: 50}  # by rank: our k-th column is the paper's k-th
    assert paper.ipc_map("low") == {1: 10, 5: 50, 10: 100}
    assert paper.ipc_map("high") == {
        20: 200,
        40: 400,
        70: 700,
        100: 1000,
    }  # × 10 (fraction of a class)
    assert paper.ipc_map("high", [3]) == {3: 30}
    assert paper.ipc_map("cross") == {10: 10}
    nette = datasets.get("imagenette", "paper")
    assert nette.ipc_map("high", [200, 700]) == {200: 200, 700: 700}  # the paper's own IPCs
    assert nette.ipc_map("low") == {10: 10, 50: 50, 100: 100}


def test_paper_tables():
    assert datasets.get("digits").paper_tables("low") == {"ImageNette": 1, "ImageWoof": 2}
    assert datasets.get("digits").paper_tables("high") == {"ImageNette": 3, "ImageWoof": 4}
    assert datasets.get("imagewoof").paper_tables("low") == {"ImageWoof": 2}
    assert datasets.get("imagenette").paper_tables("high") == {"ImageNette": 3}
    assert datasets.get("imagenet1k").paper_tables("lossless") == {"ImageNet-1k": 6}


def test_class_ids_are_the_imagenet_indices_of_the_pinned_classes():
    with open(folders.CLASS_DIR / "imagenette.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    nette = datasets.get("imagenette")
    assert (
        nette.class_ids
        == [int(r["imagenet_index"]) for r in rows]
        == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    )
    assert nette.classes == [r["name"] for r in rows] and nette.num_classes == 10
    assert datasets.get("digits").class_ids == list(range(10))  # the shipped DDPM: the label itself
    woof = datasets.get("imagewoof")
    assert woof.class_ids[:2] == [193, 182] and woof.classes[0] == "Australian terrier"


def test_show_classes(tmp_path):
    from dsco import fixtures

    assert datasets.get("digits").show_classes == [1, 7]
    assert datasets.get("imagenette").show_classes == [4, 9]  # church and parachute, as Fig. 5-7
    assert datasets.get("imagewoof").show_classes == [0, 1]
    # ImageNet-1k's figure classes (497, 701) lie outside the smoke profile's first 10 classes
    fixtures.imagenet_tree(tmp_path, "imagenette", train=1, val=1)
    ds = datasets.get("imagenet1k", "smoke", root=str(tmp_path))
    assert ds.num_classes == 10 and ds.show_classes == [0, 1]
    assert ds.class_ids == list(range(10))  # imagenet1k: labels are the sorted wnids' ranks


def test_smoke_profile_keeps_the_first_classes(tmp_path):
    from dsco import fixtures

    fixtures.imagenet_tree(tmp_path, "imagenette", train=2, val=1)
    fixtures.imagenet_tree(tmp_path, "imagewoof", train=2, val=1)  # 20 wnid folders in one root
    smoke = datasets.get("imagenet1k", "smoke", root=str(tmp_path), image_size=8)
    train = smoke.train()
    assert (
        len(train.classes) == 10
        and len(train.wnids) == 10
        and int(train.y.max()) == 9
        and len(train) == 20
    )
    assert train.wnids == sorted(p.name for p in (tmp_path / "train").iterdir())[:10]
    assert smoke.train() is train and smoke.test() is smoke.test()  # loaded once
    assert isinstance(smoke.test(), data.ImageSet) and smoke.test().x.shape == (10, 3, 8, 8)
    paper = datasets.get("imagenet1k", "paper", root=str(tmp_path), image_size=8)
    assert len(paper.train().classes) == 20 and len(paper.train()) == 40


def test_describe_arch_kwargs_protocol_and_key():
    text = datasets.get("digits", "paper").describe()
    assert "shipped `digits-ddpm`" in text and "Profile **paper**" in text and "ImageNette" in text
    nette = datasets.get("imagenette", "smoke", backbone_path="/m/dit", teacher_path="/m/t")
    text = nette.describe()
    assert "`dit-xl-2-256` from `/m/dit`" in text and "timm resnet18 from `/m/t`" in text
    assert "Profile **smoke**" in text and "3×256×256" in text
    assert "trained by notebook 00" in datasets.get("imagenette", "paper").describe()
    # the sizes in the prose come from the budget, beside the paper's where they differ
    assert (
        "1 replicate per cell (each its own set and training) (paper 5)"
        in datasets.get("digits", "smoke").describe()
    )
    mnist = datasets.get("mnist", "paper")
    assert mnist.budget.settings().endswith("5 replicates per cell (each its own set and training)")
    assert mnist.budget.settings() in mnist.describe()
    assert "1 diffusion per real latent (paper 5)" in mnist.budget.settings()
    paper = datasets.get("digits", "paper")
    assert (
        paper.arch_kwargs("convnet") == {"width": 32} and paper.arch_kwargs("efficientnet_b0") == {}
    )
    assert datasets.get("digits").arch_kwargs("timm_resnet18") == {
        "channels": (8, 16, 32, 64),
        "stem_width": 8,
    }
    p = paper.protocol("soft", epochs=3)
    assert (p.name, p.profile, p.epochs) == ("soft", "paper", 3)
    assert datasets.get("imagenette", "paper").protocol().profile == "full"
    assert datasets.get("digits").protocol().profile == "smoke"
    a, b = (datasets.get("imagenette", root="/data/a") for _ in range(2))
    assert a.key() == b.key() != datasets.get("imagenette", root="/data/b").key()
    assert a.key() != datasets.get("imagenette", "paper", root="/data/a").key()


def test_nopt_defaults_carry_their_reason():
    d = datasets.get("digits")
    assert d.nopt_defaults == {"lambda_stats": 1.0}
    assert "MMD" in d.entry.nopt_defaults["lambda_stats"][1]
    assert datasets.get("imagenette").nopt_defaults == {}  # the paper's own settings


def test_the_registry_decides_the_horizontal_flip(tmp_path):
    """ds.protocol() carries the entry's flip; resolve() takes it (no dataset name decides)."""
    from dsco import fixtures

    flips = {n: datasets.get(n).protocol().flip for n in ("digits", "mnist", "imagenette")}
    assert (
        flips
        == {n: registry.REGISTRY[n].flip for n in flips}
        == {"digits": False, "mnist": False, "imagenette": True}
    )  # today's numbers
    assert datasets.get("digits").protocol("soft", flip=True).flip is True  # explicit wins
    sgd = training.get_protocol("sgd", flip=False)
    assert datasets.get("imagenette").protocol(sgd).flip is False
    grey = datasets.get("folder", root=str(fixtures.folder_tree(tmp_path / "t", mode="L")))
    p = training.resolve(grey.protocol(), grey.name, grey.channels)
    assert grey.channels == 1 and p.flip is True and p.color is False  # registered with flips
    with pytest.raises(training.EvaluateError, match=r"ds\.protocol\('hard'\)"):
        training.resolve(training.get_protocol("hard"), "folder", 1)


def test_validation_and_models_live_in_their_modules(nette_params, monkeypatch, tmp_path):
    from dsco import validation

    ds = datasets.get("imagenette", **nette_params)
    assert validation.check(ds) is ds and ds.check() is ds
    monkeypatch.setattr(models, "BUILD_MODELS", tmp_path / "models")
    assert (
        ds.teacher_file()
        == models.teacher_file(ds)
        == tmp_path / "models" / "imagenette" / (f"teacher-smoke-{ds.key()}")
    )
    assert models.digest("imagenette") == models.digest("imagenette")
    before = models.digest("imagenette")
    (tmp_path / "models" / "imagenette").mkdir(parents=True)
    (tmp_path / "models" / "imagenette" / "weights.safetensors").write_bytes(b"x")
    assert models.digest("imagenette") != before  # a trained model file changes the digest


def test_digits_loads_shipped_models_once():
    ds = datasets.get("digits")
    assert ds.train() is ds.train() and len(ds.train()) == 1347 and len(ds.test()) == 450
    bb = ds.backbone()
    assert bb is ds.backbone() and bb.name == "digits-ddpm" and bb.image_factor == 1
    clf = ds.teacher()
    assert clf is ds.teacher() and teacher.accuracy(clf, ds.test()) >= 0.97
    ds.check()  # nothing to check for the embedded dataset


# --- check() on the offline fixture
# ------------------------------------------------------------------


def test_check_passes_on_the_fixture_and_loads(nette_params, nette_ds):
    assert nette_ds.check() is nette_ds
    assert nette_ds.image_size == nette_params["image_size"] == 8
    bb = nette_ds.backbone()
    assert bb.num_classes == 1000 and bb.latent_shape == (4, 4, 4) and bb.image_factor == 2
    clf = nette_ds.teacher()
    assert isinstance(clf, teacher.TimmTeacher) and clf.num_classes == 10
    assert len(nette_ds.train()) == 100 and nette_ds.test().x.shape == (40, 3, 8, 8)


def test_check_needs_root_and_backbone_path(nette_params):
    no_root = {k: v for k, v in nette_params.items() if k != "root"}
    with pytest.raises(DatasetError) as e:
        datasets.get("imagenette", **no_root).check()
    one_line_error(e, "needs -p root", "train/<wnid>/")
    no_bb = {k: v for k, v in nette_params.items() if k != "backbone_path"}
    with pytest.raises(DatasetError) as e:
        datasets.get("imagenette", **no_bb).check()
    one_line_error(e, "needs -p backbone_path", "DiT-XL/2")
    with pytest.raises(DatasetError, match="needs -p backbone_path"):
        datasets.get("imagenette", **no_bb).backbone()


def test_check_root_missing_wnids_lists_them(nette_params, tmp_path):
    root = tmp_path / "nette"
    shutil.copytree(nette_params["root"], root)
    gone = [r["wnid"] for r in folders.class_table("imagenette")[3:5]]
    for w in gone:
        shutil.rmtree(root / "train" / w)
    with pytest.raises(DatasetError) as e:
        datasets.get("imagenette", **{**nette_params, "root": str(root)}).check()
    one_line_error(e, "2 class folder(s) missing", *gone, "fix root=")
    with pytest.raises(DatasetError) as e:
        datasets.get("imagenette", **{**nette_params, "root": str(tmp_path / "nowhere")}).check()
    one_line_error(e, "no folder", "pass root=")


def test_check_backbone_with_wrong_class_count(nette_params, tmp_path):
    bb = backbones.load(
        "dit-xl-2-256", random_weights=True, config=dit.TINY_DIT, vae_config=dit.TINY_VAE
    )
    assert bb.num_classes == 10  # TINY_DIT: num_embeds_ada_norm=10
    bb.model.save_pretrained(tmp_path / "dit10")
    ds = datasets.get("imagenette", **{**nette_params, "backbone_path": str(tmp_path / "dit10")})
    with pytest.raises(DatasetError) as e:
        ds.check()
    one_line_error(
        e,
        "has 10 classes but imagenette needs 1000",
        "ImageNet-1k class indices",
        "pass a backbone trained for this dataset",
    )
    with pytest.raises(DatasetError, match="has 10 classes"):
        ds.backbone()  # the loaded model is checked the same way


def test_check_latent_and_image_size_mismatch(nette_params):
    ds = datasets.get("imagenette", **{**nette_params, "image_size": 16})
    with pytest.raises(DatasetError) as e:
        ds.check()
    one_line_error(e, "latent 4×4×4 decodes to 8 px", "image_size 16", "pass -p image_size 8")


def test_check_vae_with_other_latent_channels(nette_params, tmp_path):
    from diffusers import AutoencoderKL

    AutoencoderKL(**dict(dit.SD_VAE, **dit.TINY_VAE, latent_channels=8)).save_pretrained(
        tmp_path / "vae8"
    )
    with pytest.raises(DatasetError) as e:
        datasets.get("imagenette", **{**nette_params, "vae_path": str(tmp_path / "vae8")}).check()
    one_line_error(e, "8 latent channels but the DiT expects 4", "-p vae_path")


def test_check_backbone_path_without_a_model(nette_params, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError) as e:
        datasets.get(
            "imagenette", **{**nette_params, "backbone_path": str(tmp_path / "empty")}
        ).check()
    one_line_error(e, "no DiTTransformer2DModel config", "pass -p backbone_path")


def test_check_teacher_with_wrong_class_count(nette_params, tmp_path):
    import timm
    from timm.models import save_for_hf

    five = timm.create_model(
        "resnet18", pretrained=False, num_classes=5, channels=(8, 16, 32, 64), stem_width=8
    )
    save_for_hf(five, str(tmp_path / "t5"), safe_serialization=True)
    ds = datasets.get("imagenette", **{**nette_params, "teacher_path": str(tmp_path / "t5")})
    with pytest.raises(DatasetError) as e:
        ds.check()
    one_line_error(e, "has 5 classes but imagenette has 10", "leave teacher_path out")
    with pytest.raises(CheckpointError) as e:
        ds.teacher()
    one_line_error(e, "has 5 classes, the dataset 10")
    with pytest.raises(CheckpointError) as e:
        datasets.get(
            "imagenette", **{**nette_params, "teacher_path": str(tmp_path / "none.pth")}
        ).check()
    one_line_error(e, "no teacher checkpoint", "-p teacher_path")


def test_teacher_without_path_or_trained_teacher_names_notebook_00(
    nette_params, tmp_path, monkeypatch
):
    monkeypatch.setattr(models, "BUILD_MODELS", tmp_path / "models")
    ds = datasets.get(
        "imagenette", **{k: v for k, v in nette_params.items() if k != "teacher_path"}
    )
    ds.check()  # no teacher_path: notebook 00 trains one, nothing to check
    assert ds.teacher_file().parent == tmp_path / "models" / "imagenette"
    assert ds.teacher_file().name == f"teacher-smoke-{ds.key()}"
    with pytest.raises(DatasetError) as e:
        ds.teacher()
    one_line_error(
        e,
        "no teacher for imagenette",
        "-p teacher_path",
        "run notebook 00 first",
        "--only 00",
        str(ds.teacher_file()),
    )


def test_a_folder_dataset_reads_its_shape_and_classes_from_the_images(tmp_path, monkeypatch):
    from dsco import fixtures

    monkeypatch.setattr(models, "BUILD_MODELS", tmp_path / "models")
    root = fixtures.folder_tree(tmp_path / "t", classes=4, per_class=12, size=10, mode="RGB")
    ds = datasets.get("folder", "smoke", root=str(root)).check()
    assert (
        ds.image_shape == (3, 10, 10)
        and ds.channels == 3
        and ds.classes == [f"class_{c}" for c in range(4)]
    )
    assert (
        ds.class_ids == [0, 1, 2, 3]
        and ds.show_classes == [0, 1]
        and "trained by notebook 00" in ds.describe()
    )
    assert str(ds.model_prefix()).startswith(str(tmp_path / "models" / "folder"))
    with pytest.raises(
        datasets.DatasetError, match="no trained ddpm for folder .*run notebook 00 first"
    ):
        ds.backbone()
    with pytest.raises(datasets.DatasetError, match="fixed image size \\(read from its images\\)"):
        datasets.get("folder", "smoke", root=str(root), image_size=32)


def test_mnist_is_an_embedded_latent_dataset():
    ds = datasets.get("mnist", "paper")
    assert (
        ds.image_shape == (1, 28, 28)
        and ds.budget.replicates == 5
        and ds.archs["low"] == ["convnet"]
    )
    assert ds.max_ipc() <= int(ds.train().counts().min()) and ds.ipc_map("high") == {
        70: 210,
        130: 390,
        230: 690,
        330: 990,
    }


def test_budget_reads_a_profile_without_resolving_the_dataset():
    assert datasets.budget("digits", "paper").replicates == 5
    assert datasets.budget("mnist") is registry.REGISTRY["mnist"].budgets["smoke"]
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        datasets.budget("cifar")
    with pytest.raises(DatasetError, match="unknown profile 'fast'"):
        datasets.budget("digits", "fast")
