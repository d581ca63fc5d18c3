"""Checkpoints: everything needed to continue a run exactly, written locally then uploaded.

Layout of `<output_uri>/checkpoints/step-<n>/`:
    adapter/adapter_model.safetensors, adapter/adapter_config.json
    optimizer.pt, scheduler.pt, rng.pt (python, numpy, torch, CUDA generators)
    trainer_state.json (global step, data position: epoch, step in epoch, shuffle seed)
    manifest.json (file list, so a checkpoint can be fetched from URLs), COMPLETE (written last)
A checkpoint without COMPLETE is ignored: it was cut off while being written.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import storage

COMPLETE = "COMPLETE"


@dataclass
class TrainerState:
    global_step: int
    epoch: int  # data position: the next step to run is (epoch, step_in_epoch)
    step_in_epoch: int
    shuffle_seed: int
    total_steps: int
    steps_per_epoch: int
    rows_per_step: int
    first_loss: float | None = None
    job_id: str = ""
    attempt: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainerState":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _rng_states() -> dict[str, Any]:
    import numpy as np
    import torch

    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def write_local(directory: Path, *, model, optimizer, scheduler, state: TrainerState) -> int:
    """Write a complete checkpoint to `directory` (COMPLETE last). Returns its size in bytes."""
    import torch

    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    model.save_pretrained(directory / "adapter", safe_serialization=True)
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    torch.save(scheduler.state_dict(), directory / "scheduler.pt")
    torch.save(_rng_states(), directory / "rng.pt")
    (directory / "trainer_state.json").write_text(json.dumps(asdict(state), indent=1, sort_keys=True))
    (directory / COMPLETE).write_text(str(state.global_step))
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def upload(directory: Path, uri: str) -> None:
    """Upload with COMPLETE last, so a reader never sees a partial checkpoint as complete."""
    storage.upload_dir(directory, uri, last=COMPLETE)


def fetch(uri: str, dest: Path) -> Path:
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    storage.download_dir(uri, dest)
    if not (dest / COMPLETE).is_file():
        raise storage.StorageError(uri, "checkpoint is incomplete (no COMPLETE marker)")
    return dest


def load_into(directory: Path, *, model, optimizer, scheduler) -> tuple[TrainerState, dict[str, Any]]:
    """Load adapter weights, optimizer and scheduler; return the trainer state and the RNG states
    (restore those last, right before training continues)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(directory)
    weights = load_file(str(directory / "adapter" / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"checkpoint adapter does not match the model: unexpected keys {unexpected[:3]}")
    device = next(p.device for p in model.parameters() if p.requires_grad)
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device, weights_only=False))
    scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=False))
    rng = torch.load(directory / "rng.pt", weights_only=False)
    state = TrainerState.from_dict(json.loads((directory / "trainer_state.json").read_text()))
    return state, rng
