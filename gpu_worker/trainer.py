"""The training loop: packed micro-batches, gradient accumulation, checkpoints, exact resume.

A hand-written loop rather than transformers' Trainer: it gives exact control over packing,
masking, the token-weighted loss across accumulation, data position for resume, and stopping
at a step boundary on SIGTERM.
"""
from __future__ import annotations

import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import checkpoints, storage
from . import distributed as _dist
from . import loss as _loss
from .contracts import EVENT_CHECKPOINT_SAVED, EVENT_METRICS
from .data import IGNORE, MicroBatch, PackedDataset
from .failures import NonFiniteLoss
from .faults import FaultInjector
from .loss import DEFAULT_CHUNK_TOKENS


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


def loss_sum(model, batch: MicroBatch, device=None, *, impl: str = "plain",
             chunk_tokens: int = DEFAULT_CHUNK_TOKENS):
    """Summed cross-entropy over the batch's loss tokens (float32), and their count.

    Only the positions that carry a label go through the LM head; `impl` chooses how (see
    gpu_worker.loss: the plain path materialises [loss tokens x vocab] logits, the chunked one
    at most chunk_tokens rows of them).
    """
    t = batch.tensors(device)
    keep = (t["labels"][0] != IGNORE).nonzero().view(-1)
    return _loss.loss_sum(model, t, keep, impl=impl, chunk_tokens=chunk_tokens), int(keep.numel())


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    learning_rate: float
    tokens: int
    loss_tokens: int
    seconds: float
    token_accuracy: float | None = None  # share of loss tokens the model predicted (argmax)


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
    # Test faults on cue (gpu_worker.faults); none by default.
    faults: FaultInjector = field(default_factory=FaultInjector)
    job_id: str = ""
    attempt: int = 0
    # The loss as a module (gpu_worker.loss.loss_module), wrapped in DDP/FSDP on several ranks;
    # None: the plain path on `model` (benchmarks and tests that build a Trainer by hand).
    loss_fn: Any = None
    dist: _dist.Dist = _dist.SINGLE
    # The validation split's micro-batches: evaluated during training (hp.eval_every_steps).
    val_batches: list = field(default_factory=list)

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
        self.best_valid_loss: float | None = None
        self.best_step: int | None = None
        self.evals_without_improvement = 0
        self.early_stopped: dict[str, Any] | None = None
        self._cuda = getattr(self.device, "type", str(self.device)) == "cuda"
        if self.loss_fn is None:
            self.loss_fn = _loss.loss_module(self.model, impl="plain")

    # ---------------------------------------------------------------- state
    def state(self) -> checkpoints.TrainerState:
        return checkpoints.TrainerState(
            global_step=self.global_step, epoch=self.epoch, step_in_epoch=self.step_in_epoch,
            shuffle_seed=self.data.shuffle_seed, total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            rows_per_step=self.data.micro_batch_size * self.data.gradient_accumulation_steps,
            first_loss=self.first_loss, job_id=self.job_id, attempt=self.attempt,
            best_valid_loss=self.best_valid_loss, best_step=self.best_step,
            evals_without_improvement=self.evals_without_improvement,
        )

    def restore(self, state: checkpoints.TrainerState, resumed_uri: str) -> list[str]:
        """Continue from a checkpoint's data position. Returns warnings for the user."""
        warnings = []
        if state.shuffle_seed != self.data.shuffle_seed:
            warnings.append("the checkpoint was written with another seed; the data order differs after resume")
        self.global_step = state.global_step
        self.first_loss = state.first_loss
        self.best_valid_loss, self.best_step = state.best_valid_loss, state.best_step
        self.evals_without_improvement = state.evals_without_improvement
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
        # Token-weighted over the whole optimizer step, whatever the split into micro-batches and
        # ranks: every rank knows every micro-batch's loss-token count (same data, same order).
        n_loss = sum(b.loss_tokens for b in batches)
        mine = _dist.rank_share_padded(batches, self.dist)
        # DDP averages gradients over ranks; scaling by world_size turns that into the sum.
        scale = self.dist.world_size / n_loss
        total = torch.zeros((), dtype=torch.float32, device=self.device)
        correct = torch.zeros((), dtype=torch.float32, device=self.device)
        for i, b in enumerate(mine):
            with _dist.no_sync(self.loss_fn, last=i == len(mine) - 1):
                # None: this rank has fewer micro-batches than another (a short last step): a
                # zero-weight pass keeps every rank in the same collectives.
                s, c = self._micro_loss(b if b is not None else batches[0])
                ((s * scale) if b is not None else (s * 0.0)).backward()
            if b is not None:
                total = total + s.detach()
                correct = correct + (c.float() if c is not None else float("nan"))
        sums = _dist.all_sum(torch.stack([total, correct]), self.dist)
        loss = float(sums[0]) / n_loss
        accuracy = float(sums[1]) / n_loss if math.isfinite(float(sums[1])) else None
        step = self.global_step + 1
        loss = self.faults.loss_at(step, loss)
        if self.first_loss is None:
            self.first_loss = loss
        if not math.isfinite(loss) or loss > max(100.0, 10 * self.first_loss):
            raise NonFiniteLoss(f"loss is {loss} at step {step}", step)
        grad_norm = _dist.clip_grad_norm(self.loss_fn, self.trainable, self.hp.max_grad_norm)
        if not math.isfinite(grad_norm):
            raise NonFiniteLoss(f"gradient norm is {grad_norm} at step {step}", step)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        return StepResult(loss, grad_norm, lr, sum(b.tokens for b in batches), n_loss, seconds, accuracy)

    def _micro_loss(self, batch: MicroBatch):
        t = batch.tensors(self.device)
        keep = (t["labels"][0] != IGNORE).nonzero().view(-1)
        return self.loss_fn(t["input_ids"], t["position_ids"], t["labels"], keep)

    def evaluate_validation(self) -> dict[str, Any]:
        """Validation loss and token accuracy over the whole validation split, token-weighted over
        its assistant tokens (a collective on several ranks: every rank runs it)."""
        import torch

        self.model.eval()
        total = torch.zeros((), dtype=torch.float32, device=self.device)
        correct = torch.zeros((), dtype=torch.float32, device=self.device)
        tokens = torch.zeros((), dtype=torch.float32, device=self.device)
        try:
            with torch.no_grad():
                for b in _dist.rank_share_padded(self.val_batches, self.dist):
                    s, c = self._micro_loss(b if b is not None else self.val_batches[0])
                    if b is not None:
                        total += s
                        correct += c.float() if c is not None else float("nan")
                        tokens += b.loss_tokens
        finally:
            self.model.train()
        sums = _dist.all_sum(torch.stack([total, correct, tokens]), self.dist)
        n = float(sums[2])
        accuracy = float(sums[1]) / n if n and math.isfinite(float(sums[1])) else None
        return {"valid_loss": float(sums[0]) / n if n else None, "valid_mean_token_accuracy": accuracy,
                "valid_tokens": int(n)}

    def _evaluation_due(self, epoch_end: bool) -> bool:
        if not self.val_batches:
            return False
        if self.global_step >= self.total_steps:
            return True
        every = int(getattr(self.hp, "eval_every_steps", 0) or 0)
        if every:
            return self.global_step % every == 0
        return self.global_step % self.checkpoint_every == 0 or epoch_end

    def _early_stopping(self, valid_loss: float) -> bool:
        """Record one evaluation; True when training should stop (patience exhausted)."""
        min_delta = float(getattr(self.hp, "early_stopping_min_delta", 0.0) or 0.0)
        if self.best_valid_loss is None or valid_loss < self.best_valid_loss - min_delta:
            self.best_valid_loss, self.best_step, self.evals_without_improvement = valid_loss, self.global_step, 0
            return False
        self.evals_without_improvement += 1
        patience = int(getattr(self.hp, "early_stopping_patience", 0) or 0)
        return bool(patience) and self.evals_without_improvement >= patience

    def stop_requested(self) -> bool:
        """The stop flag agreed by every rank (a collective on several ranks: call it on all)."""
        return _dist.any_rank(self.stop.is_set(), self.dist)

    # ---------------------------------------------------------------- loop
    def train(self) -> str:
        """Run to the end ('done'), to a requested stop ('stopped', after a checkpoint) or until the
        validation loss stops improving ('early_stopped', with the best adapter restored)."""
        import torch

        while self.global_step < self.total_steps:
            if self.stop_requested():
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
            if r.token_accuracy is not None:
                metrics["train_mean_token_accuracy"] = round(r.token_accuracy, 6)
            stop_early = False
            if self._evaluation_due(epoch_end):
                valid = self.evaluate_validation()
                metrics.update({k: v for k, v in valid.items() if v is not None})
                if valid["valid_loss"] is not None:
                    stop_early = self._early_stopping(valid["valid_loss"])
            if self._cuda:
                metrics["gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            self.history.append(metrics)
            self.emit(EVENT_METRICS, metrics, step=self.global_step)

            self.faults.after_step(self.global_step)

            best_now = self.best_step == self.global_step and metrics.get("valid_loss") is not None
            if self.global_step % self.checkpoint_every == 0 or epoch_end:
                self.save_checkpoint(valid_loss=metrics.get("valid_loss"))
            elif best_now and self.hp.early_stopping_patience:
                # Early stopping returns to the best weights: they must exist as a checkpoint.
                self.save_checkpoint(valid_loss=metrics["valid_loss"])
            if stop_early:
                self.ensure_checkpoint()
                self._restore_best()
                return "early_stopped"
        return "done"

    def _restore_best(self) -> None:
        """Put the best evaluation's adapter back into the model (rank 0 keeps it locally)."""
        best = next((s for s in self.saved if s[0] == self.best_step), None)
        self.early_stopped = {
            "step": self.global_step, "best_step": self.best_step, "best_valid_loss": self.best_valid_loss,
            "patience": self.hp.early_stopping_patience, "min_delta": self.hp.early_stopping_min_delta,
            "restored": False,
        }
        if best is None or best[2] is None or _dist.is_fsdp(self.loss_fn):
            return  # not on this rank (or sharded): the final weights stay, and the summary says so
        checkpoints.load_adapter(best[2], self.model)
        self.early_stopped["restored"] = True

    # ---------------------------------------------------------------- checkpoints
    def ensure_checkpoint(self) -> tuple[int, str] | None:
        """A checkpoint at the current step, unless one exists (or nothing was trained yet)."""
        last = self.last_checkpoint
        if self.global_step and (last is None or last[0] != self.global_step):
            self.save_checkpoint()
        return self.last_checkpoint

    def save_checkpoint(self, valid_loss: float | None = None) -> str:
        """Rank 0 writes the checkpoint (with every rank's RNG state); all ranks record it.
        A collective on several ranks: every rank calls it at the same step."""
        name = f"step-{self.global_step}"
        local = Path(self.work_dir) / "checkpoints" / name
        uri = storage.join(self.output_uri, "checkpoints", name)
        rng_by_rank = _dist.gather_to_main(checkpoints.rng_states(), self.dist)
        optimizer_state = checkpoints.optimizer_state(self.loss_fn, self.optimizer)  # FSDP: collective
        with _dist.full_params(self.loss_fn, self.dist):
            if self.dist.is_main:
                size = checkpoints.write_local(
                    local, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                    state=self.state(), rng_by_rank=rng_by_rank, optimizer_state=optimizer_state,
                )
        if self.dist.is_main:
            checkpoints.upload(local, uri)
        _dist.barrier(self.dist)  # nobody continues (or exits) before the checkpoint is complete
        self.saved.append((self.global_step, uri, local if self.dist.is_main else None))
        if self.dist.is_main:
            self.emit(
                EVENT_CHECKPOINT_SAVED,
                {"step": self.global_step, "uri": uri, "bytes": size, "epoch": self.epoch,
                 **({"valid_loss": valid_loss} if valid_loss is not None else {})},
                step=self.global_step,
            )
            self._prune()
        else:
            del self.saved[:-max(1, self.keep_checkpoints)]
        return uri

    def _prune(self) -> None:
        keep = max(1, self.keep_checkpoints)
        ours = storage.join(self.output_uri, "checkpoints") + "/"
        # With early stopping on, the best evaluation's checkpoint is kept beyond `keep`: the run
        # may return to it.
        protected = self.best_step if self.hp.early_stopping_patience else None
        held = int(any(s[0] == protected for s in self.saved))
        while len([s for s in self.saved if s[0] != protected]) > max(1, keep - held):
            index = next(i for i, s in enumerate(self.saved) if s[0] != protected)
            step, uri, local = self.saved.pop(index)
            if local is not None:
                shutil.rmtree(local, ignore_errors=True)
            if not uri.startswith(ours):  # resumed from another job's checkpoint: not ours to delete
                continue
            try:
                storage.delete_prefix(uri)
            except Exception:  # retention is best effort; never fail training over it
                pass
