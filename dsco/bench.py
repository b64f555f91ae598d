"""Cost benchmark of DsCo's synthesis (paper Table 12, Fig. 4): vanilla sampling against NOpt.

:func:`run` times, in one process and one run each, for a backbone, ``K`` classes and an IPC:

``vanilla``
    plain ancestral sampling, class by class (:func:`dsco.backbones.sample`, the paper's DiT†);
``vanilla_batched``
    the same noise contract with all classes in one backbone batch per step (the fair baseline for
    the batched NOpt engine on a GPU; equal to ``vanilla`` up to float rounding);
``accessible``, ``free``
    NOpt (:func:`dsco.nopt.synthesize`) with the chosen ``engine``; for the data-free mode the
    template statistics (200 plain samples per class, §4.1.4) are timed separately as
    ``free_prep`` (a one-off preparation, cached afterwards) from the generation ``free``.

Each phase reports wall time, time per image, peak memory (CUDA: ``torch.cuda.max_memory_allocated``
after ``reset_peak_memory_stats``; CPU: the peak resident set ``VmHWM`` of this process, reset
through ``/proc/self/clear_refs`` before the phase — Linux only, else the process-lifetime
``ru_maxrss``), and for NOpt the inner-loop class-iterations per second and the NOpt ÷ vanilla
ratio. The environment records device name, torch version and threads, the backbone dtype and the
TF32 switches. On CUDA (and on CPU, without a peak) the backbone forward of one NOpt step is timed
alone and its FLOPs counted with :class:`torch.utils.flop_counter.FlopCounterMode`, giving the
achieved FLOP/s against the device's dense peak (:data:`PEAK_TFLOPS`, NVIDIA's datasheets, or
``peak_tflops=``).

``backbone="dit-xl-2-256", random_weights=True`` builds DiT-XL/2 and the SD-VAE at their real sizes
with random weights (:func:`dsco.backbones.load`), so timings are real where no checkpoint can be
downloaded; its "real latents" are then seeded standard-normal stand-ins (timing depends on shapes
only). The VAE decode is not timed (it is the same for every method).

Command line: ``dsco bench --backbone digits-ddpm --classes 10 --ipc 10 --out bench.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import pandas as pd
import torch

from . import backbones, diffusion, nopt

PHASES = ("vanilla", "vanilla_batched", "accessible", "free")

#: Dense (no sparsity) peak tensor throughput in TFLOP/s by GPU and precision, from NVIDIA's
#: H100/H200 datasheets (H100 SXM5 and H200 SXM: BF16 989.4, TF32 494.7, FP32 66.9; H100 PCIe:
#: BF16 756.5, TF32 378, FP32 51.2). Matched by a substring of ``torch.cuda.get_device_name()``.
PEAK_TFLOPS = {
    "H100 PCIe": {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
}
PEAK_SOURCE = "NVIDIA H100/H200 Tensor Core GPU datasheets, dense (without sparsity)"


# --- measuring ----------------------------------------------------------------------------------
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


def _timed(fn, device):
    """Run ``fn()`` once; returns (result, wall seconds, peak MB, memory kind)."""
    kind = _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start, _peak_mb(device, kind), kind


def _precision(dtype) -> str:
    """The precision name of a backbone dtype as :func:`dsco.diffusion.as_dtype` returns it
    (None: fp32/TF32)."""
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    return names.get(dtype) or ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32")


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak TFLOP/s of a GPU named ``device_name`` at ``precision`` (:data:`PEAK_TFLOPS`),
    or None."""
    for key, table in PEAK_TFLOPS.items():  # "H100 PCIe" is listed before the generic "H100"
        if key in device_name:
            return table.get(precision)
    return None


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
        _, wall, _, _ = _timed(step, device)
        times.append(wall)
    best = min(times)
    return {
        "forward_batch": n,
        "forward_flops": flops,
        "forward_s": best,
        "forward_tflops_per_s": flops / best / 1e12 if best > 0 else None,
    }


# --- the phases ----------------------------------------------------------------------------------
def _vanilla_batched(bb, classes, ipc, seed, guidance, num_steps, batch_size, backbone_dtype):
    """Vanilla sampling with the noise contract of :func:`dsco.backbones.sample`, all classes per
    forward."""
    bb.set_steps(num_steps)
    gens = [backbones.class_generator(seed, c) for c in classes]
    shape = (ipc, *bb.latent_shape)
    z = torch.cat([torch.randn(shape, generator=g) for g in gens]).to(bb.device)
    y = torch.tensor(classes, device=bb.device).repeat_interleave(ipc)
    steps = bb.timesteps
    for i, t in enumerate(steps):
        mu, sigma = diffusion.backbone_step(bb, z, t, y, guidance, batch_size, backbone_dtype)
        noise = torch.cat([torch.randn(shape, generator=g) for g in gens]).to(bb.device)
        z = mu if i == len(steps) - 1 else mu + sigma * noise
    return z.cpu()


