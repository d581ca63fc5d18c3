"""RunPod through the official `runpod` SDK (1.12).

On-demand pods use `runpod.create_pod`; spot pods use the `podRentInterruptable` mutation through
the SDK's own GraphQL helper, since `create_pod` has no spot option. What the SDK does, and what
this module does about it (docs/providers.md has the long version):

- It keeps the API key in the global `runpod.api_key` (read from ~/.runpod/config.toml at import)
  and reads `RUNPOD_API_BASE_URL` from the environment on every call. Each call here sets both
  under one process-wide lock and puts them back afterwards, so two providers with different keys
  or URLs in one process never see each other's, and a developer's own config is never used.
- It pastes values into the GraphQL text unescaped: names, image, env keys and values are checked
  here, and the job spec travels base64-encoded.
- It maps only HTTP 401 to its own error; a 5xx page surfaces as a `requests` JSON decode error,
  a refused connection as a raw `requests` exception, and GraphQL errors (no capacity...) as
  `QueryError` with only the message text. `_translate` turns all of these into ProviderError
  subclasses. The HTTP status is taken from the response the SDK saw (see `_Transport`).
- It has a fixed 30 s timeout and no retries. The timeout is set here (`timeout_s`); retrying is
  the caller's job (Celery, with backoff, for `transient` errors only).
- `terminate_pod` returns nothing, so `terminate` polls `get_pod` until it answers None.
"""
from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime
from typing import Any, Callable

import requests

from .base import (
    POD_EXITED,
    POD_RUNNING,
    POD_STARTING,
    POD_TERMINATED,
    GpuProvider,
    NoCapacityError,
    PodInfo,
    PodRequest,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailableError,
    check_pod_name,
)

DEFAULT_API_BASE_URL = "https://api.runpod.io"
SDK_TIMEOUT_S = 30.0  # what runpod-python uses; kept as the default

# The SDK's configuration is process-global; every call holds this lock while it is swapped in.
_SDK_LOCK = threading.Lock()

_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNSAFE_IN_GRAPHQL_STRING = re.compile(r'["\\\x00-\x1f]')
_POD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STATUS_TIME_RE = re.compile(r"(\w{3} \w{3} \d{1,2} \d{4} \d{2}:\d{2}:\d{2}) GMT([+-]\d{4})")

_CAPACITY_MARKERS = (
    "no longer any instances available",
    "no instances available",
    "does not have the resources to deploy",
    "not enough free gpus",
)
_UNAVAILABLE_MARKERS = ("something went wrong", "internal server error", "try again later", "timed out")


def _sdk():
    """The runpod package, imported on first use: the import takes over a second and reads
    ~/.runpod/config.toml, neither of which belongs at import time of this module."""
    import runpod  # noqa: PLC0415
    import runpod.api.graphql  # noqa: F401, PLC0415

    return runpod


