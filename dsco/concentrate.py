"""Make a concentrated dataset: a method's surrogate set at IPC k (optionally doped up to a larger
IPC) written to disk as an ImageFolder tree with a manifest -- in one process, or sharded over
processes, GPUs or nodes with ``torchrun``; resumable; guarded against diverging optimisations.

Entry point: ``run(dataset, method, ipc, out, *, dope_to=None, ...) -> Path`` (``dsco
concentrate``).

What it writes (the layout of :func:`dsco.export.export`, readable by ``dsco.export.read_export``
and ``torchvision.datasets.ImageFolder``)::

    out/<NN_class>/<NNNN>.png           the synthetic images of every class
    out/<NN_class>/real-<index>.png     with --dope-to: the doped real training images
    out/manifest.json                   method, every resolved option, seeds, package versions, git
                                        commit, SHA-256 of every file, cost per class (written last)
    out/.dsco/run.json                  while running: the arguments that define the result (a
                                        rerun must match them; once complete the manifest holds
                                        them as "run")
    out/.dsco/classes/<label>.json      while running: one per finished class, its files, hashes and
    cost

**Classes one at a time.** Every class is synthesised on its own (``dsco.surrogates.make`` with
``classes=[c]``): its noise comes from its own generators (the noise contract of ``dsco.nopt``) and
its computation never shares a batch with another class, so the images of a class do not depend on
which other classes run in the same process. That is what makes a sharded run **byte-identical** to
a single-process one on the CPU (at the same ``threads``: intra-op threading may change float
rounding).

**Scale-out.** Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised with gloo on
the CPU or NCCL on GPUs (one GPU per rank, ``LOCAL_RANK``); rank ``r`` takes the classes ``c`` with
``c % world_size == r`` (round robin: ranks get equal shares). Every rank writes its own classes;
after a barrier rank 0 merges the per-class records into ``manifest.json``. The Doping stage
(``--dope-to``) runs once, on rank 0, after the merge: it trains one student on the whole synthetic
set and scores the whole real training split -- a single small training run that sharding would only
complicate (it would need distributed data-parallel training for a model that trains in minutes).

**Resumable and atomic.** A class is written to ``out/.dsco/partial-<label>/`` and renamed into
place when complete, then its record is written (atomically); a rerun with the same arguments skips
every class whose record exists and whose files match their hashes, and redoes the rest, so it ends
with the same export as an uninterrupted run. A rerun with different arguments into the same ``out``
is refused with the differing options named.

**Guarded.** A non-finite noise, latent or decoded image stops the run (``dsco.nopt.NOptDiverged``,
one line naming the class, the step and the fix) before anything of that class is written; an
unwritable or too small output folder fails before any synthesis.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import datasets, doping, export, nopt, replacing, surrogates
from .checkpoints import sha256
from .data import ImageSet

#: How many bytes one image takes on disk at most (PNG of C×H×W uint8 plus headers), for the space
# check.
_PNG_OVERHEAD = 1024


class ConcentrateError(ValueError):
    """Bad input to :func:`run`; the message names the fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: how far it got (the command line prints one line and exits 130)."""


def world() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` from torchrun's environment (``(0, 1, 0)`` outside it)."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def run(
    dataset: str,
    method: str,
    ipc: int,
    out,
    *,
    dope_to: int | None = None,
    per_class: bool = True,
    classes=None,
    params: dict | None = None,
    profile: str = "paper",
    options: dict | None = None,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    log=print,
) -> Path:
    """Build the concentrated set (see the module docstring) and return ``out``.

    ``dataset``/``params``/``profile``: the registry entry and the user's ``-p`` parameters (the
    profile gives the NOpt options, on top of which ``options`` override: e.g. ``{"iterations":
    200}``); ``classes``: label indices (default all). ``dope_to``: dope every class up to that IPC
    with the most confusing real training images (``per_class=False``: the official code's global
    ranking).
    """
    rank, size, local = world()
    if threads:
        torch.set_num_threads(int(threads))
    if size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        # ranks wait for each other only once, after synthesis, which can take hours on ImageNet-1k
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=72))
    if str(device).startswith("cuda") and size > 1:
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    try:
        ds, spec = _validate(
            dataset,
            method,
            ipc,
            out,
            dope_to,
            per_class,
            classes,
            params or {},
            profile,
            options or {},
            seed,
            device,
        )
        out = Path(out)
        if spec.pop("complete", False):
            if log and rank == 0:
                log(f"dsco concentrate: {out} is complete (manifest.json): nothing to do")
            return out
        mine = [c for c in spec["classes"] if c % size == rank]
        done = _synthesise(ds, spec, out, mine, device, progress, rank, size)
        if size > 1:
            torch.distributed.barrier()
        if rank == 0:  # the other ranks are done: no collective follows
            _finish(ds, spec, out, device, progress)
            if log:
                log(
                    f"dsco concentrate: {len(spec['classes'])} classes ({done} synthesised by "
                    f"this process) -> {out}"
                )
        return out
    finally:
        if size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# --- before anything runs
# ----------------------------------------------------------------------------
def _validate(
    dataset, method, ipc, out, dope_to, per_class, classes, params, profile, options, seed, device
):
    ds = datasets.get(dataset, profile, **params).check()
    if method not in surrogates.METHODS:
        raise ConcentrateError(
            f"unknown method {method!r}: use one of {', '.join(surrogates.METHODS)}"
        )
    if int(ipc) < 1:
        raise ConcentrateError(f"--ipc {ipc}: use 1 or more images per class")
    if dope_to is not None and int(dope_to) <= int(ipc):
        raise ConcentrateError(
            f"--dope-to {dope_to} must be larger than --ipc {ipc} (the synthetic part)"
        )
    labels = list(range(ds.num_classes)) if classes is None else sorted({int(c) for c in classes})
    bad = [c for c in labels if not 0 <= c < ds.num_classes]
    if bad:
        raise ConcentrateError(f"--classes {bad} out of range: use labels 0..{ds.num_classes - 1}")
    counts = ds.train().counts()
    need = int(dope_to or ipc) if method == "random" or dope_to else 0
    small = [c for c in labels if int(counts[c]) < need]
    if small:
        raise ConcentrateError(
            f"class {ds.classes[small[0]]!r} has {int(counts[small[0]])} training images, fewer "
            f"than the {need} per class asked: lower --ipc/--dope-to"
        )
    # every option of dsco.nopt.synthesize that defines the set, as dsco.surrogates.make resolves
    try:
        resolved = surrogates.nopt_options(ds, method, {**ds.budget.nopt, **options})[1] or {}
    except surrogates.SurrogateError as e:
        raise ConcentrateError(str(e)) from None
    spec = {
        "format": "dsco-concentrate/1",
        "dataset": ds.name,
        "params": {k: str(v) for k, v in ds.params.items()},
        "profile": profile,
        "method": method,
        "ipc": int(ipc),
        "dope_to": None if dope_to is None else int(dope_to),
        "per_class": bool(per_class),
        "classes": labels,
        "seed": int(seed),
        "options": resolved,
        "device_type": torch.device(device).type,
    }
    out = Path(out)
    previous = out / ".dsco" / "run.json"
    finished = out / "manifest.json"
    if (
        finished.is_file() and not previous.is_file()
    ):  # a completed run: its arguments are in the manifest
        previous = finished
    if previous.is_file():
        old = json.loads(previous.read_text())
        old = old.get("run", old)
        differ = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        if differ:
            changes = ", ".join(f"{k}: {old.get(k)} -> {spec.get(k)}" for k in differ)[:300]
            raise ConcentrateError(
                f"{out} holds a run with other arguments ({changes}): use a new --out, or the "
                "same arguments to resume"
            )
    if previous == finished:
        return ds, spec | {"complete": True}
    if (
        not previous.is_file()
        and out.exists()
        and any(p for p in out.iterdir() if not p.name.startswith(".dsco"))
    ):
        raise ConcentrateError(
            f"{out} is not empty and holds no dsco concentrate run: choose a new --out"
        )
    _check_writable(out, len(labels) * int(dope_to or ipc), ds.image_shape)
    rank, _, _ = world()
    if rank == 0 and not previous.is_file():
        previous.parent.mkdir(parents=True, exist_ok=True)
        _write_json(previous, spec)
    return ds, spec


def _check_writable(out: Path, images: int, shape) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".dsco-write-test-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as e:
        raise ConcentrateError(
            f"cannot write to {out} ({e.strerror or type(e).__name__}): choose a writable --out"
        ) from None
    need = images * (int(torch.tensor(shape).prod()) + _PNG_OVERHEAD)
    free = shutil.disk_usage(out).free
    if free < need:
        raise ConcentrateError(
            f"{out} has {free / 2**20:.1f} MiB free but the set needs up to "
            f"{need / 2**20:.1f} MiB: free some space or choose another --out"
        )


# --- the synthetic part, class by class
# ------------------------------------------------------------
def _class_done(out: Path, record: Path) -> bool:
    if not record.is_file():
        return False
    rec = json.loads(record.read_text())
    return all(
        (out / f["path"]).is_file() and sha256(out / f["path"]) == f["sha256"] for f in rec["files"]
    )


def _synthesise(ds, spec, out: Path, mine, device, progress, rank, size) -> int:
    folders = [export.class_folder(c, n, ds.num_classes) for c, n in enumerate(ds.classes)]
    records = out / ".dsco" / "classes"
    records.mkdir(parents=True, exist_ok=True)
    todo = [c for c in mine if not _class_done(out, records / f"{c}.json")]
    bar = tqdm(
        todo,
        desc=f"classes (rank {rank}/{size})" if size > 1 else "classes",
        disable=not progress,
        position=rank,
    )
    made = 0
    try:
        for c in bar:
            bar.set_postfix_str(ds.classes[c][:16])
            opts = {k: v for k, v in spec["options"].items() if k in nopt.synthesize.__kwdefaults__}
            s = surrogates.make(
                spec["method"],
                spec["ipc"],
                spec["seed"],
                dataset=ds,
                classes=[c],
                device=device,
                cache=False,
                progress=progress,
                **({} if spec["method"] == "random" else opts),
            )
            partial = out / ".dsco" / f"partial-{c}"
            shutil.rmtree(partial, ignore_errors=True)
            (partial / folders[c]).mkdir(parents=True)
            files = export.write_images(
                s.data.x, s.data.y, partial, folders, [f"{i:04d}" for i in range(len(s.data))]
            )
            final = out / folders[c]
            shutil.rmtree(final, ignore_errors=True)  # an incomplete class of an interrupted run
            os.replace(partial / folders[c], final)
            partial.rmdir()
            _write_json(
                records / f"{c}.json",
                {
                    "label": c,
                    "class": ds.classes[c],
                    "files": files,
                    "cost": s.cost() | {"rank": rank},
                },
            )
            made += 1
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after {made} of {len(todo)} classes on rank {rank} "
            f"({len(mine) - len(todo) + made} of {len(mine)} done)"
        ) from None
    return made


# --- rank 0: Doping and the manifest
# -----------------------------------------------------------------
def _finish(ds, spec, out: Path, device, progress) -> None:
    records = out / ".dsco" / "classes"
    recs = []
    for c in spec["classes"]:
        if not _class_done(out, records / f"{c}.json"):
            raise ConcentrateError(
                f"class {c} is missing or incomplete in {out}: rerun the same command to resume"
            )
        recs.append(json.loads((records / f"{c}.json").read_text()))
    files = [f for r in recs for f in r["files"]]
    for c, name in enumerate(ds.classes):  # every class gets a folder: ImageFolder's labels = ours
        (out / export.class_folder(c, name, ds.num_classes)).mkdir(exist_ok=True)
    extra = {}
    if spec["dope_to"]:
        files, extra = _dope(ds, spec, out, files, device, progress)
    manifest = export.export_manifest(
        "+".join(filter(None, [spec["method"], "doping" if spec["dope_to"] else None])),
        {
            k: spec[k]
            for k in (
                "dataset",
                "params",
                "profile",
                "ipc",
                "dope_to",
                "per_class",
                "options",
                "device_type",
            )
        },
        {"synthesis": spec["seed"], "student": spec["seed"]},
        ds.classes,
        files,
        ds.image_shape,
        name=f"{ds.name}-{spec['method']}",
        split="train",
        classes_made=spec["classes"],
        cost_per_class={r["class"]: r["cost"] for r in recs},
        run=spec,
        **extra,
    )
    _write_json(out / "manifest.json", manifest)
    shutil.rmtree(out / ".dsco")  # the bookkeeping of the run: the manifest now holds its arguments


def _dope(ds, spec, out: Path, files, device, progress):
    """The Doping stage: a student trained on the synthetic set (as written: the PNGs), Eq. 31
    scores of every real training image, and the most confusing ones written next to the synthetic
    images."""
    from .teacher import predict_proba

    folders = [export.class_folder(c, n, ds.num_classes) for c, n in enumerate(ds.classes)]
    x = torch.stack([_read_png(out / f["path"], ds.channels) for f in files])
    y = torch.tensor([f["label"] for f in files])
    synthetic = ImageSet(x, y, list(ds.classes), ds.name, "train")
    real, teacher = ds.train(), ds.teacher(device)
    keep = torch.isin(real.y, torch.tensor(spec["classes"]))
    arch = ds.archs["student"]
    t0 = time.perf_counter()
    student = doping.train_student(
        synthetic,
        arch,
        ds.num_classes,
        ds.protocol("soft"),
        teacher,
        seed=spec["seed"],
        device=device,
        **ds.arch_kwargs(arch),
    )
    scores = doping.confusion_scores(predict_proba(student, real), predict_proba(teacher, real))
    scores[~keep] = -2.0  # classes this run did not make are never doped
    k = spec["dope_to"] - spec["ipc"]
    sel = doping.select(scores[keep], real.y[keep], k, per_class=spec["per_class"])
    sel = torch.nonzero(keep).flatten()[sel]
    picked = real.subset(sel).in_memory()
    staging = out / ".dsco" / "doped"
    shutil.rmtree(staging, ignore_errors=True)
    for c in spec["classes"]:
        (staging / folders[c]).mkdir(parents=True)
    doped = export.write_images(
        picked.x, picked.y, staging, folders, [f"real-{int(i):06d}" for i in sel]
    )
    for f in doped:
        os.replace(staging / f["path"], out / f["path"])
    shutil.rmtree(staging, ignore_errors=True)
    order = {c: i for i, c in enumerate(spec["classes"])}
    files = sorted(files + doped, key=lambda f: (order[f["label"]], f["path"]))
    return files, {
        "doping": {
            "student": arch,
            "protocol": "soft",
            "dope_to": spec["dope_to"],
            "per_class": spec["per_class"],
            "doped": len(doped),
            "doped_with_score_above_0": int((scores[sel] > 0).sum()),
            "student_and_scoring_s": round(time.perf_counter() - t0, 2),
        }
    }


def _read_png(path: Path, channels: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    return torch.from_numpy(a.reshape(*a.shape[:2], -1).copy()).permute(2, 0, 1).float() / 127.5 - 1


def _write_json(path: Path, obj) -> None:
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
