"""Tests for dsco.bench_reports: a ``dsco bench`` report as a table, and the recorded reports read
back and labelled (tiny settings: they check the report, never the timings)."""

import json

from dsco import bench, bench_reports


def test_a_report_prints_and_old_reports_are_labelled(tmp_path):
    report = bench.run(
        "digits-ddpm",
        classes=2,
        ipc=1,
        iterations=1,
        num_steps=2,
        phases=("vanilla", "accessible"),
        n_templates=2,
        flops=True,
    )
    text = bench_reports.table(report)
    assert "vanilla" in text and "TFLOP/s" in text
    for n, name in ((100, "old.json"), (1300, "full.json")):
        report["settings"]["real_latents"] = f"{n} standard-normal stand-in latents per class"
        (tmp_path / name).write_text(json.dumps(report))
    rows = bench_reports.recorded(tmp_path).set_index(["file", "phase"])["scale"]
    assert rows[("old.json", "accessible")] == "under-states (stand-ins)"
    assert rows[("old.json", "vanilla")] == rows[("full.json", "accessible")] == "full"
