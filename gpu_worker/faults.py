"""Fault injection for tests: the failures a real pod meets (OOM, a NaN loss, SIGTERM, a full
disk, a slow step), on cue, from the job spec's `test_hooks`.

Honoured only when the pod runs with BRIGHTRUN_ALLOW_TEST_HOOKS=1 (the runner passes an empty
dict otherwise, and the control plane refuses test hooks unless ALLOW_TEST_HOOKS). The training
loop and the stage runner call the few points below; each is a no-op without its hook.

| hook | effect |
|---|---|
| `oom_at_step: N` | step N raises torch's OutOfMemoryError (classified `cuda_oom`) |
| `nan_at_step: N` | step N's loss is NaN (classified `nan_loss`) |
| `sigterm_at_step: N` | the pod sends itself SIGTERM after step N (as a spot eviction does) |
| `sleep_per_step_s: S` | every step takes S seconds more (for stop/heartbeat timing tests) |
| `disk_full_at_stage: NAME` | entering stage NAME raises ENOSPC |
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

HOOK_NAMES = ("oom_at_step", "nan_at_step", "sigterm_at_step", "sleep_per_step_s", "disk_full_at_stage")


@dataclass
class FaultInjector:
    hooks: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def loss_at(self, step: int, loss: float) -> float:
        """The loss of optimizer step `step` (1-based) as the loop goes on with it."""
        if self.hooks.get("nan_at_step") == step:
            loss = float("nan")
        if self.hooks.get("oom_at_step") == step:
            import torch  # noqa: PLC0415 - only where a step runs

            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (test hook oom_at_step={step})")
        return loss

    def after_step(self, step: int) -> None:
        """Called once step `step` is done and reported."""
        if self.hooks.get("sigterm_at_step") == step:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.hooks.get("sleep_per_step_s"):
            time.sleep(float(self.hooks["sleep_per_step_s"]))

    def entering(self, stage: str) -> None:
        if self.hooks.get("disk_full_at_stage") == stage:
            raise OSError(errno.ENOSPC, f"No space left on device (test hook disk_full_at_stage={stage})")


NO_FAULTS = FaultInjector()
