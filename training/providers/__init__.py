"""GPU providers, chosen by the GPU_PROVIDER setting the way Django chooses an e-mail backend.

`get_provider()` is the only place that reads Django settings; providers take their configuration
as keyword arguments. Instances are cached per configuration, so a test that overrides settings
gets a new provider and the fake keeps its recorded calls between two `get_provider()` calls.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from .base import (
    POD_EXITED,
    POD_RUNNING,
    POD_STARTING,
    POD_STATES,
    POD_TERMINATED,
    GpuProvider,
    NoCapacityError,
    PodInfo,
    PodRequest,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailableError,
)

__all__ = [
    "POD_EXITED", "POD_RUNNING", "POD_STARTING", "POD_STATES", "POD_TERMINATED",
    "GpuProvider", "NoCapacityError", "PodInfo", "PodRequest", "ProviderAuthError", "ProviderError",
    "ProviderUnavailableError", "PROVIDER_NAMES", "get_provider", "clear_provider_cache",
]

PROVIDER_NAMES = ("local", "runpod", "fake")
DEFAULT_POD_NAME_PREFIX = "brightrun"
DEFAULT_LOCAL_PODS_DIR = Path(__file__).resolve().parents[2] / "var" / "pods"

_cache: dict[tuple, GpuProvider] = {}
_cache_lock = threading.Lock()


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def get_provider(name: str | None = None, *, settings: Any = None) -> GpuProvider:
    """The configured provider. `name` overrides GPU_PROVIDER (e.g. `manage.py train --provider`);
    `settings` replaces django.conf.settings (any object with the attributes, for tests)."""
    if settings is None:
        from django.conf import settings  # noqa: PLC0415

    kind = (name or getattr(settings, "GPU_PROVIDER", "local") or "local").lower()
    if kind == "local":
        from .local import LocalProvider  # noqa: PLC0415

        options = {
            "pods_dir": str(getattr(settings, "LOCAL_PODS_DIR", None) or DEFAULT_LOCAL_PODS_DIR),
            "command": list(getattr(settings, "LOCAL_WORKER_COMMAND", None)
                            or [sys.executable, "-m", "gpu_worker", "run"]),
            "extra_env": dict(getattr(settings, "LOCAL_POD_EXTRA_ENV", None) or {}),
            "rate_per_hour": float(getattr(settings, "LOCAL_POD_RATE_PER_HOUR", 0) or 0),
        }
        factory = LocalProvider
    elif kind == "runpod":
        from .runpod import RunPodProvider  # noqa: PLC0415

        options = {
            "api_key": getattr(settings, "RUNPOD_API_KEY", "") or "",
            "api_base_url": getattr(settings, "RUNPOD_API_BASE_URL", None) or None,
            "image": getattr(settings, "RUNPOD_IMAGE", "") or "",
        }
        factory = RunPodProvider
    elif kind == "fake":
        from .fake import FakeProvider  # noqa: PLC0415

        options = {}
        factory = FakeProvider
    else:
        raise ProviderError(
            f"GPU_PROVIDER={kind!r} is not a provider",
            suggestion=f"set GPU_PROVIDER to one of: {', '.join(PROVIDER_NAMES)}",
        )

    key = (kind, _freeze(options))
    with _cache_lock:
        provider = _cache.get(key)
        if provider is None:
            provider = _cache[key] = factory(**options)
        return provider


def pod_name_prefix(*, settings: Any = None) -> str:
    """`<prefix>` of every pod name `<prefix>-<job uuid>-<attempt>` (POD_NAME_PREFIX)."""
    if settings is None:
        from django.conf import settings  # noqa: PLC0415
    return getattr(settings, "POD_NAME_PREFIX", None) or DEFAULT_POD_NAME_PREFIX


def pod_name(job_id: Any, attempt: int, *, prefix: str | None = None, settings: Any = None) -> str:
    """The pod name of one attempt of one job."""
    return f"{prefix or pod_name_prefix(settings=settings)}-{job_id}-{attempt}"


def clear_provider_cache() -> None:
    with _cache_lock:
        _cache.clear()
