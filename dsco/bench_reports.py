"""The reports of ``dsco bench`` (:func:`dsco.bench.run`): one printed as a table, the recorded ones
read back.

:func:`recorded` lines up every report recorded in ``data/bench/`` (one row per phase) and labels
the accessible-mode rows timed with fewer stand-in real latents than the full-scale class size
(:data:`STAND_IN_CLASS_SIZE`, the benchmark's default) as under-stating that mode's cost;
:func:`table` prints one report: its phases, settings, environment and the backbone forward's
achieved FLOP/s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

#: Stand-in real latents per class where there is no data (random-weights DiT): the full-scale class
#: size, since NOpt's accessible-mode alignment targets grow with it (ImageNet-1k's classes hold up
#: to 1,300 training images, ImageNette's about 950). Reports recorded with 100 stand-ins (before
#: Dec. 2026) under-state the full-scale cost of that mode; :func:`recorded` says so.
STAND_IN_CLASS_SIZE = 1300


def recorded(folder=None) -> pd.DataFrame:
    """Every benchmark report recorded in ``folder`` (default ``data/bench/``), one row per phase:
    file, device, date, backbone, engine, iterations, threads, dtype, phase, wall seconds, seconds
    per image, peak memory, NOpt ÷ vanilla and ``real_per_class``: the real latents per class
    NOpt's accessible mode aligned to, and ``scale``: "under-states (stand-ins)" on the accessible
    row of a report timed with fewer stand-ins than :data:`STAND_IN_CLASS_SIZE`, else "full"."""
    from . import ROOT

    rows = []
    for path in sorted(Path(folder or ROOT / "data" / "bench").glob("*.json")):
        rep = json.loads(path.read_text())
        if "rows" not in rep:  # another benchmark's record (e.g. dsco concentrate's scale-out)
            continue
        s, e = rep["settings"], rep["environment"]
        real = str(s.get("real_latents", ""))
        stand_in = real.split(" ")[0]
        per_class = int(stand_in) if stand_in.isdigit() else None
        small = bool(per_class and per_class < STAND_IN_CLASS_SIZE)
        rows += [
            {
                "file": path.name,
                "device": e["device_name"],
                "date": e["date"][:10],
                "backbone": s["backbone"],
                "engine": s["engine"],
                "iterations": s["iterations"],
                "threads": e.get("threads"),
                "dtype": e["backbone_dtype"],
                "phase": r["phase"],
                "wall_s": r["wall_s"],
                "s_per_image": r["s_per_image"],
                "peak_mem_mb": r["peak_mem_mb"],
                "nopt_over_vanilla": r.get("nopt_over_vanilla"),
                "real_per_class": per_class or real,
                "scale": "under-states (stand-ins)"
                if small and r["phase"] == "accessible"
                else "full",
            }
            for r in rep["rows"]
        ]
    return pd.DataFrame(rows)


def table(report: dict) -> str:
    """The report as a printable text table (one row per phase) plus the settings and
    environment."""
    df = pd.DataFrame(report["rows"]).set_index("phase")
    cols = [
        c
        for c in (
            "wall_s",
            "s_per_image",
            "peak_mem_mb",
            "class_iterations_per_s",
            "nopt_over_vanilla",
            "nopt_over_vanilla_batched",
            "iterations_saved",
        )
        if c in df.columns
    ]
    s, e = report["settings"], report["environment"]
    lines = [
        f"dsco bench: {s['backbone']}{' (random weights)' if s['random_weights'] else ''}, "
        f"{s['classes']} classes × IPC {s['ipc']}, {s['num_steps']} steps, {s['iterations']} "
        f"iterations, engine {s['engine']}{' (compiled)' if s['compile'] else ''}",
        f"device {e['device']} ({e['device_name']}), torch {e['torch']}, {e['threads']} threads, "
        f"backbone {e['backbone_dtype']}, NOpt {e['nopt_dtype']}, TF32 matmul {e['tf32_matmul']}",
        df[cols].to_string(float_format=lambda v: f"{v:.4g}"),
    ]
    f = report.get("forward")
    if f:
        lines.append(
            f"backbone forward ({f['forward_batch']} latents, guided): "
            + f"{f['forward_flops'] / 1e9:.4g} GFLOP in {f['forward_s'] * 1e3:.4g} ms = "
            + f"{f['forward_tflops_per_s']:.4g} TFLOP/s"
            + (
                f" = {100 * f['mfu']:.3g} % of {f['peak_tflops']} TFLOP/s {f['precision']} peak "
                f"({f['peak_source']})"
                if f.get("mfu")
                else ""
            )
        )
    return "\n".join(lines)