#: Stand-in real latents per class where there is no data (random-weights DiT): the full-scale class
#: size, since NOpt's accessible-mode alignment targets grow with it (ImageNet-1k's classes hold up
#: to 1,300 training images, ImageNette's about 950). Reports recorded with 100 stand-ins (before
#: Dec. 2026) under-state the full-scale cost of that mode; :func:`recorded` says so.
STAND_IN_CLASS_SIZE = 1300


def _real_latents(bb, dataset, classes, n_real, seed):
    """Real latents per class from ``dataset``'s training split (the first ``n_real`` images,
    encoded by the backbone) keyed by the backbone's class, or seeded standard-normal stand-ins
    where there is no data (random-weights DiT)."""
    if dataset is not None:
        from .encoded import encode_class

        train = dataset.train()
        out = {}
        for c in classes:
            idx = train.class_indices(c)[:n_real] if n_real else train.class_indices(c)
            sub = train.subset(idx)
            out[dataset.class_ids[c]] = encode_class(
                sub, c, bb.encode, progress=False, encoder_id=nopt.fingerprint(bb)
            )
        return out, f"{dataset.name} training images"
    g = torch.Generator().manual_seed(seed)
    m = n_real or STAND_IN_CLASS_SIZE
    return (
        {c: torch.randn((m, *bb.latent_shape), generator=g) for c in classes},
        f"{m} standard-normal stand-in latents per class (timing depends on shapes only)",
    )


def run(
    backbone: str = "digits-ddpm",
    classes: int = 10,
    ipc: int = 10,
    iterations: int = 200,
    num_steps: int = 50,
    guidance: float = 4.0,
    device: str = "cpu",
    *,
    phases=PHASES,
    engine: str = "batched",
    compile: bool = False,
    backbone_dtype=None,
    random_weights: bool = False,
    config: dict | None = None,
    vae_config: dict | None = None,
    path=None,
    n_real: int | None = None,
    n_templates: int = 200,
    seed: int = 0,
    threads: int | None = None,
    peak: float | None = None,
    batch_size: int | None = 256,
    flops: bool | None = None,
    dataset=None,
    out=None,
    progress: bool = False,
    verbose: bool = False,
) -> dict:
    """Time vanilla sampling and NOpt for one backbone and return the report as a dict.

    Args:
        backbone: a :data:`dsco.backbones.BACKBONES` name (``path``, ``random_weights``, ``config``
            and ``vae_config`` go to :func:`dsco.backbones.load`, e.g. ``config=dit.TINY_DIT``),
            or a loaded backbone (e.g. ``ds.backbone(device)``).
        dataset: a :class:`dsco.datasets.Dataset` whose training split gives the real latents
            and whose backbone classes are conditioned on (default: the digits registry entry for
            ``digits-ddpm``, stand-in latents otherwise).
        classes: the first ``classes`` classes; ipc, iterations, num_steps, guidance: as in
            :func:`dsco.nopt.synthesize` (paper: 10, 200, 50, 4.0).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        phases: any of :data:`PHASES` (``free`` adds its ``free_prep`` row).
        engine, compile, backbone_dtype: NOpt's engine (``"batched"`` / ``"reference"``), the
            compiled inner loop and the backbone forward's autocast dtype (None = fp32).
        n_real: real latents per class for the accessible mode (default: all training images of
            the class; :data:`STAND_IN_CLASS_SIZE` stand-ins without a dataset). n_templates:
            data-free templates per class (200).
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        peak: the device's peak TFLOP/s for the FLOP/s ratio (default: :func:`peak_tflops`).
        flops: time and count one backbone forward (default: on CUDA only).
        out: write the report as JSON there. verbose: print the table.

    Returns:
        ``{"settings", "environment", "rows", "ratios", "forward"}``: ``rows`` has one dict per
        phase with ``phase, wall_s, s_per_image, peak_mem_mb, mem_kind`` and for NOpt
        ``class_iterations, class_iterations_per_s, nopt_over_vanilla``.
    """
    bad = sorted(set(phases) - set(PHASES))
    if bad:
        raise ValueError(f"unknown phases {bad}: use any of {', '.join(PHASES)}")
    if engine not in nopt.ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(nopt.ENGINES)}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available: use --device cpu")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _run(
            backbone=backbone,
            k=int(classes),
            ipc=int(ipc),
            iterations=int(iterations),
            num_steps=int(num_steps),
            guidance=float(guidance),
            device=device,
            phases=list(phases),
            engine=engine,
            compile=compile,
            backbone_dtype=backbone_dtype,
            random_weights=random_weights,
            config=config,
            vae_config=vae_config,
            path=path,
            n_real=n_real,
            n_templates=int(n_templates),
            seed=int(seed),
            peak=peak,
            batch_size=batch_size,
            flops=flops,
            dataset=dataset,
            out=out,
            progress=progress,
            verbose=verbose,
        )
    finally:
        torch.set_num_threads(before)


