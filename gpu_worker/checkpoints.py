"""Checkpoints: everything needed to continue a run exactly, written locally then uploaded.

Layout of `<output_uri>/checkpoints/step-<n>/`:
    adapter/adapter_model.safetensors, adapter/adapter_config.json
    optimizer.pt, scheduler.pt, rng.pt (python, numpy, torch, CUDA generators)
    rng-rank<r>.pt for ranks 1.. of a multi-GPU run (rank 0's is rng.pt)
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
    # Early stopping's memory, so a resumed run counts patience on (absent in older checkpoints).
    best_valid_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainerState":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def rng_states() -> dict[str, Any]:
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


def optimizer_state(wrapped, optimizer) -> dict[str, Any]:
    """The optimizer's state dict; under FSDP the full one, gathered (a collective: all ranks)."""
    from .distributed import is_fsdp

    if is_fsdp(wrapped):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return {"fsdp": True, "state": FSDP.optim_state_dict(wrapped, optimizer)}
    return optimizer.state_dict()


def write_local(directory: Path, *, model, optimizer, scheduler, state: TrainerState,
                rng_by_rank: list[dict[str, Any]] | None = None,
                optimizer_state: dict[str, Any] | None = None) -> int:
    """Write a complete checkpoint to `directory` (COMPLETE last). Returns its size in bytes."""
    import torch

    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    model.save_pretrained(directory / "adapter", safe_serialization=True)
    torch.save(optimizer.state_dict() if optimizer_state is None else optimizer_state, directory / "optimizer.pt")
    torch.save(scheduler.state_dict(), directory / "scheduler.pt")
    rng_by_rank = rng_by_rank or [rng_states()]
    torch.save(rng_by_rank[0], directory / "rng.pt")
    for rank, states in enumerate(rng_by_rank[1:], start=1):
        torch.save(states, directory / f"rng-rank{rank}.pt")
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


def load_adapter(directory: Path, model) -> None:
    """The checkpoint's adapter weights into `model` (before any DDP/FSDP wrapping)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(directory) / "adapter" / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"checkpoint adapter does not match the model: unexpected keys {unexpected[:3]}")


def load_training_state(directory: Path, *, model, optimizer, scheduler, wrapped=None,
                        rank: int = 0) -> tuple[TrainerState, dict[str, Any], list[str]]:
    """Optimizer, scheduler, trainer state and this rank's RNG states (restore those last, right
    before training continues), plus warnings. Works for any number of ranks: the optimizer state
    is the same on every rank (DDP) or saved whole (FSDP)."""
    import torch

    from .distributed import is_fsdp

    directory = Path(directory)
    warnings: list[str] = []
    device = next(p.device for p in model.parameters() if p.requires_grad)
    saved = torch.load(directory / "optimizer.pt", map_location=device, weights_only=False)
    if isinstance(saved, dict) and saved.get("fsdp"):
        if not is_fsdp(wrapped):
            raise ValueError("this checkpoint was written under FSDP; resume it with parallel='fsdp'")
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        saved = FSDP.optim_state_dict_to_load(wrapped, optimizer, saved["state"])
    elif is_fsdp(wrapped):
        raise ValueError("this checkpoint was not written under FSDP; resume it with parallel='ddp' or one GPU")
    optimizer.load_state_dict(saved)
    scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=False))
    mine = directory / (f"rng-rank{rank}.pt" if rank else "rng.pt")
    if not mine.is_file():
        # More ranks than the run that wrote it: dropout draws differ from an uninterrupted run.
        warnings.append(f"the checkpoint has no random state for rank {rank}; using rank 0's")
        mine = directory / "rng.pt"
    rng = torch.load(mine, weights_only=False)
    state = TrainerState.from_dict(json.loads((directory / "trainer_state.json").read_text()))
    return state, rng, warnings
