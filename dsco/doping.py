"""Dope Trigger and Doping (paper §3.5, §4.2; SPEC §3): when to stop synthesising, which real
samples to add, and how to hand the resulting concentrated set to others.

- :func:`confusion_scores` -- Eq. 31, oriented so the most confused sample ranks first.
- :func:`dope_trigger` -- the marginal gain ΔN/ΔM of Eq. 30 over an IPC schedule; fires at ≤ 1.
  :func:`trigger_gains` stacks it over replicates and :func:`trigger_findings` judges §4.2.1's two
  claims over them with the rules of :mod:`dsco.verdicts`.
- :func:`select` / :func:`concentrate` -- pick the real samples (per class by default, the official
  code's global ranking as ``per_class=False``) and append them to the synthetic set.
- :func:`train_student`, :func:`confusion_of` / :func:`dope` -- the two steps every high-IPC
  notebook takes: train a student on a first part and score the real set (cached on disk: the same
  student is trained once across notebooks); append the most confusing real samples up to a target
  IPC. :func:`group_distances` measures Fig. 8.
- :func:`stage_costs` / :func:`selection_times` -- what Doping costs after the student's training,
  and the stages of it whose work depends on how many samples are doped (§5.3.3, Fig. 4).
- :func:`export` / :func:`read_export` -- an ImageFolder tree of PNGs plus ``manifest.json``
  (provenance and SHA-256 of every file), readable by ``torchvision.datasets.ImageFolder``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from . import CACHE, files_digest, replacing, trace
from .checkpoints import sha256
from .data import ImageSet


class DopingError(ValueError):
    """Bad input to a doping or export function; the message names the fix."""


def confusion_scores(student_probs, teacher_probs) -> torch.Tensor:
    """How confused the student φ_S is about each real sample; **higher = more confused**.

    Both inputs are post-softmax probabilities, N×C (student trained on the synthetic set, teacher
    pre-trained on the target set); c_T = argmax of the teacher's row.

    Sign: the paper prints Eq. 31 as ``Conf = p_S(c_T) − max_{c≠c_T} p_S(c)``, which is *negative*
    when the student disagrees with the teacher, yet says disagreeing samples get *positive* scores
    and that "the samples with the highest confusion scores are selected". The official code
    (``compute_clarity`` in kkkkqq/Dataset-Concentration) computes the printed expression, calls
    it "clarity", and selects in *ascending* order -- i.e. the disagreeing samples first. We return
    the negation of the printed expression, ``max_{c≠c_T} p_S(c) − p_S(c_T)`` ∈ [−1, 1], so that
    sorting by descending score selects exactly what the paper's text and the official code select.
    """
    s, t = (torch.as_tensor(p, dtype=torch.float64) for p in (student_probs, teacher_probs))
    if s.ndim != 2 or s.shape != t.shape or s.shape[1] < 2:
        raise DopingError(
            f"student_probs {tuple(s.shape)} and teacher_probs {tuple(t.shape)} must both be "
            "N×C with the same N and C >= 2: pass one row per real sample"
        )
    for name, p in (("student_probs", s), ("teacher_probs", t)):
        if not torch.isfinite(p).all() or (p < 0).any() or ((p.sum(1) - 1).abs() > 1e-3).any():
            raise DopingError(
                f"{name} rows must be probabilities (>= 0, summing to 1): "
                "apply softmax to the logits"
            )
    c_t = t.argmax(1)
    p_ct = s.gather(1, c_t[:, None]).squeeze(1)
    others = s.scatter(1, c_t[:, None], -1.0).amax(1)
    return (others - p_ct).float()


@dataclass
class Trigger:
    """Result of :func:`dope_trigger`: the per-interval table and where the trigger fires."""

    table: pd.DataFrame  # ipc_from, ipc_to, m_from, m_to, n_from, n_to, gain (= ΔN/ΔM)
    fires_at: int | None  # IPC M1 opening the first interval with ΔN/ΔM <= 1 (None: never)
    num_classes: int


def dope_trigger(schedule, n_recognised, *, num_classes: int) -> Trigger:
    """The marginal gains of Eq. 30, ΔN/ΔM = (N_{M2} − N_{M1}) / (M2 − M1), between consecutive
    points of an IPC ``schedule`` (e.g. 1, 5, 10, 20, 40), and the point where ΔN/ΔM ≤ 1.

    Units: ``n_recognised[k]`` is N_M, the number of target (training) samples -- all classes
    together -- that a model trained on the synthetic set at ``schedule[k]`` IPC classifies
    correctly; M is counted in samples too, M = IPC × ``num_classes``. So ΔN/ΔM is "extra real
    samples recognised per extra synthetic sample" and the threshold 1 is the paper's. (With
    per-class counts of N, pass ``num_classes=1``.) ``fires_at`` is the IPC M1 at the start of the
    first interval whose gain is ≤ 1: synthesis stops there and Doping supplies the rest.
    """
    ipc = np.asarray(schedule, dtype=np.int64)
    n = np.asarray(n_recognised, dtype=np.float64)
    if ipc.ndim != 1 or n.shape != ipc.shape or len(ipc) < 2:
        raise DopingError(
            f"schedule ({ipc.shape}) and n_recognised ({n.shape}) must be 1-D of equal length "
            ">= 2: give one N per schedule point"
        )
    if (ipc < 1).any() or (np.diff(ipc) <= 0).any():
        raise DopingError(
            f"schedule {ipc.tolist()} must be strictly increasing positive IPCs: sort it"
        )
    if not int(num_classes) >= 1 or not np.isfinite(n).all() or (n < 0).any():
        raise DopingError(
            "num_classes must be >= 1 and n_recognised finite counts >= 0: check the inputs"
        )
    m = ipc * int(num_classes)
    gain = np.diff(n) / np.diff(m)
    table = pd.DataFrame(
        {
            "ipc_from": ipc[:-1],
            "ipc_to": ipc[1:],
            "m_from": m[:-1],
            "m_to": m[1:],
            "n_from": n[:-1],
            "n_to": n[1:],
            "gain": gain,
        }
    )
    on = np.flatnonzero(gain <= 1)
    return Trigger(table, int(ipc[on[0]]) if len(on) else None, int(num_classes))


def trigger_gains(
    counts: pd.DataFrame,
    *,
    num_classes: int,
    replicate: str = "replicate",
    ipc: str = "ipc",
    n: str = "N",
) -> pd.DataFrame:
    """The Eq. 30 table of every replicate: ``counts`` holds one row per replicate and schedule
    point (columns ``replicate``, ``ipc``: the IPC or, with ``num_classes=1``, the number of
    samples, and ``n``: N_M); returns :func:`dope_trigger`'s tables stacked, with the
    ``replicate`` column and ``fires`` (gain ≤ 1)."""
    if not len(counts):
        raise DopingError("counts is empty: give one row per replicate and schedule point")
    missing = [c for c in (replicate, ipc, n) if c not in counts.columns]
    if missing:
        raise DopingError(
            f"counts lacks column(s) {missing}: pass replicate=, ipc=, n= naming its columns"
        )
    frames = []
    for r, g in counts.groupby(replicate, sort=True):
        g = g.sort_values(ipc)
        t = dope_trigger(g[ipc].to_numpy(), g[n].to_numpy(), num_classes=num_classes).table
        frames.append(t.assign(**{replicate: r}, fires=t["gain"] <= 1))
    return pd.concat(frames, ignore_index=True)


def trigger_findings(gains: pd.DataFrame, replicate: str = "replicate", unit: str = "IPC") -> dict:
    """The two claims of §4.2.1 over replicates, ``{claim: Verdict}`` (rules of
    :mod:`dsco.verdicts`), from :func:`trigger_gains` (one Eq. 30 table per replicate: columns
    ``replicate``, ``ipc_from``, ``ipc_to``, ``m_from``, ``m_to``, ``gain``).

    - *The Dope Trigger fires on the schedule*: :func:`~dsco.verdicts.estimate` of the gain of the
      schedule's **last** interval over the replicates, *below* 1 (the trigger has fired by the
      end of the schedule: ΔN/ΔM ≤ 1 there). The last gain, not the smallest: the minimum over
      several noisy intervals would be biased towards firing. Its sd is floored at one recognised
      sample over the interval (1 / ΔM): N is a count.
    - *The marginal gains decrease along the schedule*: :func:`~dsco.verdicts.trend`, the
      least-squares slope of ΔN/ΔM on the log of the interval's geometric-mean IPC within every
      replicate, then a t-interval over the replicates' slopes, *below* 0 (a decreasing trend, not
      a strictly monotone sequence: one noisy interval does not refute diminishing returns). The
      slopes' sd is floored at one recognised sample in the finest interval over the x range.

    ``unit`` names the schedule's points in the claims ("IPC"; "M" for a schedule in samples).
    Each replicate is its own synthetic sets and model seed; assumes the replicates' last gains and
    slopes are independent and roughly normal; fewer than 3 replicates: *not measured*."""
    from . import verdicts

    need = {replicate, "ipc_from", "ipc_to", "m_from", "m_to", "gain"}
    if not need <= set(gains.columns):
        raise DopingError(
            f"gains lacks column(s) {sorted(need - set(gains.columns))}: pass "
            "dsco.doping.trigger_gains(...)"
        )
    last = gains[gains["ipc_to"] == gains["ipc_to"].max()]
    step = float((last["m_to"] - last["m_from"]).iloc[0])
    a, b = int(last["ipc_from"].iloc[0]), int(last["ipc_to"].iloc[0])
    x = f"log {unit}"  # the log of the interval's geometric-mean point
    mid = gains.assign(
        **{x: 0.5 * np.log(gains["ipc_from"] * gains["ipc_to"]), "ΔN/ΔM": gains["gain"]}
    )
    # a slope's resolution: one recognised sample more in the finest interval, over the x range
    span = float(mid[x].max() - mid[x].min())
    slope_floor = 1.0 / (float((gains["m_to"] - gains["m_from"]).max()) * span) if span > 0 else 0.0
    fires = "the Dope Trigger fires on the schedule (ΔN/ΔM below 1 by its last interval)"
    return {
        fires: verdicts.estimate(
            last["gain"], below=1.0, what=f"ΔN/ΔM of {unit} {a}→{b}", resolution=1.0 / step
        ),
        "the marginal gains ΔN/ΔM decrease along the schedule": verdicts.trend(
            mid,
            x,
            "ΔN/ΔM",
            replicate=replicate,
            decreasing=True,
            threshold=0.0,
            resolution=slope_floor,
        ),
    }


def select(scores, labels, ipc_real: int, per_class: bool = True) -> torch.Tensor:
    """Indices of the real samples to dope, ranked by descending confusion score.

    ``per_class=True`` (default, class-balanced): the ``ipc_real`` highest-scoring samples of every
    class present in ``labels``, grouped by class in label order. ``per_class=False`` (the
    official code's default): the global top ``ipc_real × number of classes``, whatever their class.
    Ties keep dataset order (stable sort), so the result is deterministic.
    """
    s = np.asarray(torch.as_tensor(scores, dtype=torch.float64))
    y = np.asarray(torch.as_tensor(labels, dtype=torch.long))
    if s.ndim != 1 or y.shape != s.shape:
        raise DopingError(
            f"scores {s.shape} and labels {y.shape} must be 1-D of equal length: "
            "pass one score and one label per real sample"
        )
    if not np.isfinite(s).all():
        raise DopingError("scores contain NaN or inf: recompute them with confusion_scores")
    if int(ipc_real) < 0:
        raise DopingError(f"ipc_real={ipc_real} must be >= 0")
    order = np.argsort(-s, kind="stable")
    classes, counts = np.unique(y, return_counts=True)
    if not per_class:
        k = int(ipc_real) * len(classes)
        if k > len(s):
            raise DopingError(
                f"ipc_real={ipc_real} × {len(classes)} classes = {k} exceeds the {len(s)} real "
                f"samples: use ipc_real <= {len(s) // len(classes)}"
            )
        return torch.as_tensor(order[:k].copy())
    picks = []
    for c, size in zip(classes, counts):
        if int(ipc_real) > size:
            raise DopingError(
                f"ipc_real={ipc_real} exceeds class {c}'s size ({size} samples): use "
                f"ipc_real <= {counts.min()} (the smallest class) or per_class=False"
            )
        picks.append(order[y[order] == c][: int(ipc_real)])
    return torch.as_tensor(np.concatenate(picks) if picks else np.zeros(0, np.int64))


def concentrate(synthetic: ImageSet, real, selection) -> ImageSet:
    """The concentrated set: the synthetic images then the selected real ones (``real[selection]``).

    ``real`` may be an :class:`~dsco.data.ImageSet` or a lazy ``FolderSet`` (only the selected
    images are read). The first ``len(synthetic)`` rows are synthetic.
    """
    if list(synthetic.classes) != list(real.classes):
        raise DopingError(
            "synthetic and real sets have different class lists: build both from the same dataset"
        )
    idx = torch.as_tensor(selection, dtype=torch.long).flatten()
    if len(idx) and (idx.min() < 0 or idx.max() >= len(real)):
        raise DopingError(
            f"selection holds indices outside 0..{len(real) - 1}: select on this real set's scores"
        )
    if (
        len(idx) == 0
    ):  # nothing doped: the synthetic set itself (a lazy set cannot stack zero images)
        return ImageSet(
            synthetic.x.float(),
            synthetic.y.clone(),
            list(synthetic.classes),
            f"{synthetic.name}+doped" if synthetic.name else "concentrated",
            synthetic.split or "train",
        )
    picked = real.subset(idx).in_memory()
    if picked.x.shape[1:] != synthetic.x.shape[1:]:
        raise DopingError(
            f"real images {tuple(picked.x.shape[1:])} and synthetic {tuple(synthetic.x.shape[1:])} "
            "differ in shape: decode/resize both to the same size"
        )
    return ImageSet(
        torch.cat([synthetic.x.float(), picked.x.float()]),
        torch.cat([synthetic.y, picked.y]),
        list(synthetic.classes),
        f"{synthetic.name}+doped" if synthetic.name else "concentrated",
        synthetic.split or "train",
    )


def train_student(
    train_set,
    arch: str,
    num_classes: int,
    protocol,
    teacher=None,
    *,
    seed: int = 0,
    device: str = "cpu",
    epochs: int | None = None,
    dataset_name: str = "",
    **arch_kwargs,
):
    """The student φ_S of Eq. 31: ``arch`` trained from scratch on ``train_set`` with ``protocol``
    (the soft-label protocol learns from ``teacher``), seeded with ``seed``. ``epochs``: default the
    protocol's, else :func:`dsco.training.epochs_for` of the set's IPC. Returned on the CPU, in eval
    mode."""
    from . import architectures, training

    x, y = train_set.x.float(), train_set.y
    p = training.resolve(protocol, dataset_name or getattr(train_set, "name", ""), x.shape[1])
    epochs = (
        epochs
        or p.epochs
        or training.epochs_for(len(x) / num_classes, p.profile, num_classes, p.batch_size)
    )
    student = architectures.build(arch, num_classes, tuple(x.shape[1:]), seed, **arch_kwargs)
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        training.train_model(
            student, x, y, p, epochs, num_classes=num_classes, teacher=teacher, device=device
        )
    trace.event("student", t0, False, arch=arch, ipc=len(x) / num_classes, seed=seed)
    return student.cpu().eval()


#: Where :func:`confusion_of` keeps its scores; bump the version when the student's training
# changes.
CACHE_DIR = CACHE / "confusion"
CACHE_VERSION = 1


def confusion_of(
    train_set,
    arch: str,
    real,
    teacher,
    protocol,
    *,
    seed: int = 0,
    device: str = "cpu",
    epochs: int | None = None,
    cache: bool = True,
    cache_dir=None,
    **arch_kwargs,
) -> torch.Tensor:
    """Eq. 31 confusion score (higher = more confused) of every sample of ``real`` (a lazy FolderSet
    too) for a student :func:`train_student` trains on ``train_set``; ``c_T`` is the teacher's
    class.

    ``cache``: the scores are stored in ``build/cache/confusion/`` (or ``cache_dir``) under a
    SHA-256 of what defines them -- the first part's images and labels, ``arch`` and
    ``arch_kwargs``, the protocol, ``epochs``, ``seed``, the real set (:func:`set_key`), the
    teacher's fingerprint (:func:`dsco.evaluate.teacher_fingerprint`), the device type and
    :data:`CACHE_VERSION` -- so a student shared by two notebooks (the DsCo part of one replicate,
    scored by the same architecture) is trained once."""
    from .evaluate import teacher_fingerprint
    from .teacher import predict_proba

    name = getattr(real, "name", "")
    path = None
    if cache:
        key = {
            "version": CACHE_VERSION,
            "train": _tensor_sha(train_set.x.float(), train_set.y),
            "arch": arch,
            "arch_kwargs": arch_kwargs,
            "protocol": asdict(protocol),
            "epochs": epochs,
            "seed": int(seed),
            "real": set_key(real),
            "dataset": name,
            "teacher": teacher_fingerprint(teacher, train_set.x.float(), device),
            "device": torch.device(device).type,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        path = Path(cache_dir or CACHE_DIR) / f"{digest[:32]}.pt"
        if path.is_file():
            trace.event(
                "student",
                time.time(),
                True,
                arch=arch,
                ipc=len(train_set) / len(real.classes),
                seed=seed,
                key=digest[:32],
            )
            return torch.load(path, weights_only=True)
    student = train_student(
        train_set,
        arch,
        len(real.classes),
        protocol,
        teacher,
        seed=seed,
        device=device,
        epochs=epochs,
        dataset_name=name,
        **arch_kwargs,
    )
    scores = confusion_scores(predict_proba(student, real), predict_proba(teacher, real))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:  # an interrupted run never leaves a half-written entry
            torch.save(scores, tmp)
    return scores


def set_key(real) -> list:
    """What :func:`confusion_of`'s cache key says about the scored set ``real``: its name, split and
    size, plus a SHA-256 of its images and labels, or for a lazy FolderSet the cheap digest of its
    files (:func:`dsco.files_digest`: paths, sizes, modification times), its labels and its
    transform (the image size)."""
    base = [getattr(real, "name", ""), getattr(real, "split", ""), len(real)]
    if hasattr(real, "files"):
        return base + [files_digest(real.files), _tensor_sha(real.y), repr(real.transform)]
    return base + [_tensor_sha(real.x.float(), real.y)]


def _tensor_sha(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def dope(synthetic: ImageSet, scores, real, target_ipc: int, exclude=None, per_class: bool = True):
    """``synthetic`` (``k`` images per class) plus the ``target_ipc − k`` most confusing samples of
    every class of ``real`` (:func:`select`, :func:`concentrate`); the real samples at the indices
    ``exclude`` are never picked. Returns ``(concentrated set, selection)``."""
    k = len(synthetic) // len(real.classes)
    s = torch.as_tensor(scores, dtype=torch.float32).clone()
    if exclude is not None:
        s[
            torch.as_tensor(exclude, dtype=torch.long)
        ] = -2.0  # below every score (scores lie in [-1, 1])
    selection = select(s, real.y, int(target_ipc) - k, per_class=per_class)
    return concentrate(synthetic, real, selection), selection


def stage_costs(
    student, teacher, synthetic: ImageSet, real, doped_ipcs, repeats: int = 3
) -> pd.DataFrame:
    """The cost of Doping after the student's training (§5.3.3, Fig. 4), per number of doped
    samples per class: labelling ``real`` with the student and the teacher (``label_s``),
    :func:`confusion_scores` (``scores_s``), :func:`select` and :func:`concentrate`, each the
    median of ``repeats`` timings. One row per entry of ``doped_ipcs`` (columns ``doped_ipc``,
    ``doped_samples`` and the four stages).

    Labelling and scoring see the whole real split whatever the count, so they are timed once and
    the same medians stand in every row; only ``select_s`` and ``concentrate_s`` are timed per
    count (:func:`selection_times`, which a claim about how the cost grows with the count should
    read)."""
    from .teacher import predict_proba

    fixed = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ps, pt = predict_proba(student, real), predict_proba(teacher, real)
        t1 = time.perf_counter()
        scores = confusion_scores(ps, pt)
        fixed.append({"label_s": t1 - t0, "scores_s": time.perf_counter() - t1})
    fixed = pd.DataFrame(fixed).median().to_dict()
    per_count = selection_times(scores, synthetic, real, doped_ipcs, rounds=repeats)
    per_count = (
        per_count.groupby(["doped_ipc", "doped_samples"], sort=False)[["select_s", "concentrate_s"]]
        .median()
        .reset_index()
    )
    columns = ["doped_ipc", "doped_samples", "label_s", "scores_s", "select_s", "concentrate_s"]
    return per_count.assign(**fixed)[columns]


def selection_times(scores, synthetic: ImageSet, real, doped_ipcs, rounds: int = 5) -> pd.DataFrame:
    """The stages of Doping whose work depends on how many samples are doped: :func:`select`
    (rank the scores, keep ``ipc_real`` per class) and :func:`concentrate` (read the selected real
    images and append them), timed for every entry of ``doped_ipcs`` in each of ``rounds`` rounds
    (a round times every count once, in order, so a slow moment of a shared machine hits one
    round, not one count). One row per round and count: ``round``, ``doped_ipc``,
    ``doped_samples``, ``select_s``, ``concentrate_s`` and ``seconds`` (their sum)."""
    if int(rounds) < 1:
        raise DopingError(f"rounds={rounds}: time at least one round")
    rows = []
    for r in range(int(rounds)):
        for ipc_real in doped_ipcs:
            t0 = time.perf_counter()
            sel = select(scores, real.y, ipc_real)
            t1 = time.perf_counter()
            concentrate(synthetic, real, sel)
            t2 = time.perf_counter()
            rows.append(
                {
                    "round": r,
                    "doped_ipc": int(ipc_real),
                    "doped_samples": int(ipc_real) * len(real.classes),
                    "select_s": t1 - t0,
                    "concentrate_s": t2 - t1,
                    "seconds": t2 - t0,
                }
            )
    return pd.DataFrame(rows)


def group_distances(latents, scores, groups: int = 5) -> np.ndarray:
    """Fig. 8: the samples of one class sorted by descending confusion score and cut into ``groups``
    equal groups (group 0 = most confused); entry ``[i, j]`` is the mutual nearest-neighbour
    distance ``(d(i→j) + d(j→i)) / 2``, where ``d(i→j)`` is the mean over ``a`` in group i of the L2
    distance to its nearest ``b ≠ a`` in group j (flattened latents). Far-apart samples have a large
    diagonal entry."""
    order = torch.argsort(torch.as_tensor(scores), descending=True, stable=True)
    x = torch.as_tensor(latents)
    parts = [x[g].flatten(1).double() for g in np.array_split(order.numpy(), groups)]
    d = np.zeros((groups, groups))
    for i, gi in enumerate(parts):
        for j, gj in enumerate(parts):
            dist = torch.cdist(gi, gj)
            if i == j:
                dist.fill_diagonal_(float("inf"))
            d[i, j] = float(dist.min(1).values.mean())
    return (d + d.T) / 2


def class_folder(label: int, name: str, num_classes: int) -> str:
    """``<label zero-padded>_<name>`` (e.g. ``03_3``): string order = label order, as ImageFolder
    needs."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    return f"{label:0{max(2, len(str(num_classes - 1)))}d}" + (f"_{slug}" if slug else "")


def export(data, folder, *, method: str, parameters: dict, seeds, classes=None) -> Path:
    """Write ``data`` (an ImageSet, or ``(x, y)`` with ``x`` N×C×H×W in [-1, 1], C = 1 or 3) as an
    ImageFolder tree ``folder/<class folder>/<index>.png`` plus ``folder/manifest.json``.

    Pixels: ``uint8 = round((x + 1) * 127.5)`` after clamping to [-1, 1] (the number of clamped
    values is recorded); 1 channel → grayscale PNG, 3 → RGB. ``<index>`` is the sample's position in
    ``data``. Class folders are :func:`class_folder` names, so ``torchvision.datasets.ImageFolder``
    assigns the same labels; every class gets a folder (ImageFolder needs ``allow_empty=True`` if a
    class has no images). The manifest holds method, parameters, seeds, package versions, creation
    time, classes, counts per class and every file's SHA-256. ``folder`` must be absent or empty;
    the tree is written to a temporary sibling and renamed, so a failure leaves nothing behind.
    """
    if hasattr(data, "in_memory"):
        data = data.in_memory()
    x, y = (data.x, data.y) if isinstance(data, ImageSet) else data
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    if (
        x.ndim != 4
        or x.shape[1] not in (1, 3)
        or y.shape != (len(x),)
        or not torch.isfinite(x).all()
    ):
        raise DopingError(
            f"export needs finite x N×C×H×W with C = 1 or 3 and y of length N, "
            f"got x {tuple(x.shape)}, y {tuple(y.shape)}: pass images in [-1, 1]"
        )
    classes = list(
        classes
        if classes is not None
        else getattr(data, "classes", None)
        or [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
    )
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise DopingError(
            f"labels must lie in 0..{len(classes) - 1}: pass classes= with one name per label"
        )
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DopingError(
            f"{folder} exists and is not an empty folder: choose a new folder or delete it"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    dirs = [class_folder(c, n, len(classes)) for c, n in enumerate(classes)]
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        for d in dirs:
            (tmp / d).mkdir()
        width = len(str(max(len(x) - 1, 0)))
        files = write_images(x, y, tmp, dirs, [f"{i:0{width}d}" for i in range(len(x))])
        manifest = export_manifest(
            method,
            parameters,
            seeds,
            classes,
            files,
            list(x.shape[1:]),
            n_clamped=int((x.abs() > 1).sum()),
            name=getattr(data, "name", ""),
            split=getattr(data, "split", ""),
        )
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        if folder.exists():
            folder.rmdir()  # empty (checked above): rename needs the name free
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_images(x, y, root, dirs, names) -> list[dict]:
    """Write the images ``x`` (N×C×H×W in [-1, 1], C = 1 or 3) as PNGs
    ``root/<dirs[y_i]>/<names[i]>.png`` (``uint8 = round((x + 1) * 127.5)`` after clamping; grey for
    one channel, RGB for three) and return one entry per file: ``{"path", "label", "sha256"}``. The
    bytes depend only on the pixels."""
    pixels = (
        ((torch.as_tensor(x).float().clamp(-1, 1) + 1) * 127.5)
        .round()
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
        .numpy()
    )
    files = []
    for px, c, name in zip(pixels, torch.as_tensor(y).tolist(), names):
        rel = f"{dirs[c]}/{name}.png"
        Image.fromarray(px[..., 0] if px.shape[-1] == 1 else px).save(Path(root) / rel)
        files.append({"path": rel, "label": c, "sha256": sha256(Path(root) / rel)})
    return files


def export_manifest(
    method: str, parameters: dict, seeds, classes, files: list[dict], shape, **extra
) -> dict:
    """The ``manifest.json`` of an export (``format: dsco-export/1``): method, parameters, seeds,
    package versions, git commit, creation time, classes and their folders, counts per class, image
    shape and every file with its label and SHA-256 (plus ``extra`` fields)."""
    from .results import git_commit, package_versions

    labels = [f["label"] for f in files]
    return {
        "format": "dsco-export/1",
        "method": method,
        "parameters": parameters,
        "seeds": seeds,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(),
        "classes": list(classes),
        "class_folders": [class_folder(c, n, len(classes)) for c, n in enumerate(classes)],
        "counts": {n: labels.count(c) for c, n in enumerate(classes)},
        "shape": list(shape),
        "pixels": "uint8 = round((x + 1) * 127.5), x clamped to [-1, 1]; read back as "
        "uint8 / 127.5 - 1",
        **extra,
        "files": files,
    }


def read_export(folder, verify: bool = True) -> ImageSet:
    """Read an :func:`export` tree back into an :class:`~dsco.data.ImageSet`, in the exported order.

    ``x = uint8 / 127.5 − 1``, so a round trip is exact up to the uint8 quantisation (≤ 0.5/127.5
    per pixel) and exact for anything read back from an export. With ``verify`` every file's SHA-256
    is checked against the manifest and files missing from it are reported.
    """
    folder = Path(folder)
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise DopingError(
            f"no readable manifest.json in {folder} ({type(e).__name__}): "
            "point at a folder written by dsco.doping.export"
        ) from e
    if m.get("format") != "dsco-export/1":
        raise DopingError(
            f"{folder}/manifest.json is not a dsco export: re-export with dsco.doping.export"
        )
    if verify:
        listed = {f["path"] for f in m["files"]}
        extra = sorted(
            str(p.relative_to(folder))
            for p in folder.glob("*/*")
            if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")
        )  # .dsco/: bookkeeping
        extra = [p for p in extra if p not in listed]
        if extra:
            raise DopingError(
                f"{folder / extra[0]} is not in manifest.json: remove it or re-export"
            )
    xs = []
    for f in m["files"]:
        path = folder / f["path"]
        if not path.is_file():
            raise DopingError(f"{path} is listed in manifest.json but missing: re-export the set")
        if verify and sha256(path) != f["sha256"]:
            raise DopingError(
                f"SHA-256 mismatch for {path}: the file was modified; re-export the set"
            )
        with Image.open(path) as im:
            a = np.asarray(im.convert("L" if m["shape"][0] == 1 else "RGB"))
        xs.append(torch.from_numpy(a.reshape(*a.shape[:2], -1).copy()).permute(2, 0, 1))
    x = (torch.stack(xs).float() / 127.5 - 1) if xs else torch.zeros(0, *m["shape"])
    y = torch.tensor([f["label"] for f in m["files"]], dtype=torch.long)
    return ImageSet(x, y, list(m["classes"]), m.get("name", ""), m.get("split", ""))