class _Transport:
    """Stands in for the `requests` module inside `runpod.api.graphql` during one call: applies
    our timeout and remembers the HTTP status and the start of the body, which the SDK drops."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.last_status: int | None = None
        self.last_body: str = ""

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs["timeout"] = self.timeout_s
        response = requests.post(url, **kwargs)
        self.last_status = response.status_code
        self.last_body = response.text[:200]
        return response


def _check_graphql_safe(what: str, value: str) -> None:
    if _UNSAFE_IN_GRAPHQL_STRING.search(value):
        raise ProviderError(
            f"{what} contains a quote, backslash or control character, which the RunPod SDK would "
            "paste into its GraphQL request unescaped and break it",
            suggestion="base64-encode the value (as JobSpec.to_env_value does) before passing it",
        )


class RunPodProvider(GpuProvider):
    name = "runpod"

    def __init__(
        self,
        *,
        api_key: str,
        image: str = "",
        api_base_url: str | None = None,
        timeout_s: float = SDK_TIMEOUT_S,
        terminate_confirm_s: float = 120.0,
        poll_interval_s: float = 2.0,
        adopt_existing: bool = True,
        start_ssh: bool = False,
        support_public_ip: bool = False,
    ):
        self.api_key = api_key or ""
        self.image = image
        self.api_base_url = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        if self.api_base_url.endswith("/graphql"):
            # The SDK appends /graphql itself.
            self.api_base_url = self.api_base_url[: -len("/graphql")]
        self.timeout_s = timeout_s
        self.terminate_confirm_s = terminate_confirm_s
        self.poll_interval_s = poll_interval_s
        self.adopt_existing = adopt_existing
        self.start_ssh = start_ssh
        self.support_public_ip = support_public_ip

    def __repr__(self) -> str:  # the key stays out
        return f"RunPodProvider(api_base_url={self.api_base_url!r}, image={self.image!r})"

    # -- calling the SDK ----------------------------------------------------------------------

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one SDK function with our key, URL and timeout swapped in; translate its errors.
        `action` completes "while ..." in error messages."""
        if not self.api_key:
            raise ProviderAuthError(
                "no RunPod API key is configured",
                suggestion="set RUNPOD_API_KEY (RunPod console → Settings → API Keys) for the web "
                "and worker processes, or use GPU_PROVIDER=local",
            )
        runpod = _sdk()
        graphql = runpod.api.graphql
        transport = _Transport(self.timeout_s)
        with _SDK_LOCK:
            saved_key = runpod.api_key
            saved_url = os.environ.get("RUNPOD_API_BASE_URL")
            saved_requests = graphql.requests
            runpod.api_key = self.api_key
            os.environ["RUNPOD_API_BASE_URL"] = self.api_base_url
            graphql.requests = transport
            try:
                return fn(*args, **kwargs)
            except ProviderError:
                raise
            except Exception as exc:  # noqa: BLE001 (every SDK failure is translated)
                raise self._translate(exc, action, transport) from exc
            finally:
                graphql.requests = saved_requests
                runpod.api_key = saved_key
                if saved_url is None:
                    os.environ.pop("RUNPOD_API_BASE_URL", None)
                else:
                    os.environ["RUNPOD_API_BASE_URL"] = saved_url

    def _translate(self, exc: Exception, action: str, transport: _Transport) -> ProviderError:
        from runpod import error as rp_error  # noqa: PLC0415

        status = transport.last_status
        where = f"while {action}"
        retry_hint = "this is retried automatically with backoff; if it persists, check https://status.runpod.io"

        if isinstance(exc, rp_error.AuthenticationError) or status in (401, 403):
            return ProviderAuthError(
                f"RunPod rejected the API key {where} (HTTP {status or 401})",
                suggestion="check RUNPOD_API_KEY: it must be a current key with read/write access to "
                "pods (RunPod console → Settings → API Keys)",
            )
        if isinstance(exc, rp_error.QueryError):
            message = exc.message or str(exc)
            low = message.lower()
            if any(marker in low for marker in _CAPACITY_MARKERS):
                return NoCapacityError(
                    f"RunPod has no capacity for this pod right now {where}: {message}",
                    suggestion="retried automatically with backoff; to start sooner choose another GPU "
                    "type, switch between SECURE and COMMUNITY cloud, or raise the spot bid",
                )
            if (status is not None and status >= 500) or status == 429 or any(m in low for m in _UNAVAILABLE_MARKERS):
                return ProviderUnavailableError(f"RunPod failed {where} (HTTP {status}): {message}", suggestion=retry_hint)
            if "bid" in low:
                return ProviderError(
                    f"RunPod refused the spot bid {where}: {message}",
                    suggestion="raise bid_per_gpu above the current minimum bid for this GPU type, "
                    "or launch on-demand",
                )
            return ProviderError(
                f"RunPod refused the request {where}: {message}",
                suggestion="check the GPU type, cloud type, image and disk sizes of the job; "
                "the message above is RunPod's own",
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return ProviderUnavailableError(
                f"RunPod did not answer within {self.timeout_s:g} s {where}", suggestion=retry_hint
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return ProviderUnavailableError(
                f"could not connect to RunPod at {self.api_base_url} {where}",
                suggestion="check this machine's network and RUNPOD_API_BASE_URL; " + retry_hint,
            )
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            snippet = " ".join(transport.last_body.split())[:120]
            return ProviderUnavailableError(
                f"RunPod answered HTTP {status} with a non-JSON body {where}: {snippet!r}",
                suggestion=retry_hint,
            )
        if isinstance(exc, requests.exceptions.RequestException):
            return ProviderUnavailableError(f"the request to RunPod failed {where}: {exc}", suggestion=retry_hint)
        if isinstance(exc, ValueError) and "No GPU found" in str(exc):
            return ProviderError(
                f"RunPod does not know this GPU type {where}",
                suggestion="use a GPU type id exactly as RunPod lists it (runpod.get_gpus()), "
                "e.g. 'NVIDIA GeForce RTX 4090'",
            )
        if isinstance(exc, ValueError):
            return ProviderError(f"the RunPod SDK refused the request {where}: {exc}",
                                 suggestion="check the job's GPU type, cloud type and image")
        if isinstance(exc, (KeyError, TypeError, IndexError)):
            return ProviderUnavailableError(
                f"RunPod gave an answer of an unexpected shape {where} ({exc!r})", suggestion=retry_hint
            )
        return ProviderError(f"unexpected error {where}: {exc!r}", suggestion="see the worker log for the traceback")

    # -- GpuProvider -------------------------------------------------------------------------

    def launch(self, request: PodRequest) -> PodInfo:
        """Create the pod, or return the live pod that already has this name (idempotent)."""
        check_pod_name(request.name)
        image = request.image or self.image
        if not image:
            raise ProviderError("no container image for the pod", suggestion="set RUNPOD_IMAGE to the gpu_worker image")
        _check_graphql_safe("the image name", image)
        _check_graphql_safe("the GPU type", request.gpu_type_id)
        for key, value in request.env.items():
            if not _ENV_KEY_RE.match(key):
                raise ProviderError(f"environment variable name {key!r} is not allowed",
                                    suggestion="use letters, digits and '_' only")
            _check_graphql_safe(f"the environment variable {key}", str(value))
        if request.cloud_type not in ("SECURE", "COMMUNITY", "ALL"):
            raise ProviderError(f"cloud type {request.cloud_type!r} is not known",
                                suggestion="use SECURE, COMMUNITY or ALL")

        if self.adopt_existing:
            existing = self.find_by_name(request.name)
            if existing is not None:
                return existing

        if request.spot:
            pod = self._rent_spot(request, image)
        else:
            runpod = _sdk()
            pod = self._call(
                f"creating on-demand pod {request.name}",
                runpod.create_pod,
                name=request.name,
                image_name=image,
                gpu_type_id=request.gpu_type_id,
                cloud_type=request.cloud_type,
                gpu_count=request.gpu_count,
                volume_in_gb=request.volume_gb,
                container_disk_in_gb=request.container_disk_gb,
                env={k: str(v) for k, v in request.env.items()},
                start_ssh=self.start_ssh,
                support_public_ip=self.support_public_ip,
                docker_args="",
            )
        if not pod or not pod.get("id"):
            raise ProviderUnavailableError(
                f"RunPod did not return a pod id for {request.name}",
                suggestion="retried automatically; the reconciler removes a pod that appears later",
            )
        launched = PodInfo(
            pod_id=pod["id"],
            name=request.name,
            state=POD_STARTING,
            gpu_type_id=request.gpu_type_id,
            spot=request.spot,
            started_at=time.time(),
        )
        # The create mutations answer no price: read the pod once for its own costPerHr (what
        # RunPod bills it) and its rent time. A failed read must not lose the pod we just got:
        # the cost is then None and the reconciler reads it later.
        try:
            current = self.status(pod["id"])
        except ProviderError:
            current = None
        if current is None:
            return launched
        return PodInfo(
            pod_id=launched.pod_id, name=request.name, state=current.state, gpu_type_id=request.gpu_type_id,
            cost_per_hr=current.cost_per_hr, spot=request.spot, started_at=current.started_at or launched.started_at,
            uptime_s=current.uptime_s, detail=current.detail,
        )

    def _rent_spot(self, request: PodRequest, image: str) -> dict:
        bid = request.bid_per_gpu
        if bid is None or bid <= 0:
            raise ProviderError("a spot pod needs a bid per GPU",
                                suggestion="set bid_per_gpu ($/h) at or above the GPU type's minimum bid")
        env_items = ", ".join(f'{{ key: "{k}", value: "{v}" }}' for k, v in request.env.items())
        fields = [
            f'name: "{request.name}"',
            f'imageName: "{image}"',
            f'gpuTypeId: "{request.gpu_type_id}"',
            f"bidPerGpu: {float(bid)!r}",
            f"cloudType: {request.cloud_type}",
            f"gpuCount: {int(request.gpu_count)}",
            f"volumeInGb: {int(request.volume_gb)}",
            f"containerDiskInGb: {int(request.container_disk_gb)}",
            f"startSsh: {'true' if self.start_ssh else 'false'}",
            f"supportPublicIp: {'true' if self.support_public_ip else 'false'}",
            'dockerArgs: ""',
            f"env: [{env_items}]",
        ]
        mutation = (
            "mutation {\n  podRentInterruptable(input: { " + ", ".join(fields) + " }) {\n"
            "    id desiredStatus imageName env machineId machine { podHostId }\n  }\n}"
        )
        runpod = _sdk()
        answer = self._call(f"renting spot pod {request.name}", runpod.api.graphql.run_graphql_query, mutation)
        try:
            return answer["data"]["podRentInterruptable"]
        except (KeyError, TypeError) as exc:
            raise ProviderUnavailableError(
                f"RunPod gave an answer of an unexpected shape while renting spot pod {request.name}",
                suggestion="retried automatically with backoff",
            ) from exc

    def status(self, pod_id: str) -> PodInfo | None:
        self._check_pod_id(pod_id)
        try:
            pod = self._call(f"reading pod {pod_id}", _sdk().get_pod, pod_id)
        except ProviderError as exc:
            if type(exc) is ProviderError and "not found" in exc.message.lower():
                return None
            raise
        return self.pod_info(pod) if pod else None

    def terminate(self, pod_id: str) -> bool:
        """Terminate and poll until RunPod no longer knows the pod. False if it still does after
        `terminate_confirm_s` (call again later; terminating twice is harmless)."""
        self._check_pod_id(pod_id)
        runpod = _sdk()
        if self._call(f"reading pod {pod_id}", runpod.get_pod, pod_id) is None:
            return True
        try:
            self._call(f"terminating pod {pod_id}", runpod.terminate_pod, pod_id)
        except ProviderError as exc:
            # "not found": it went away between the two calls. Anything else is real.
            if type(exc) is not ProviderError or "not found" not in exc.message.lower():
                raise
        deadline = time.monotonic() + self.terminate_confirm_s
        while True:
            if self._call(f"confirming pod {pod_id} is gone", runpod.get_pod, pod_id) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll_interval_s)

    def list(self, name_prefix: str) -> list[PodInfo]:
        """Pods on the account whose name starts with the prefix and that RunPod still holds
        (anything but TERMINATED), stopped ones included: they still cost volume storage."""
        pods = self._call("listing pods", _sdk().get_pods) or []
        return [
            self.pod_info(pod)
            for pod in pods
            if (pod.get("name") or "").startswith(name_prefix) and pod.get("desiredStatus") != "TERMINATED"
        ]

    # -- RunPod specifics --------------------------------------------------------------------

    def gpu_type(self, gpu_type_id: str, gpu_count: int = 1) -> dict:
        """RunPod's facts and prices for one GPU type (securePrice, communityPrice, secureSpotPrice,
        lowestPrice.minimumBidPrice...), as `runpod.get_gpu` returns them."""
        _check_graphql_safe("the GPU type", gpu_type_id)
        return self._call(f"reading GPU type {gpu_type_id}", _sdk().get_gpu, gpu_type_id, gpu_count)

    @staticmethod
    def _check_pod_id(pod_id: str) -> None:
        if not isinstance(pod_id, str) or not _POD_ID_RE.match(pod_id):
            raise ProviderError(f"{pod_id!r} is not a RunPod pod id", suggestion="pass the id launch() returned")

    @staticmethod
    def pod_info(pod: dict) -> PodInfo:
        """Map a pod as the SDK returns it to PodInfo.

        desiredStatus RUNNING without a runtime is a pod still pulling its image (starting).
        EXITED on a spot (INTERRUPTABLE) pod is an eviction: we never stop pods, we terminate them.
        RunPod reports no exit code.
        """
        desired = pod.get("desiredStatus") or ""
        spot = pod.get("podType") == "INTERRUPTABLE"
        interrupted = False
        if desired == "RUNNING":
            state = POD_RUNNING if pod.get("runtime") else POD_STARTING
        elif desired == "EXITED":
            state, interrupted = (POD_TERMINATED, True) if spot else (POD_EXITED, False)
        elif desired == "TERMINATED":
            state = POD_TERMINATED
        else:  # CREATED, RESTARTING...
            state = POD_STARTING
        detail = pod.get("lastStatusChange") or ""
        started_at = ended_at = None
        m = _STATUS_TIME_RE.search(detail)
        if m:
            try:
                changed = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%a %b %d %Y %H:%M:%S %z").timestamp()
            except ValueError:
                changed = None
            if desired == "RUNNING":
                started_at = changed
            elif desired in ("EXITED", "TERMINATED"):
                ended_at = changed
        runtime = pod.get("runtime") or {}
        uptime = runtime.get("uptimeInSeconds")
        cost = pod.get("costPerHr")
        return PodInfo(
            pod_id=pod["id"],
            name=pod.get("name") or "",
            state=state,
            # The SDK's pod query has no GPU type id, only the machine's display name ("RTX 4090").
            gpu_type_id=((pod.get("machine") or {}).get("gpuDisplayName") or ""),
            cost_per_hr=float(cost) if cost is not None else None,
            spot=spot,
            exit_code=None,
            started_at=started_at,
            ended_at=ended_at,
            uptime_s=float(uptime) if uptime is not None else None,
            interrupted=interrupted,
            detail=detail,
        )
