"""The training loop: packed micro-batches, gradient accumulation, checkpoints, exact resume.

A hand-written loop rather than transformers' Trainer: it gives exact control over packing,
masking, the token-weighted loss across accumulation, data position for resume, and stopping
at a step boundary on SIGTERM.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import checkpoints, storage
from .contracts import EVENT_CHECKPOINT_SAVED, EVENT_METRICS
from .data import IGNORE, MicroBatch, PackedDataset
from .failures import NonFiniteLoss


class StopFlag:
    """Set from a signal handler or a timer; read by the loop at step boundaries."""

    def __init__(self):
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def loss_sum(model, batch: MicroBatch, device=None):
    """Summed cross-entropy over the batch's loss tokens (float32), and their count.

    Only the positions that carry a label go through the LM head (`logits_to_keep` with indices),
    which saves the [tokens x vocab] logits of every context token.
    """
    import torch
    import torch.nn.functional as F

    t = batch.tensors(device)
    labels = t["labels"][0]
    keep = (labels != IGNORE).nonzero().view(-1)
    out = model(
        input_ids=t["input_ids"],
        position_ids=t["position_ids"],
        attention_mask=None,  # packed: transformers derives block-diagonal attention from position_ids
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = out.logits[0]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the loss is always summed in at least float32
    return F.cross_entropy(logits, labels[keep], reduction="sum"), int(keep.numel())


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    learning_rate: float
    tokens: int
    loss_tokens: int
    seconds: float


@dataclass
class Trainer:
    model: Any
    optimizer: Any
    scheduler: Any
    data: PackedDataset
    hp: Any
    device: Any
    emit: Callable[..., Any]
    stop: StopFlag
    work_dir: Path
    output_uri: str
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    hooks: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""
    attempt: int = 0

    def __post_init__(self):
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = max(1, math.ceil(self.hp.num_epochs * self.steps_per_epoch))
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.first_loss: float | None = None
        self.history: list[dict[str, Any]] = []
        self.saved: list[tuple[int, str, Path]] = []  # (step, uri, local dir), oldest first
        self.train_tokens = 0
        self.train_seconds = 0.0
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self._cuda = getattr(self.device, "type", str(self.device)) == "cuda"

    # ---------------------------------------------------------------- state
    def state(self) -> checkpoints.TrainerState:
        return checkpoints.TrainerState(
            global_step=self.global_step, epoch=self.epoch, step_in_epoch=self.step_in_epoch,
            shuffle_seed=self.data.shuffle_seed, total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            rows_per_step=self.data.micro_batch_size * self.data.gradient_accumulation_steps,
            first_loss=self.first_loss, job_id=self.job_id, attempt=self.attempt,
        )

    def restore(self, state: checkpoints.TrainerState, resumed_uri: str) -> list[str]:
        """Continue from a checkpoint's data position. Returns warnings for the user."""
        warnings = []
        if state.shuffle_seed != self.data.shuffle_seed:
            warnings.append("the checkpoint was written with another seed; the data order differs after resume")
        self.global_step = state.global_step
        self.first_loss = state.first_loss
        rows_per_step = self.data.micro_batch_size * self.data.gradient_accumulation_steps
        if state.rows_per_step == rows_per_step and state.steps_per_epoch == self.steps_per_epoch:
            self.epoch, self.step_in_epoch = state.epoch, state.step_in_epoch
        else:
            # The effective batch changed (e.g. a retry with other settings): keep the epoch and
            # continue at the first step that does not repeat rows already trained.
            rows_done = state.step_in_epoch * state.rows_per_step
            self.epoch = state.epoch
            self.step_in_epoch = min(self.steps_per_epoch, -(-rows_done // rows_per_step))
            warnings.append("the effective batch size differs from the checkpoint's; resuming at the nearest step")
        if self.total_steps != state.total_steps:
            warnings.append(f"total steps changed from {state.total_steps} to {self.total_steps} since the checkpoint")
        self.saved.append((state.global_step, resumed_uri, None))
        return warnings

    @property
    def last_checkpoint(self) -> tuple[int, str] | None:
        if not self.saved:
            return None
        step, uri, _ = self.saved[-1]
        return step, uri

    # ---------------------------------------------------------------- one optimizer step
    def optimizer_step(self, batches: list[MicroBatch]) -> StepResult:
        import torch

        started = time.perf_counter()
        self.model.train()
        n_loss = sum(b.loss_tokens for b in batches)
        total = None
        for b in batches:
            s, _ = loss_sum(self.model, b, self.device)
            # Token-weighted over the whole optimizer step, whatever the split into micro-batches.
            (s / n_loss).backward()
            total = s.detach() if total is None else total + s.detach()
        loss = float(total) / n_loss
        step = self.global_step + 1
        if self.hooks.get("nan_at_step") == step:
            loss = float("nan")
        if self.hooks.get("oom_at_step") == step:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (test hook oom_at_step={step})"
            )
        if self.first_loss is None:
            self.first_loss = loss
        if not math.isfinite(loss) or loss > max(100.0, 10 * self.first_loss):
            raise NonFiniteLoss(f"loss is {loss} at step {step}", step)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, self.hp.max_grad_norm))
        if not math.isfinite(grad_norm):
            raise NonFiniteLoss(f"gradient norm is {grad_norm} at step {step}", step)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        return StepResult(loss, grad_norm, lr, sum(b.tokens for b in batches), n_loss, seconds)

    # ---------------------------------------------------------------- loop
    def train(self) -> str:
        """Run to the end ('done') or to a requested stop ('stopped', after a checkpoint)."""
        import torch

        while self.global_step < self.total_steps:
            if self.stop.is_set():
                self.ensure_checkpoint()
                return "stopped"
            batches = self.data.step_batches(self.epoch, self.step_in_epoch)
            r = self.optimizer_step(batches)
            self.global_step += 1
            self.step_in_epoch += 1
            self.train_tokens += r.tokens
            self.train_seconds += r.seconds
            epoch_end = self.step_in_epoch >= self.steps_per_epoch
            progress = self.epoch + self.step_in_epoch / self.steps_per_epoch
            if epoch_end:
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
            metrics = {
                "step": self.global_step,
                "total_steps": self.total_steps,
                "epoch": round(progress, 4),
                "loss": r.loss,
                "learning_rate": r.learning_rate,
                "grad_norm": r.grad_norm,
                "tokens": r.tokens,
                "loss_tokens": r.loss_tokens,
                "tokens_per_s": round(r.tokens / r.seconds, 1) if r.seconds else None,
                "eta_s": round(self.train_seconds / self.global_step * (self.total_steps - self.global_step), 1),
            }
            if self._cuda:
                metrics["gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            self.history.append(metrics)
            self.emit(EVENT_METRICS, metrics, step=self.global_step)

            if self.hooks.get("sigterm_at_step") == self.global_step:
                os.kill(os.getpid(), signal.SIGTERM)
            if self.hooks.get("sleep_per_step_s"):
                time.sleep(float(self.hooks["sleep_per_step_s"]))

            if self.global_step % self.checkpoint_every == 0 or epoch_end:
                self.save_checkpoint()
        return "done"

    # ---------------------------------------------------------------- checkpoints
    def ensure_checkpoint(self) -> tuple[int, str] | None:
        """A checkpoint at the current step, unless one exists (or nothing was trained yet)."""
        last = self.last_checkpoint
        if self.global_step and (last is None or last[0] != self.global_step):
            self.save_checkpoint()
        return self.last_checkpoint

    def save_checkpoint(self) -> str:
        name = f"step-{self.global_step}"
        local = Path(self.work_dir) / "checkpoints" / name
        size = checkpoints.write_local(
            local, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, state=self.state()
        )
        uri = storage.join(self.output_uri, "checkpoints", name)
        checkpoints.upload(local, uri)
        self.saved.append((self.global_step, uri, local))
        self.emit(
            EVENT_CHECKPOINT_SAVED,
            {"step": self.global_step, "uri": uri, "bytes": size, "epoch": self.epoch},
            step=self.global_step,
        )
        self._prune()
        return uri

    def _prune(self) -> None:
        keep = max(1, self.keep_checkpoints)
        ours = storage.join(self.output_uri, "checkpoints") + "/"
        while len(self.saved) > keep:
            step, uri, local = self.saved.pop(0)
            if local is not None:
                shutil.rmtree(local, ignore_errors=True)
            if not uri.startswith(ours):  # resumed from another job's checkpoint: not ours to delete
                continue
            try:
                storage.delete_prefix(uri)
            except Exception:  # retention is best effort; never fail training over it
                pass
