"""Tests for dsco.bench and ``dsco bench`` (tiny settings: they check the report, never the timings)."""
import json

import pytest
import torch

from dsco import backbones, bench, cli

TINY = dict(classes=2, ipc=1, iterations=2, num_steps=2, n_templates=2)


def test_run_digits_reports_every_phase(tmp_path):
    out = tmp_path / "bench.json"
    report = bench.run("digits-ddpm", **TINY, n_real=4, out=out, flops=True)
    rows = {r["phase"]: r for r in report["rows"]}
    assert list(rows) == ["vanilla", "vanilla_batched", "accessible", "free_prep", "free"]
    for r in rows.values():
        assert r["wall_s"] > 0 and r["peak_mem_mb"] > 0 and r["s_per_image"] == pytest.approx(r["wall_s"] / 2)
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
    assert "vanilla" in bench.table(report)


def test_vanilla_batched_follows_the_noise_contract():
    bb = backbones.load("digits-ddpm", random_weights=True, config=backbones.TINY_UNET, num_steps=3)
    ref, _ = backbones.sample(bb, [1, 4], 2, seed=3, num_steps=3, progress=False)
    z = bench._vanilla_batched(bb, [1, 4], 2, 3, 4.0, 3, 256, None)
    assert torch.allclose(z, ref, atol=1e-5)


def test_run_tiny_random_dit_and_reference_engine():
    report = bench.run("dit-xl-2-256", **TINY, random_weights=True, config=backbones.TINY_DIT,
                       vae_config=backbones.TINY_VAE, phases=("vanilla", "accessible"), engine="reference")
    rows = {r["phase"]: r for r in report["rows"]}
    assert set(rows) == {"vanilla", "accessible"} and rows["accessible"]["engine"] == "reference"
    assert report["settings"]["random_weights"] and "stand-in" in report["settings"]["real_latents"]
    assert report["forward"] is None  # counted on CUDA only unless flops=True


def test_peak_table_and_errors():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert bench.peak_tflops("NVIDIA H100 PCIe", "bf16") == pytest.approx(756.5)
    assert bench.peak_tflops("NVIDIA H200", "tf32") == pytest.approx(494.7)
    assert bench.peak_tflops("Tesla T4", "bf16") is None
    with pytest.raises(ValueError, match="phases"):
        bench.run(phases=("warp",))
    with pytest.raises(ValueError, match="engine"):
        bench.run(engine="turbo")


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = cli.main(["bench", "--random-weights", "--tiny", "--classes", "2", "--ipc", "1", "--iterations", "2",
                   "--steps", "2", "--phases", "vanilla", "accessible", "--out", str(out)])
    assert rc == 0 and json.loads(out.read_text())["settings"]["tiny_config"]
    assert "accessible" in capsys.readouterr().out
    assert cli.main(["bench", "--tiny"]) == 2  # --tiny needs --random-weights
