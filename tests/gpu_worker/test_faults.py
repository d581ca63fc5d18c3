"""gpu_worker.faults.FaultInjector: each hook fires at its cue and nowhere else; no hooks, no effect."""
import errno
import math
import signal
import time

import pytest

from gpu_worker.faults import HOOK_NAMES, NO_FAULTS, FaultInjector


def test_without_hooks_nothing_happens():
    assert not NO_FAULTS and NO_FAULTS.loss_at(3, 1.25) == 1.25
    NO_FAULTS.after_step(3)
    NO_FAULTS.entering("training")


def test_nan_and_oom_at_their_step_only():
    torch = pytest.importorskip("torch")
    faults = FaultInjector({"nan_at_step": 2, "oom_at_step": 4})
    assert faults.loss_at(1, 0.5) == 0.5 and math.isnan(faults.loss_at(2, 0.5))
    with pytest.raises(torch.OutOfMemoryError, match="oom_at_step=4"):
        faults.loss_at(4, 0.5)


def test_disk_full_at_its_stage_and_sleep_per_step():
    faults = FaultInjector({"disk_full_at_stage": "finalizing", "sleep_per_step_s": 0.05})
    faults.entering("training")
    with pytest.raises(OSError) as info:
        faults.entering("finalizing")
    assert info.value.errno == errno.ENOSPC
    started = time.monotonic()
    faults.after_step(1)
    assert time.monotonic() - started >= 0.05


def test_sigterm_after_its_step():
    got = []
    previous = signal.signal(signal.SIGTERM, lambda *_: got.append("sigterm"))
    try:
        FaultInjector({"sigterm_at_step": 3}).after_step(2)
        assert got == []
        FaultInjector({"sigterm_at_step": 3}).after_step(3)
        assert got == ["sigterm"]
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert set(HOOK_NAMES) == {"oom_at_step", "nan_at_step", "sigterm_at_step", "sleep_per_step_s", "disk_full_at_stage"}
