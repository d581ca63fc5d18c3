"""The GPU provider interface: launch, status, terminate, list.

Chosen by the GPU_PROVIDER setting the way Django chooses an e-mail backend
(`get_provider()` in `__init__`). Frozen dataclasses in and out, so a provider never sees a model
instance and the same calls work from a Celery task, a management command or a test.
"""
from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


# Pod states as every provider reports them.
POD_STARTING = "starting"
POD_RUNNING = "running"
POD_EXITED = "exited"        # the process ended by itself (see exit_code)
POD_TERMINATED = "terminated"  # stopped by us or by the cloud (spot eviction)
POD_STATES = (POD_STARTING, POD_RUNNING, POD_EXITED, POD_TERMINATED)

# Pod names travel into GraphQL text unescaped (RunPod SDK) and into paths (local provider),
# so they are restricted to a safe alphabet.
POD_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_pod_name(name: str) -> str:
    if not isinstance(name, str) or not POD_NAME_RE.match(name):
        raise ProviderError(
            f"pod name {name!r} is not allowed",
            suggestion="use letters, digits, '.', '_' and '-' only (at most 128), "
            "as in '<prefix>-<job uuid>-<attempt>'",
        )
    return name


@dataclass(frozen=True)
class PodRequest:
    """What to launch. `name` is `<prefix>-<job uuid>-<attempt>` and is recorded before launch."""

    name: str
    gpu_type_id: str
    env: dict[str, str] = field(repr=False)
    cloud_type: str = "SECURE"  # SECURE | COMMUNITY
    spot: bool = False
    bid_per_gpu: float | None = None  # $/h, spot only
    gpu_count: int = 1
    image: str = ""
    container_disk_gb: int = 40
    volume_gb: int = 0


@dataclass(frozen=True)
class PodInfo:
    pod_id: str
    name: str
    state: str
    gpu_type_id: str = ""
    cost_per_hr: float | None = None
    spot: bool = False
    exit_code: int | None = None
    started_at: float | None = None  # unix seconds, when the provider says the pod started
    # unix seconds, when the provider says the pod stopped (evicted, exited): it bills no more.
    ended_at: float | None = None
    # seconds the provider has billed this pod so far (RunPod's runtime.uptimeInSeconds)
    uptime_s: float | None = None
    # True when the cloud stopped the pod (spot eviction, local `interrupt()`), not us.
    interrupted: bool = False
    # What the provider said about the pod's last change, for logs and the admin (free text).
    detail: str = ""


def describe_request(request: PodRequest) -> str:
    """`NVIDIA A40 (COMMUNITY, spot)`: how a launch candidate is named in messages."""
    return f"{request.gpu_type_id} ({request.cloud_type}{', spot' if request.spot else ''})"


class ProviderError(Exception):
    """A provider call failed. `transient` errors may be retried with backoff."""

    error_class = "provider_error"
    transient = False

    def __init__(self, message: str, *, suggestion: str = ""):
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion

    def __str__(self) -> str:
        return f"{self.message} ({self.suggestion})" if self.suggestion else self.message


class NoCapacityError(ProviderError):
    error_class = "no_capacity"
    transient = True


class ProviderAuthError(ProviderError):
    error_class = "provider_auth"


class ProviderUnavailableError(ProviderError):
    """5xx, timeouts, connection failures: the provider may answer on the next try."""

    error_class = "provider_unavailable"
    transient = True


class GpuProvider(abc.ABC):
    """A place where pods run. Implementations must be safe to call from several processes."""

    name: str = "abstract"

    @abc.abstractmethod
    def launch(self, request: PodRequest) -> PodInfo:
        """Start a pod. Raise ProviderError subclasses on failure."""

    @abc.abstractmethod
    def status(self, pod_id: str) -> PodInfo | None:
        """Current state, or None when the provider no longer knows the pod."""

    @abc.abstractmethod
    def terminate(self, pod_id: str) -> bool:
        """Stop and remove the pod. Return True once the provider confirms it is gone.
        Terminating a pod that does not exist returns True."""

    def stop(self, pod_id: str, *, grace_s: float) -> bool:
        """Stop at the worker's next step boundary: SIGTERM (it checkpoints and reports
        `interrupted`), a hard kill only after `grace_s`. Providers whose API has no grace of
        its own terminate."""
        return self.terminate(pod_id)

    @abc.abstractmethod
    def list(self, name_prefix: str) -> list[PodInfo]:
        """Every live pod whose name starts with `name_prefix`."""

    def find_by_name(self, name: str) -> PodInfo | None:
        for pod in self.list(name):
            if pod.name == name:
                return pod
        return None

    def launch_with_fallback(
        self, request: PodRequest, alternatives: Iterable[Mapping[str, Any]] = (),
        on_refused: Callable[[PodRequest, NoCapacityError], None] | None = None,
    ) -> tuple[PodInfo, PodRequest]:
        """Launch `request`; on NoCapacityError try each alternative in order.

        An alternative is a mapping of PodRequest fields to change, e.g.
        `{"cloud_type": "COMMUNITY"}` or `{"gpu_type_id": "NVIDIA A40"}`. Returns the pod and the
        request that got it, so the caller can record the GPU type and cloud it really runs on.
        `on_refused(candidate, error)` is called for each refusal (to record it). Any error other
        than NoCapacityError stops the search at once; when all are refused the NoCapacityError
        names every one that was tried.
        """
        candidates = [request] + [dataclasses.replace(request, **dict(alt)) for alt in alternatives]
        tried: list[str] = []
        last: NoCapacityError | None = None
        for candidate in candidates:
            try:
                return self.launch(candidate), candidate
            except NoCapacityError as exc:
                tried.append(describe_request(candidate))
                last = exc
                if on_refused is not None:
                    on_refused(candidate, exc)
        assert last is not None
        raise NoCapacityError(
            f"no capacity for any of: {'; '.join(tried)}",
            suggestion=last.suggestion or "wait and retry, or allow more GPU types or clouds",
        )
