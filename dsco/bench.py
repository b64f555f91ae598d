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
achieved FLOP/s against the device's dense peak (:data:`dsco.devices.PEAK_TFLOPS`, NVIDIA's
datasheets, or ``peak=``); the measuring lives in :mod:`dsco.devices`. The report prints as a
table and is read back from ``data/bench/`` by :mod:`dsco.bench_reports`.

``backbone="dit-xl-2-256", random_weights=True`` builds DiT-XL/2 and the SD-VAE at their real sizes
with random weights (:func:`dsco.backbones.load`), so timings are real where no checkpoint can be
downloaded; its "real latents" are then seeded standard-normal stand-ins (timing depends on shapes
only). The VAE decode is not timed (it is the same for every method).

Command line: ``dsco bench --backbone digits-ddpm --classes 10 --ipc 10 --out bench.json``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from . import backbones, bench_reports, devices, diffusion, nopt

PHASES = ("vanilla", "vanilla_batched", "accessible", "free")


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
            the class; :data:`dsco.bench_reports.STAND_IN_CLASS_SIZE` stand-ins without a
            dataset). n_templates: data-free templates per class (200).
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        peak: the device's peak TFLOP/s for the FLOP/s ratio (default:
            :func:`dsco.devices.peak_tflops`).
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
    bb, backbone, dataset, load_s = _load(
        backbone, dataset, device, num_steps, random_weights, config, vae_config, path, seed
    )
    classes = dataset.class_ids[:k] if dataset is not None else list(range(k))
    cuda = torch.device(device).type == "cuda"
    dtype = diffusion.as_dtype(backbone_dtype)
    rows, real_note = _time_phases(
        bb,
        dataset,
        classes,
        phases,
        k=k,
        ipc=ipc,
        iterations=iterations,
        num_steps=num_steps,
        guidance=guidance,
        device=device,
        engine=engine,
        compile=compile,
        dtype=dtype,
        n_real=n_real,
        n_templates=n_templates,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    base = {r["phase"]: r["wall_s"] for r in rows if r["phase"].startswith("vanilla")}
    for r in rows:
        if r["phase"] in ("accessible", "free"):
            for name, wall in base.items():
                r[f"nopt_over_{name}"] = r["wall_s"] / wall if wall > 0 else None

    device_name = devices.device_name(device)
    forward = None
    if flops if flops is not None else cuda:
        forward = _forward(bb, ipc, k, guidance, dtype, device_name, peak, cuda)

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
        "load_avg": devices.load_avg(),
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
        print(bench_reports.table(report))
    return report


def _load(backbone, dataset, device, num_steps, random_weights, config, vae_config, path, seed):
    """The backbone to time, loaded (or moved to ``device``), with its name, the dataset (the
    digits registry entry for ``digits-ddpm`` when none is given) and the seconds that took."""
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
    return bb, backbone, dataset, time.perf_counter() - start


def _time_phases(
    bb,
    dataset,
    classes,
    phases,
    *,
    k,
    ipc,
    iterations,
    num_steps,
    guidance,
    device,
    engine,
    compile,
    dtype,
    n_real,
    n_templates,
    seed,
    batch_size,
    progress,
):
    """Time each of ``phases`` once on the loaded backbone ``bb``: ``(rows, real_note)``, one row
    per phase (``free`` adds its ``free_prep`` row) and what the accessible mode's real latents were
    (None without that phase)."""
    n_images = k * ipc
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
        _, wall, pk, kind = devices.timed(
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
        _, wall, pk, kind = devices.timed(
            lambda: _vanilla_batched(
                bb, classes, ipc, seed, guidance, num_steps, batch_size, dtype
            ),
            device,
        )
        add("vanilla_batched", wall, pk, kind)
    if "accessible" in phases:
        with torch.no_grad():
            real, real_note = _real_latents(bb, dataset, list(range(k)), n_real, seed)
        (_, _, log), wall, pk, kind = devices.timed(
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

        _, wall, pk, kind = devices.timed(prepare, device)
        add("free_prep", wall, pk, kind, n_templates=n_templates)
        (_, _, log), wall, pk, kind = devices.timed(
            lambda: nopt.synthesize(
                bb, classes, ipc, "free", seed, n_templates=n_templates, **common
            ),
            device,
        )
        nopt_row("free", log, wall, pk, kind)
    return rows, real_note


def _forward(bb, ipc, k, guidance, dtype, device_name, peak, cuda):
    """The FLOPs and time of one batched NOpt step's backbone forward
    (:func:`dsco.devices.forward_flops`) with the precision, the peak it is compared with (``peak``,
    else the device's datasheet peak on CUDA) and the achieved fraction of it (``mfu``)."""
    forward = devices.forward_flops(bb, ipc, k, guidance, dtype)
    precision = devices.precision(dtype)
    ref = (
        peak
        if peak is not None
        else (devices.peak_tflops(device_name, precision) if cuda else None)
    )
    forward.update(
        precision=precision,
        peak_tflops=ref,
        peak_source=("given (peak=)" if peak is not None else devices.PEAK_SOURCE if ref else None),
        mfu=(forward["forward_tflops_per_s"] / ref)
        if ref and forward["forward_tflops_per_s"]
        else None,
    )
    return forward


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
    m = n_real or bench_reports.STAND_IN_CLASS_SIZE
    return (
        {c: torch.randn((m, *bb.latent_shape), generator=g) for c in classes},
        f"{m} standard-normal stand-in latents per class (timing depends on shapes only)",
    )
