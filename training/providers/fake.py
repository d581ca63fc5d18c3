"""An in-memory provider that records every call, for unit tests of services and tasks.

    provider = FakeProvider()
    provider.fail_next("launch", NoCapacityError("no 4090s", suggestion="wait"))
    provider.set_state(pod_id, POD_EXITED, exit_code=0)
    provider.interrupt(pod_id)          # a spot eviction
    assert [c.method for c in provider.calls] == ["launch", "launch", "status"]

Pods live in this object only: it cannot be shared between processes (use `local` for that).
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from .base import (
    POD_RUNNING,
    POD_STARTING,
    POD_TERMINATED,
    GpuProvider,
    PodInfo,
    PodRequest,
    ProviderError,
    check_pod_name,
)


@dataclass(frozen=True)
class RecordedCall:
    method: str
    args: tuple[Any, ...] = ()
    at: float = field(default_factory=time.time)


class FakeProvider(GpuProvider):
    name = "fake"

    def __init__(self, *, start_state: str = POD_RUNNING, cost_per_hr: float = 0.5):
        self.start_state = start_state
        self.cost_per_hr = cost_per_hr
        self.calls: list[RecordedCall] = []
        self.requests: dict[str, PodRequest] = {}  # pod id -> the request that launched it
        self._pods: dict[str, PodInfo] = {}
        self._failures: dict[str, list[ProviderError | Exception]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- test controls ------------------------------------------------------------------------

    def fail_next(self, method: str, error: Exception, *, times: int = 1) -> None:
        """The next `times` calls of `method` ("launch", "status", "terminate", "list") raise `error`."""
        with self._lock:
            self._failures.setdefault(method, []).extend([error] * times)

    def set_state(self, pod_id: str, state: str, *, exit_code: int | None = None, interrupted: bool = False) -> None:
        with self._lock:
            self._pods[pod_id] = replace(self._pods[pod_id], state=state, exit_code=exit_code, interrupted=interrupted)

    def interrupt(self, pod_id: str) -> None:
        """A spot eviction: the pod is stopped by the cloud; it still exists until terminated."""
        self.set_state(pod_id, POD_TERMINATED, exit_code=75, interrupted=True)

    def vanish(self, pod_id: str) -> None:
        """The provider forgets the pod (status None), as RunPod does after a terminate."""
        with self._lock:
            self._pods.pop(pod_id, None)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self._pods.clear()
            self._failures.clear()

    def methods_called(self) -> list[str]:
        return [c.method for c in self.calls]

    @property
    def pods(self) -> dict[str, PodInfo]:
        with self._lock:
            return dict(self._pods)

    def _enter(self, method: str, *args: Any) -> None:
        with self._lock:
            self.calls.append(RecordedCall(method, args))
            queue = self._failures.get(method)
            if queue:
                raise queue.pop(0)

    # -- GpuProvider -------------------------------------------------------------------------

    def launch(self, request: PodRequest) -> PodInfo:
        self._enter("launch", request)
        check_pod_name(request.name)
        with self._lock:
            for pod in self._pods.values():
                if pod.name == request.name:
                    return pod
            pod_id = f"fake-{next(self._ids)}"
            pod = PodInfo(
                pod_id=pod_id,
                name=request.name,
                state=self.start_state if self.start_state in (POD_RUNNING, POD_STARTING) else POD_RUNNING,
                gpu_type_id=request.gpu_type_id,
                cost_per_hr=(request.bid_per_gpu if request.spot and request.bid_per_gpu else self.cost_per_hr)
                * request.gpu_count,
                spot=request.spot,
                started_at=time.time(),
            )
            self._pods[pod_id] = pod
            self.requests[pod_id] = request
            return pod

    def status(self, pod_id: str) -> PodInfo | None:
        self._enter("status", pod_id)
        with self._lock:
            return self._pods.get(pod_id)

    def terminate(self, pod_id: str) -> bool:
        self._enter("terminate", pod_id)
        with self._lock:
            self._pods.pop(pod_id, None)
        return True

    def list(self, name_prefix: str) -> list[PodInfo]:
        self._enter("list", name_prefix)
        with self._lock:
            return [p for p in self._pods.values() if p.name.startswith(name_prefix)]
