"""Timing, peak memory and achieved FLOP/s on a device (what :mod:`dsco.bench` measures with).

:func:`timed` runs a function once and returns its wall time and peak memory (CUDA:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; CPU: the peak resident set
``VmHWM`` of this process, reset through ``/proc/self/clear_refs`` before the call — Linux only,
else the process-lifetime ``ru_maxrss``). :func:`forward_flops` counts the FLOPs of one guided
backbone forward with :class:`torch.utils.flop_counter.FlopCounterMode` and times it, giving the
achieved FLOP/s; :func:`peak_tflops` is the device's dense peak to compare it with
(:data:`PEAK_TFLOPS`, NVIDIA's datasheets) at the backbone's :func:`precision`.
:func:`device_name` and :func:`load_avg` describe the machine a measurement ran on.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

import torch

from . import diffusion

#: Dense (no sparsity) peak tensor throughput in TFLOP/s by GPU and precision, from NVIDIA's
#: H100/H200 datasheets (H100 SXM5 and H200 SXM: BF16 989.4, TF32 494.7, FP32 66.9; H100 PCIe:
#: BF16 756.5, TF32 378, FP32 51.2). Matched by a substring of ``torch.cuda.get_device_name()``.
PEAK_TFLOPS = {
    "H100 PCIe": {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
}
PEAK_SOURCE = "NVIDIA H100/H200 Tensor Core GPU datasheets, dense (without sparsity)"


def timed(fn, device):
    """Run ``fn()`` once; returns (result, wall seconds, peak MB, memory kind)."""
    kind = _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start, _peak_mb(device, kind), kind


def forward_flops(
    backbone, ipc: int, classes: int, guidance: float, backbone_dtype=None, repeats: int = 3
) -> dict:
    """FLOPs (FlopCounterMode: matmuls and convolutions, 2 per multiply-add) and time of ONE guided
    backbone forward over ``classes · ipc`` latents (what one batched NOpt step runs), best of
    ``repeats``."""
    from torch.utils.flop_counter import FlopCounterMode

    device = backbone.device
    n = classes * ipc
    z = torch.randn((n, *backbone.latent_shape), generator=torch.Generator().manual_seed(0)).to(
        device
    )
    y = torch.arange(n, device=device) % backbone.num_classes
    t = int(backbone.timesteps[0])

    def step():
        return diffusion.backbone_step(backbone, z, t, y, guidance, None, backbone_dtype)

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    times = []
    for _ in range(repeats):
        _, wall, _, _ = timed(step, device)
        times.append(wall)
    best = min(times)
    return {
        "forward_batch": n,
        "forward_flops": flops,
        "forward_s": best,
        "forward_tflops_per_s": flops / best / 1e12 if best > 0 else None,
    }


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak TFLOP/s of a GPU named ``device_name`` at ``precision`` (:data:`PEAK_TFLOPS`),
    or None."""
    for key, table in PEAK_TFLOPS.items():  # "H100 PCIe" is listed before the generic "H100"
        if key in device_name:
            return table.get(precision)
    return None


def precision(dtype) -> str:
    """The precision name of a backbone dtype as :func:`dsco.diffusion.as_dtype` returns it
    (None: fp32/TF32)."""
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    return names.get(dtype) or ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32")


def device_name(device) -> str:
    """The name of ``device``: the GPU's (``torch.cuda.get_device_name``), else the processor's."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def load_avg():
    """The machine's load averages over 1, 5 and 15 minutes (rounded to 0.01), or None."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> str:
    """Reset the peak-memory counter; returns how the peak will be measured."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak RSS (VmHWM) of this process
        return "cpu_rss_peak"
    except OSError:
        return "cpu_rss_peak_process_lifetime"


def _peak_mb(device, kind: str) -> float:
    if kind == "cuda_max_allocated":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if kind == "cpu_rss_peak":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