def _run(
    *,
    backbone,
    k,
    ipc,
    iterations,
    num_steps,
    guidance,
    device,
    phases,
    engine,
    compile,
    backbone_dtype,
    random_weights,
    config,
    vae_config,
    path,
    n_real,
    n_templates,
    seed,
    peak,
    batch_size,
    flops,
    dataset,
    out,
    progress,
    verbose,
):
    """The body of :func:`run` (threads set, arguments checked and converted): ``k`` classes, every
    other argument as there, keyword-only."""
    opts = {"device": device, "num_steps": num_steps}
    if random_weights:
        opts.update(random_weights=True, config=config, seed=seed)
        if backbone == "dit-xl-2-256":
            opts["vae_config"] = vae_config
    elif config is not None or vae_config is not None:
        raise ValueError("config/vae_config only apply with random_weights=True")
    start = time.perf_counter()
    if isinstance(backbone, str):
        if dataset is None and backbone == "digits-ddpm" and not random_weights:
            from .datasets import get

            dataset = get("digits", "paper")
        bb = backbones.load(backbone, path, **opts)
    else:
        bb = backbone.to(device)
        bb.set_steps(num_steps)
        backbone = bb.name
    load_s = time.perf_counter() - start
    classes = dataset.class_ids[:k] if dataset is not None else list(range(k))
    n_images = k * ipc
    cuda = torch.device(device).type == "cuda"
    dtype = diffusion.as_dtype(backbone_dtype)
    common = dict(
        guidance=guidance,
        num_steps=num_steps,
        iterations=iterations,
        engine=engine,
        compile=compile,
        backbone_dtype=dtype,
        batch_size=batch_size,
        progress=progress,
        projector=getattr(dataset, "projector", None),
    )  # the dataset's preset, if any
    rows = []

    def add(phase, wall, peak_mb, kind, **extra):
        rows.append(
            {
                "phase": phase,
                "wall_s": wall,
                "s_per_image": wall / n_images,
                "peak_mem_mb": peak_mb,
                "mem_kind": kind,
                **extra,
            }
        )

    def nopt_row(phase, log, wall, peak_mb, kind):
        its = int(log["iterations"].sum()) if len(log) else 0
        add(
            phase,
            wall,
            peak_mb,
            kind,
            engine=log.attrs.get("engine", engine),
            compile=compile,
            class_iterations=its,
            class_iterations_per_s=its / wall if wall > 0 else None,
            iterations_saved=log.attrs.get("iterations_saved", 0),
        )

    real_note = None
    if "vanilla" in phases:
        _, wall, pk, kind = _timed(
            lambda: backbones.sample(
                bb,
                classes,
                ipc,
                seed,
                guidance,
                num_steps,
                batch_size=batch_size,
                progress=progress,
            ),
            device,
        )
        add("vanilla", wall, pk, kind)
    if "vanilla_batched" in phases:
        _, wall, pk, kind = _timed(
            lambda: _vanilla_batched(
                bb, classes, ipc, seed, guidance, num_steps, batch_size, dtype
            ),
            device,
        )
        add("vanilla_batched", wall, pk, kind)
    if "accessible" in phases:
        with torch.no_grad():
            real, real_note = _real_latents(bb, dataset, list(range(k)), n_real, seed)
        (_, _, log), wall, pk, kind = _timed(
            lambda: nopt.synthesize(
                bb, classes, ipc, "accessible", seed, real_latents=real, **common
            ),
            device,
        )
        nopt_row("accessible", log, wall, pk, kind)
    if "free" in phases:

        def prepare():
            for c in classes:
                nopt.template_stats(
                    bb,
                    c,
                    seed,
                    guidance=guidance,
                    num_steps=num_steps,
                    n_templates=n_templates,
                    batch_size=batch_size,
                    projector=common["projector"],
                )

        _, wall, pk, kind = _timed(prepare, device)
        add("free_prep", wall, pk, kind, n_templates=n_templates)
        (_, _, log), wall, pk, kind = _timed(
            lambda: nopt.synthesize(
                bb, classes, ipc, "free", seed, n_templates=n_templates, **common
            ),
            device,
        )
        nopt_row("free", log, wall, pk, kind)

    base = {r["phase"]: r["wall_s"] for r in rows if r["phase"].startswith("vanilla")}
    for r in rows:
        if r["phase"] in ("accessible", "free"):
            for name, wall in base.items():
                r[f"nopt_over_{name}"] = r["wall_s"] / wall if wall > 0 else None

    device_name = (
        torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    )
    forward = None
    if flops if flops is not None else cuda:
        forward = forward_flops(bb, ipc, k, guidance, dtype)
        precision = _precision(dtype)
        ref = peak if peak is not None else (peak_tflops(device_name, precision) if cuda else None)
        forward.update(
            precision=precision,
            peak_tflops=ref,
            peak_source=("given (peak=)" if peak is not None else PEAK_SOURCE if ref else None),
            mfu=(forward["forward_tflops_per_s"] / ref)
            if ref and forward["forward_tflops_per_s"]
            else None,
        )

    env = {
        "device": str(device),
        "device_name": device_name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "backbone_dtype": str(dtype or torch.float32),
        "nopt_dtype": "torch.float32",
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_avg": _load_avg(),
    }
    settings = {
        "backbone": backbone,
        "dataset": dataset.name if dataset is not None else None,
        "random_weights": bool(random_weights),
        "classes": k,
        "ipc": ipc,
        "iterations": iterations,
        "num_steps": num_steps,
        "guidance": guidance,
        "engine": engine,
        "compile": compile,
        "n_templates": n_templates,
        "seed": seed,
        "batch_size": batch_size,
        "real_latents": real_note,
        "tiny_config": config is not None,
        "load_s": load_s,
    }
    report = {"settings": settings, "environment": env, "rows": rows, "forward": forward}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if verbose:
        print(table(report))
    return report


