"""Checkpoints: a model's weights as safetensors beside a JSON card that holds their SHA-256.

:func:`save_checkpoint` writes both (the card gets the file's name, hash, size and parameter count);
:func:`load_checkpoint` reads the card, checks the hash and loads the weights into the architecture
the card describes, or raises :class:`CheckpointError` with one line naming the fix. The shipped
checkpoints (the backbones of :mod:`dsco.backbones`, the teachers of :mod:`dsco.teacher`) live in
:data:`MODELS_DIR`; :func:`sha256` also digests any file a cache key depends on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from . import ROOT

#: Folder of the shipped checkpoints (safetensors + JSON card).
MODELS_DIR = ROOT / "data" / "models"


class CheckpointError(ValueError):
    """A missing, corrupt (hash mismatch) or misshapen checkpoint; the message names the fix."""


def load_checkpoint(path, model_factory, retrain_hint: str):
    """Read a card, verify the file's SHA-256, build ``model_factory(card)`` and load the weights.

    Raises :class:`CheckpointError` (one line naming the fix) for a missing file or card, a hash
    mismatch, or weights whose names/shapes do not fit the architecture. Returns ``(model, card)``.
    """
    from safetensors.torch import load_file

    path = Path(path)
    card_path = path.with_suffix(".json")
    for p in (path, card_path):
        if not p.is_file():
            raise CheckpointError(
                f"missing {p}: restore data/models/ from the repository or {retrain_hint}"
            )
    card = json.loads(card_path.read_text())
    actual = sha256(path)
    if actual != card.get("sha256"):
        raise CheckpointError(
            f"SHA-256 of {path.name} is {actual[:16]}… but {card_path.name} says "
            f"{str(card.get('sha256'))[:16]}…: the file is corrupt or was replaced; "
            f"restore it from the repository or {retrain_hint}"
        )
    model = model_factory(card)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise CheckpointError(
            f"{path.name} does not fit the architecture in {card_path.name} ({first}): "
            f"restore the matching pair of files or {retrain_hint}"
        ) from None
    return model.eval(), card


def save_checkpoint(model: torch.nn.Module, path, card: dict) -> dict:
    """Write ``model``'s weights to ``path`` (safetensors) and its card to
    ``path.with_suffix('.json')``.

    The card gets ``file``, ``sha256``, ``bytes`` and ``num_parameters``; returns it.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    card = dict(
        card,
        file=path.name,
        sha256=sha256(path),
        bytes=path.stat().st_size,
        num_parameters=sum(v.numel() for v in state.values()),
    )
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    return card


def sha256(path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
