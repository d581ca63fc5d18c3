"""POST /api/v1/pod-events/: signed events from pods (Standard Webhooks).

Verify first, parse second: the job is found from the `webhook-id` header
(`evt_<job uuid>_<attempt>_<seq>`), its secret checks the signature over the raw body, and only
then is the body parsed. 400 malformed, 401 bad signature, 200 for accepted and for duplicates
(the pod stops retrying either way), 404 unknown job, 410 for a finished job whose late window is
over (its secret is then erased).

A finished job's pod may still deliver events for `POD_EVENT_LATE_WINDOW_S` after the terminal
move (an event overtaken by `completed`): they are verified with the same secret, stored, and
their data kept (metric points, checkpoints, logs, forward-only progress); they never change the
job's state, bill or notify (`training.services.pod_events`, `training.services.webhook_secrets`).

The view is async: the database work (lookup, verification, storing and applying the event) runs
in the request's worker thread, and the live updates it produces are then published to the channel
layer from the server's event loop, before the answer (so a pod's next event is never published
before this one), without holding a thread or a database connection while Redis answers.
"""
from __future__ import annotations

import logging
import re
import uuid

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config import json_limits
from gpu_worker import signing
from gpu_worker.contracts import METRIC_KEYS, PodEvent
from training.broadcast import publish_job_updates
from training.services.pod_events import pod_event_ingest
from training.services.webhook_secrets import pod_event_secret

logger = logging.getLogger(__name__)

EVENT_ID = re.compile(r"^evt_(?P<job>[0-9a-fA-F-]{36})_(?P<attempt>\d+)_(?P<seq>\d+)$")
MAX_BODY_BYTES = 256 * 1024


STEP_FIELDS = ("step", "checkpoint_step", "total_steps")


def _in_int32(name: str, value, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer (got {value!r})")
    if not minimum <= value <= json_limits.INT32_MAX:
        raise ValueError(f"{name} must be within {minimum}..{json_limits.INT32_MAX} (got {value})")


def event_check(event: PodEvent) -> None:
    """A signed event's numbers fit what ingestion stores (integer columns, finite floats), so a
    malformed one is answered 400 before anything is written, never 500 (a pod retries a 5xx
    forever, blocking its ordered queue)."""
    _in_int32("attempt", event.attempt)
    _in_int32("step", event.step)
    if not -json_limits.INT_MAX <= event.seq <= json_limits.INT_MAX:
        raise ValueError(f"seq is out of range (got {event.seq})")
    for name in STEP_FIELDS:
        value = event.data.get(name)
        if value is not None:
            _in_int32(f"data.{name}", value)
    points = event.data.get("points")
    if points is not None:
        if not isinstance(points, list):
            raise ValueError("data.points must be a list")
        for n, point in enumerate(points):
            if not isinstance(point, dict) or "step" not in point:
                raise ValueError(f"data.points[{n}] must be an object with a step")
            _in_int32(f"data.points[{n}].step", point["step"])
            for key, value in point.items():
                if key in METRIC_KEYS and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ValueError(f"data.points[{n}].{key} must be a number (got {value!r})")
    final = event.data.get("final_metrics")
    if final is not None and not isinstance(final, dict):
        raise ValueError("data.final_metrics must be an object")
    for name in STEP_FIELDS:
        if isinstance(final, dict) and final.get(name) is not None:
            _in_int32(f"data.final_metrics.{name}", final[name])


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "detail": None}}, status=status)


@csrf_exempt
@require_POST
async def pod_events(request):
    parsed = request_parse(request)
    if isinstance(parsed, JsonResponse):
        return parsed
    response, result = await sync_to_async(_verify_and_ingest)(*parsed)
    await result_publish(result)
    return response


def request_parse(request) -> JsonResponse | tuple[uuid.UUID, str, dict, bytes]:
    """What the headers say, before anything is looked up: an error answer, or (job id, event id,
    headers, body) for `_verify_and_ingest`."""
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "too_large", f"event body over {MAX_BODY_BYTES} bytes")
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        msg_id, _ts, _sigs = signing.parse_headers(headers)
    except signing.MalformedSignature as exc:
        return _error(400, "malformed", str(exc))
    match = EVENT_ID.match(msg_id)
    if not match:
        return _error(400, "malformed", "webhook-id must be evt_<job id>_<attempt>_<seq>")
    try:
        job_id = uuid.UUID(match["job"])
    except ValueError:
        return _error(400, "malformed", "webhook-id names no valid job id")
    return job_id, msg_id, headers, body


async def result_publish(result) -> None:
    """Publish an ingested event's live updates (from the event loop, before the answer)."""
    if result is not None and result.live:
        await publish_job_updates(result.job_id, result.live, result.organization_id)


def _verify_and_ingest(job_id: uuid.UUID, msg_id: str, headers: dict, body: bytes):
    """(response, IngestResult or None). Runs in the request's thread (database access)."""
    secret = pod_event_secret(job_id=job_id)
    if secret is None:
        return _error(404, "unknown_job", "no such job"), None
    if not secret:
        # The job is finished, its late window over and its secret revoked; tell the pod to stop.
        return _error(410, "job_finished", "the job is finished; events are no longer accepted"), None
    try:
        signing.verify(secret, headers, body)
    except signing.SignatureError as exc:
        logger.warning("rejected pod event %s: %s", msg_id, exc)
        return _error(401, "bad_signature", str(exc)), None
    try:
        event = PodEvent.from_dict(json_limits.loads(body))
        event_check(event)
        event.payload  # the typed payload (gpu_worker.contracts.PAYLOADS), parsed once, here
    except (ValueError, TypeError) as exc:
        return _error(400, "malformed", f"invalid event body: {exc}"), None
    if event.job_id != str(job_id) or event.event_id != msg_id:
        return _error(400, "malformed", "the body's job_id and event_id must match the webhook-id header"), None
    # The live updates come back to be published from the event loop (above), after the commit.
    result = pod_event_ingest(job_id=job_id, event=event, publish=False)
    return JsonResponse({"stored": result.stored, "applied": result.applied, "duplicate": not result.stored,
                         "status": result.status}, status=200), result