#: What :func:`make_alone` runs in its fresh interpreter (the arguments come as JSON in argv[1]).
_ALONE = """
import json, sys
import torch
from dsco import datasets, surrogates
a = json.loads(sys.argv[1])
if a["threads"]:
    torch.set_num_threads(a["threads"])
ds = datasets.get(a["dataset"], a["profile"], **a["params"])
surrogates.make(a["method"], a["ipc"], a["seed"], dataset=ds, device=a["device"],
                cache_dir=a["cache_dir"], progress=False, **a["options"])
"""


def make_alone(
    ds,
    method: str,
    ipc: int,
    seed: int,
    *,
    cache_dir,
    device: str = "cpu",
    threads: int | None = None,
    **options,
):
    """:func:`dsco.surrogates.make` of one set in a fresh Python process, so that the set's cost
    -- above all its peak memory, which on the CPU is the process's peak resident set since it
    started (``ru_maxrss``) -- is that of this one run and inherits no earlier run's peak (what
    ``dsco bench`` gets by running each benchmark in its own process). The child builds the set
    into ``cache_dir`` (a folder of its own per setting compared: the cache key leaves out how a
    set is computed, e.g. the NOpt ``engine``) and this process reads it back from there, with the
    child's cost (``Surrogate.cost()``). A set already in ``cache_dir`` is read back with the cost
    of the fresh process that made it. On the CPU the peak includes the interpreter, torch, the
    data and the backbone, the same for every setting. ``ds``: a :class:`dsco.datasets.Dataset`
    (rebuilt in the child from its name, profile and parameters); ``options`` go to ``make``."""
    import subprocess
    import sys

    from . import ROOT, surrogates

    args = dict(
        dataset=ds.name,
        profile=ds.profile,
        params=ds.params,
        method=method,
        ipc=int(ipc),
        seed=int(seed),
        device=device,
        threads=threads,
        cache_dir=str(cache_dir),
        options=options,
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    )
    done = subprocess.run(
        [sys.executable, "-c", _ALONE, json.dumps(args, default=str)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(
            f"making {method} IPC {ipc} seed {seed} in a fresh process failed "
            f"(exit {done.returncode}):\n{done.stderr[-2000:]}"
        )
    return surrogates.make(
        method, ipc, seed, dataset=ds, device=device, cache_dir=cache_dir, progress=False, **options
    )


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


def _load_avg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


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
