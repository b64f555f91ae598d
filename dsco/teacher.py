"""The teacher classifier for ``digits`` (SPEC §2): it plays the pretrained ResNet-18 of the paper.

The paper uses a pretrained classifier twice: to relabel synthetic samples with soft labels
(App. D, KL to the teacher at temperature 20) and, in Doping (§4.2, Eq. 31), to give the class
``c_T`` a real sample is compared against. At the embedded scale the teacher is a small CNN
(three 3×3 conv layers, ~93k parameters) trained on the full digits training split and shipped as
``data/models/digits_teacher.safetensors`` with a JSON card (SHA-256, training parameters, test
accuracy). Entry points: :func:`train_teacher`, :func:`load_teacher`, :func:`predict_proba`.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .backbones import MODELS_DIR, load_checkpoint, save_checkpoint

TEACHER_WEIGHTS = MODELS_DIR / "digits_teacher.safetensors"
#: Architecture of the digits teacher (input 1×8×8 in [-1, 1]).
TEACHER_CONFIG = dict(in_channels=1, widths=(32, 64, 128), num_classes=10)
_RETRAIN = "retrain with notebooks/00_train_backbone_teacher.ipynb (retrain=True)"


def build_teacher(config: dict | None = None) -> nn.Sequential:
    """conv3×3(w1)–ReLU–conv3×3(w2)–ReLU–maxpool2–conv3×3(w3)–ReLU–global avg pool–linear."""
    cfg = dict(TEACHER_CONFIG, **(config or {}))
    w1, w2, w3 = cfg["widths"]
    return nn.Sequential(
        nn.Conv2d(cfg["in_channels"], w1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(w1, w2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w2, w3, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w3, cfg["num_classes"]),
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


def train_teacher(train_set, epochs: int = 40, batch_size: int = 64, lr: float = 2e-3,
                  weight_decay: float = 1e-4, shift: int = 1, seed: int = 0, config: dict | None = None,
                  device="cpu", progress: bool = True):
    """Train the teacher on ``train_set`` (``.x`` N×1×8×8 in [-1, 1], ``.y`` labels).

    Cross-entropy, AdamW, cosine learning-rate decay, random ±``shift``-pixel translations. All
    random draws come from one CPU generator seeded with ``seed``. Returns ``(model, history)``
    with the mean loss and training accuracy per epoch and the wall time.
    """
    x, y = train_set.x.float(), train_set.y.long()
    cfg = dict(TEACHER_CONFIG, **(config or {}))
    if x.dim() != 4 or x.shape[1] != cfg["in_channels"]:
        raise ValueError(f"train_set.x has shape {tuple(x.shape)}: expected N×{cfg['in_channels']}×H×W")
    if int(y.min()) < 0 or int(y.max()) >= cfg["num_classes"]:
        raise ValueError(f"labels must be in 0..{cfg['num_classes'] - 1}")
    g = torch.Generator("cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_teacher(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    hist = dict(loss=[], train_accuracy=[])
    t0 = time.perf_counter()
    for _ in tqdm(range(epochs), desc="training teacher", disable=not progress):
        model.train()
        perm, tot, correct = torch.randperm(len(x), generator=g), 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = _shift(x[idx], shift, g).to(device), y[idx].to(device)
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        sched.step()
        hist["loss"].append(tot / len(x))
        hist["train_accuracy"].append(correct / len(x))
    hist.update(wall_time_s=round(time.perf_counter() - t0, 1), epochs=epochs, batch_size=batch_size,
                lr=lr, weight_decay=weight_decay, shift=shift, seed=seed, config=cfg,
                optimizer="AdamW + cosine annealing, cross-entropy, random ±shift translation")
    return model.eval(), hist


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, temperature: float = 1.0,
                  batch_size: int = 1024) -> torch.Tensor:
    """Class probabilities ``softmax(logits / temperature)`` (N×num_classes, on the CPU).

    ``temperature`` > 1 softens them (the soft-label protocol uses 20, App. D).
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature}: use a positive number (1 = plain softmax)")
    model.eval()
    dev = next(model.parameters()).device
    logits = torch.cat([model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    return torch.softmax(logits / temperature, dim=1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` whose most probable class is ``y``."""
    return float((predict_proba(model, x).argmax(1) == y.cpu()).float().mean())


def save_teacher(model: nn.Module, history: dict, path=None, data_split: dict | None = None,
                 test_accuracy: float | None = None) -> dict:
    """Save the teacher as safetensors + JSON card (default: the shipped location)."""
    from importlib import metadata

    card = dict(model="digits-teacher", architecture="dsco.teacher.build_teacher",
                config={k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in history.get("config", TEACHER_CONFIG).items()},
                training={k: v for k, v in history.items() if k not in ("loss", "train_accuracy", "config")},
                final_loss=history["loss"][-1] if history.get("loss") else None,
                loss_curve=[round(v, 5) for v in history.get("loss", [])],
                test_accuracy=test_accuracy, data_split=data_split,
                versions={p: metadata.version(p) for p in ("torch", "safetensors")},
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return save_checkpoint(model, Path(path) if path else TEACHER_WEIGHTS, card)


def load_teacher(path=None, device="cpu") -> nn.Module:
    """Load the shipped teacher (or the one at ``path``), verifying its SHA-256 against the card."""
    model, _ = load_checkpoint(path or TEACHER_WEIGHTS, lambda card: build_teacher(card["config"]), _RETRAIN)
    return model.to(device).eval()
