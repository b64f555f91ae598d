"""The teacher classifier for ``digits`` (SPEC §2): it plays the pretrained ResNet-18 of the paper.

The paper uses a pretrained classifier twice: to relabel synthetic samples with soft labels
(App. D, KL to the teacher at temperature 20) and, in Doping (§4.2, Eq. 31), to give the class
``c_T`` a real sample is compared against. At the embedded scale the teacher is a small CNN
(three 3×3 conv layers, ~93k parameters) trained on the full digits training split and shipped as
``data/models/digits_teacher.safetensors`` with a JSON card (SHA-256, training parameters, test
accuracy). Entry points: :func:`train_teacher`, :func:`load_teacher`, :func:`predict_proba`.

On the ImageNet datasets the teacher is the paper's own kind of model, a timm ResNet-18
(:class:`TimmTeacher`): loaded from a checkpoint the user passes (:func:`load_timm_teacher`), or
trained on the dataset by notebook 00 (:func:`train_timm_teacher`, :func:`save_timm_teacher`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoints import MODELS_DIR, CheckpointError, load_checkpoint, save_checkpoint

TEACHER_WEIGHTS = MODELS_DIR / "digits_teacher.safetensors"
#: Architecture of the digits teacher (input 1×8×8 in [-1, 1]).
TEACHER_CONFIG = dict(in_channels=1, widths=(32, 64, 128), num_classes=10)
_RETRAIN = "retrain with notebooks/00_prepare_dataset.ipynb (profile paper, retrain=True)"


def build_teacher(config: dict | None = None) -> nn.Sequential:
    """conv3×3(w1)–ReLU–conv3×3(w2)–ReLU–maxpool2–conv3×3(w3)–ReLU–global avg pool–linear; ``pools``
    lists the convolutions (1, 2, 3) followed by a 2×2 max-pool (default ``(2,)``, the digits
    teacher's: enough for 8×8 images; 28-px images want ``(1, 2)`` so that the last convolution sees
    the whole digit); ``hidden`` > 0 replaces the global average by a fully connected head (4×4 map,
    ``hidden`` units, dropout 0.5), which generalises better from a few thousand 28-px images."""
    cfg = dict(TEACHER_CONFIG, **(config or {}))
    widths, pools = cfg["widths"], tuple(cfg.get("pools", (2,)))
    layers, c = [], cfg["in_channels"]
    for i, w in enumerate(widths, start=1):
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()] + (
            [nn.MaxPool2d(2)] if i in pools else []
        )
        c = w
    if cfg.get(
        "hidden"
    ):  # a fully connected head on a 4×4 map (dropout 0.5) instead of the global average
        return nn.Sequential(
            *layers,
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(16 * c, cfg["hidden"]),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(cfg["hidden"], cfg["num_classes"]),
        )
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, cfg["num_classes"])
    )


def _shift(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``k`` pixels (background -1 padding, then a random crop)."""
    if k == 0:
        return x
    n, _, h, w = x.shape
    pad = nn.functional.pad(x, (k, k, k, k), value=-1.0)
    dy, dx = torch.randint(0, 2 * k + 1, (2, n), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, :, None].expand(n, h, w)
    cols = (dx[:, None] + torch.arange(w))[:, None, :].expand(n, h, w)
    return pad[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train_teacher(
    train_set,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    shift: int = 1,
    seed: int = 0,
    config: dict | None = None,
    device="cpu",
    progress: bool = True,
):
    """Train the teacher on ``train_set`` (``.x`` N×1×8×8 in [-1, 1], ``.y`` labels).

    Cross-entropy, AdamW, cosine learning-rate decay, random ±``shift``-pixel translations. All
    random draws come from one CPU generator seeded with ``seed``. Returns ``(model, history)``
    with the mean loss and training accuracy per epoch and the wall time.
    """
    x, y = train_set.x.float(), train_set.y.long()
    cfg = dict(TEACHER_CONFIG, **(config or {}))
    if x.dim() != 4 or x.shape[1] != cfg["in_channels"]:
        raise ValueError(
            f"train_set.x has shape {tuple(x.shape)}: expected N×{cfg['in_channels']}×H×W"
        )
    if int(y.min()) < 0 or int(y.max()) >= cfg["num_classes"]:
        raise ValueError(f"labels must be in 0..{cfg['num_classes'] - 1}")
    g = torch.Generator("cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_teacher(config).to(device)

    def batches():  # one epoch: a seeded permutation, each batch shifted by up to ±shift pixels
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            yield _shift(x[idx], shift, g), y[idx]

    hist = _fit(model, epochs, batches, lr, weight_decay, device, "training teacher", progress)
    hist.update(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        shift=shift,
        seed=seed,
        config=cfg,
        optimizer="AdamW + cosine annealing, cross-entropy, random ±shift translation",
    )
    return model.eval(), hist


@torch.no_grad()
def predict_proba(
    model: nn.Module, x: torch.Tensor, temperature: float = 1.0, batch_size: int = 1024
) -> torch.Tensor:
    """Class probabilities ``softmax(logits / temperature)`` (N×num_classes, on the CPU) of the
    images ``x``: a tensor, or a data set (ImageSet, lazy FolderSet), read in batches.

    ``temperature`` > 1 softens them (the soft-label protocol uses 20, App. D).
    """
    from .data import batches

    if not temperature > 0:
        raise ValueError(f"temperature={temperature}: use a positive number (1 = plain softmax)")
    model.eval()
    dev = next(model.parameters()).device
    data = (x, torch.zeros(len(x), dtype=torch.long)) if torch.is_tensor(x) else x
    logits = torch.cat(
        [model(xb.float().to(dev)).float().cpu() for xb, _ in batches(data, batch_size)]
    )
    return torch.softmax(logits / temperature, dim=1)


def accuracy(model: nn.Module, x, y: torch.Tensor | None = None) -> float:
    """Fraction of ``x`` (a tensor, with labels ``y``; or a data set with its own labels) whose most
    probable class is the label."""
    y = y if y is not None else x.y
    return float((predict_proba(model, x).argmax(1) == y.cpu()).float().mean())


def save_teacher(
    model: nn.Module,
    history: dict,
    path=None,
    data_split: dict | None = None,
    test_accuracy: float | None = None,
) -> dict:
    """Save the teacher as safetensors + JSON card (default: the shipped location)."""
    from importlib import metadata

    card = dict(
        model="digits-teacher",
        architecture="dsco.teacher.build_teacher",
        config={
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in history.get("config", TEACHER_CONFIG).items()
        },
        training={
            k: v for k, v in history.items() if k not in ("loss", "train_accuracy", "config")
        },
        final_loss=history["loss"][-1] if history.get("loss") else None,
        loss_curve=[round(v, 5) for v in history.get("loss", [])],
        test_accuracy=test_accuracy,
        data_split=data_split,
        versions={p: metadata.version(p) for p in ("torch", "safetensors")},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return save_checkpoint(model, Path(path) if path else TEACHER_WEIGHTS, card)


def load_teacher(path=None, device="cpu") -> nn.Module:
    """Load the shipped teacher (or the one at ``path``), verifying its SHA-256 against the card."""
    model, _ = load_checkpoint(
        path or TEACHER_WEIGHTS, lambda card: build_teacher(card["config"]), _RETRAIN
    )
    return model.to(device).eval()


# --- timm teachers (the ImageNet datasets: the paper's ResNet-18)
# -------------------------------------
class TimmTeacher(nn.Module):
    """A timm classifier taking this package's images (in [-1, 1]) and returning logits: the images
    are mapped to [0, 1] and normalised by the model's own ``pretrained_cfg`` mean and std first."""

    def __init__(self, model: nn.Module):
        super().__init__()
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        self.model = model
        self.register_buffer(
            "mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, -1, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, -1, 1, 1)
        )

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(((x + 1) / 2 - self.mean) / self.std)


def _timm_model(path, arch: str, pretrained: bool = True, **kwargs) -> nn.Module:
    """A timm model from a checkpoint: a folder in timm's Hugging Face layout (``config.json`` +
    ``model.safetensors``, as ``timm.models.save_for_hf`` writes) or a state-dict file
    (.safetensors, .pth, .pt, .bin) of ``arch``."""
    import timm

    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"no teacher checkpoint at {path}: pass -p teacher_path a timm checkpoint file "
            "or a folder written by timm.models.save_for_hf"
        )
    try:
        if path.is_dir():
            return timm.create_model(f"local-dir:{path}", pretrained=pretrained, **kwargs)
        # the overlay's num_classes must be the checkpoint's: where it differs from the default
        # config's (1000), timm drops the classifier weights of the file and leaves the head random
        overlay = {"file": str(path), "num_classes": kwargs.get("num_classes", 1000)}
        return timm.create_model(
            arch, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs
        )
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is not a timm {arch} checkpoint ({first[:160]}): pass the matching "
            "-p teacher_path"
        ) from None


def timm_num_classes(path, arch: str = "resnet18") -> int:
    """The number of classes of a timm checkpoint (read from its config, or from its classifier
    weights)."""
    import json

    import timm

    path = Path(path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        if "num_classes" not in config or "architecture" not in config:
            raise CheckpointError(
                f"{path} is not a timm checkpoint folder (its config.json has no architecture "
                "and num_classes): pass -p teacher_path a folder written by timm.models.save_for_hf"
            )
        return int(config["num_classes"])
    if not path.is_file():
        raise CheckpointError(
            f"no teacher checkpoint at {path}: pass -p teacher_path a timm checkpoint file "
            "or a folder written by timm.models.save_for_hf"
        )
    classifier = timm.create_model(arch, pretrained=False).pretrained_cfg.get("classifier", "fc")
    state = timm.models.load_state_dict(str(path))
    key = f"{classifier}.weight"
    if key not in state:
        raise CheckpointError(
            f"{path} has no {key!r}: it is not a timm {arch} checkpoint; pass the matching "
            "-p teacher_path"
        )
    return int(state[key].shape[0])


def load_timm_teacher(
    path, arch: str = "resnet18", num_classes: int | None = None, device="cpu"
) -> TimmTeacher:
    """Load a timm teacher (see :func:`_timm_model` for the formats); ``num_classes`` is checked."""
    n = timm_num_classes(path, arch)
    if num_classes is not None and n != num_classes:
        raise CheckpointError(
            f"teacher {path} has {n} classes, the dataset {num_classes}: pass a teacher "
            "trained on this dataset"
        )
    return TimmTeacher(_timm_model(path, arch, num_classes=n)).to(device).eval()


def train_timm_teacher(
    train_set,
    arch: str = "resnet18",
    *,
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    model_args: dict | None = None,
    device="cpu",
    progress: bool = True,
):
    """Train a timm ``arch`` from scratch on ``train_set`` (any set :func:`dsco.data.batches`
    reads): AdamW, cosine decay, random-resized crops and horizontal flips
    (:func:`dsco.training.random_resized_crop`), cross-entropy. Seeded (weights, order,
    augmentation). Returns ``(TimmTeacher, history)``."""
    import timm
    from torch.utils.data import DataLoader

    from .training import random_resized_crop

    num_classes = len(train_set.classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TimmTeacher(
            timm.create_model(arch, pretrained=False, num_classes=num_classes, **(model_args or {}))
        ).to(device)
        loader = DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=True,
            drop_last=len(train_set) > batch_size,
            generator=torch.Generator().manual_seed(seed),
        )
        hist = _fit(
            model,
            epochs,
            lambda: (
                (random_resized_crop(x.float(), (0.35, 1.0), flip=True), y) for x, y in loader
            ),
            lr,
            weight_decay,
            device,
            f"training teacher {arch}",
            progress,
        )
    hist.update(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        arch=arch,
        model_args=model_args or {},
        optimizer="AdamW + cosine annealing, cross-entropy, random-resized crop (0.35-1) + flip",
    )
    return model.eval(), hist


def _fit(
    model, epochs: int, batches, lr: float, weight_decay: float, device, desc: str, progress: bool
) -> dict:
    """Cross-entropy training with AdamW and cosine learning-rate decay; ``batches()`` yields one
    epoch's (augmented) ``(x, y)`` batches. Returns the history: mean loss and training accuracy per
    epoch, wall time."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    hist = dict(loss=[], train_accuracy=[])
    t0 = time.perf_counter()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress):
        model.train()
        tot, correct, seen = 0.0, 0, 0
        for xb, yb in batches():
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
        sched.step()
        hist["loss"].append(tot / seen)
        hist["train_accuracy"].append(correct / seen)
    hist["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return hist


def save_timm_teacher(model: TimmTeacher, history: dict, folder) -> Path:
    """Save a timm teacher in timm's Hugging Face layout (``config.json`` + ``model.safetensors``,
    ``timm.models.save_for_hf``) plus ``training.json`` (history, SHA-256 of the weights);
    atomic."""
    import json
    import shutil
    import tempfile

    from timm.models import save_for_hf

    from .checkpoints import sha256

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        save_for_hf(
            model.model.cpu(),
            str(tmp),
            safe_serialization=True,
            model_args=history.get("model_args") or None,
        )
        card = {k: v for k, v in history.items() if k not in ("loss", "train_accuracy")}
        card.update(
            final_loss=history["loss"][-1] if history.get("loss") else None,
            loss_curve=[round(v, 5) for v in history.get("loss", [])],
            sha256=sha256(tmp / "model.safetensors"),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        (tmp / "training.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
