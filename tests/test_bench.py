"""Tests for dsco.bench and ``dsco bench`` (tiny settings: they check the report, never the
timings)."""

import json

import pytest
import rounding
import torch

from dsco import backbones, bench, bench_reports, cli, digits_ddpm, dit

TINY = dict(classes=2, ipc=1, iterations=2, num_steps=2, n_templates=2)


def test_run_digits_reports_every_phase(tmp_path):
    out = tmp_path / "bench.json"
    report = bench.run("digits-ddpm", **TINY, n_real=4, out=out, flops=True)
    rows = {r["phase"]: r for r in report["rows"]}
    assert list(rows) == ["vanilla", "vanilla_batched", "accessible", "free_prep", "free"]
    for r in rows.values():
        assert (
            r["wall_s"] > 0
            and r["peak_mem_mb"] > 0
            and r["s_per_image"] == pytest.approx(r["wall_s"] / 2)
        )
    for mode in ("accessible", "free"):
        r = rows[mode]
        assert r["class_iterations"] == 2 * 1 * 2  # classes × (steps − 1) × iterations
        assert r["nopt_over_vanilla"] == pytest.approx(r["wall_s"] / rows["vanilla"]["wall_s"])
        assert r["engine"] == "batched"
    env = report["environment"]
    assert env["device"] == "cpu" and env["nopt_dtype"] == "torch.float32" and "tf32_matmul" in env
    f = report["forward"]
    assert f["forward_batch"] == 2 and f["forward_flops"] > 0 and f["peak_tflops"] is None
    assert json.loads(out.read_text())["settings"]["classes"] == 2


def test_vanilla_batched_follows_the_noise_contract():
    """All classes in one forward against class by class: other batch shapes, so equal up to float
    rounding (tests/rounding.py): the tiny random UNet takes latents to |z| ~ 500, its
    float32-vs-float64 error is 3.9e-4 (tolerance 1.9e-2), another seed moves the result by ~600."""
    bb = backbones.load(
        "digits-ddpm", random_weights=True, config=digits_ddpm.TINY_UNET, num_steps=3
    )
    ref, _ = backbones.sample(bb, [1, 4], 2, seed=3, num_steps=3, progress=False)
    z = bench._vanilla_batched(bb, [1, 4], 2, 3, 4.0, 3, 256, None)
    ref64, _ = backbones.sample(
        rounding.float64_backbone(bb), [1, 4], 2, seed=3, num_steps=3, progress=False
    )
    tol = rounding.tolerance(ref, ref64)
    rounding.assert_within(z, ref, tol, "one batch of all classes")
    rounding.assert_distinct(
        bench._vanilla_batched(bb, [1, 4], 2, 4, 4.0, 3, 256, None), ref, tol, "another seed"
    )
    swapped = bench._vanilla_batched(
        bb, [4, 1], 2, 3, 4.0, 3, 256, None
    )  # each class keeps its own noise
    rounding.assert_within(
        swapped, torch.cat([ref[2:], ref[:2]]), tol, "classes in the other order"
    )


def test_run_with_a_loaded_backbone_and_a_dataset(nette_ds, tmp_path, monkeypatch):
    from dsco import encoded

    monkeypatch.setattr(
        encoded, "CACHE_DIR", tmp_path / "latents"
    )  # the real latents' cache: not build/
    bb = nette_ds.backbone()
    report = bench.run(bb, dataset=nette_ds, **TINY, n_real=3, phases=("vanilla", "accessible"))
    s = report["settings"]
    assert (
        s["backbone"] == "dit-xl-2-256" and s["dataset"] == "imagenette" and not s["random_weights"]
    )
    assert s["real_latents"] == "imagenette training images" and s["classes"] == 2
    rows = {r["phase"]: r for r in report["rows"]}
    assert (
        set(rows) == {"vanilla", "accessible"}
        and rows["accessible"]["class_iterations"] == 2 * 1 * 2
    )
    assert (
        len(list((tmp_path / "latents").glob("*.safetensors"))) == 2
    )  # the first 3 images of 2 classes
    # the backbone is conditioned on the dataset's ImageNet classes: bench's real latents are keyed
    # by them
    real, note = bench._real_latents(bb, nette_ds, [0, 1], 3, 0)
    assert sorted(real) == nette_ds.class_ids[:2] == [0, 217] and real[217].shape == (3, 4, 4, 4)
    with pytest.raises(ValueError, match="only apply with random_weights"):
        bench.run(bb, dataset=nette_ds, config=dit.TINY_DIT)


def test_run_tiny_random_dit_and_reference_engine():
    report = bench.run(
        "dit-xl-2-256",
        **TINY,
        random_weights=True,
        config=dit.TINY_DIT,
        vae_config=dit.TINY_VAE,
        phases=("vanilla", "accessible"),
        engine="reference",
        n_real=20,
    )
    rows = {r["phase"]: r for r in report["rows"]}
    assert set(rows) == {"vanilla", "accessible"} and rows["accessible"]["engine"] == "reference"
    assert report["settings"]["random_weights"]
    assert report["settings"]["real_latents"].startswith("20 standard-normal stand-in")
    assert report["forward"] is None  # counted on CUDA only unless flops=True


def test_stand_ins_default_to_the_full_scale_class_size():
    class Shape:
        latent_shape = (4, 4, 4)

    real, note = bench._real_latents(Shape(), None, [0, 1], None, seed=0)
    assert (
        [len(v) for v in real.values()] == [bench_reports.STAND_IN_CLASS_SIZE] * 2 == [1300, 1300]
    )
    assert note.startswith("1300 standard-normal")


def test_bad_phases_and_engines():
    with pytest.raises(ValueError, match="phases"):
        bench.run(phases=("warp",))
    with pytest.raises(ValueError, match="engine"):
        bench.run(engine="turbo")


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = cli.main(
        [
            "bench",
            "--random-weights",
            "--tiny",
            "--classes",
            "2",
            "--ipc",
            "1",
            "--iterations",
            "2",
            "--steps",
            "2",
            "--phases",
            "vanilla",
            "accessible",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and json.loads(out.read_text())["settings"]["tiny_config"]
    assert "accessible" in capsys.readouterr().out
    assert cli.main(["bench", "--tiny"]) == 2  # --tiny needs --random-weights


def test_cli_benches_a_registry_dataset_on_its_own_backbone(nette_params, tmp_path, capsys):
    from dsco import cli

    out = tmp_path / "nette.json"
    argv = [
        "bench",
        "--dataset",
        "imagenette",
        "--classes",
        "2",
        "--ipc",
        "2",
        "--iterations",
        "2",
        "--steps",
        "3",
        "--phases",
        "vanilla",
        "accessible",
        "--out",
        str(out),
    ]
    argv += [a for k, v in nette_params.items() for a in ("-p", k, str(v))]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert (
        report["settings"]["dataset"] == "imagenette"
        and report["settings"]["real_latents"] == "imagenette training images"
    )
    assert (
        cli.main(["bench", "-p", "root", "/x"]) == 2 and "add --dataset" in capsys.readouterr().err
    )
