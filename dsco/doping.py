"""Doping (paper §3.5, §4.2.2; SPEC §3): which real samples to add to a synthetic set, and what
it costs.

- :func:`confusion_scores` -- Eq. 31, oriented so the most confused sample ranks first.
- :func:`select` / :func:`concentrate` -- pick the real samples (per class by default, the official
  code's global ranking as ``per_class=False``) and append them to the synthetic set.
- :func:`train_student`, :func:`confusion_of` / :func:`dope` -- the two steps every high-IPC
  notebook takes: train a student on a first part and score the real set (cached on disk: the same
  student is trained once across notebooks); append the most confusing real samples up to a target
  IPC. :func:`group_distances` measures Fig. 8.
- :func:`stage_costs` / :func:`selection_times` -- what Doping costs after the student's training,
  and the stages of it whose work depends on how many samples are doped (§5.3.3, Fig. 4).

When to stop synthesising (the Dope Trigger, Eq. 30) is :mod:`dsco.trigger`; writing the
concentrated set to disk and reading it back is :mod:`dsco.export`. Bad input raises
:class:`~dsco.errors.DopingError`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import CACHE, files_digest, json_digest, replacing, tensor_digest, trace
from .data import ImageSet
from .errors import DopingError


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
            "train": tensor_digest(train_set.x.float(), train_set.y),
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
        digest = json_digest(key)
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
        return base + [files_digest(real.files), tensor_digest(real.y), repr(real.transform)]
    return base + [tensor_digest(real.x.float(), real.y)]


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
