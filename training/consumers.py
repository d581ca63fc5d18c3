"""Websockets: one job's live page (`/ws/jobs/<uuid>/`) and the organization's job list
(`/ws/jobs/`). Read-only: they check who is asking, send a snapshot, then relay what
`core.broadcast` publishes after each commit.

Every message is a JSON object with a `kind`: `snapshot` first, then `status`, `stage`,
`metrics`, `progress`, `checkpoint`, `log`, `cost` as they happen. (Internally a pod event's
points and progress travel as one channel-layer message, split here.) Metric points and progress
are coalesced so a client gets at most WS_METRICS_MAX_PER_S of them per job per second,
however fast the pod reports; any other message first flushes what is pending, so the order of
events is kept (the last points arrive before `completed`).

Refusals (config/ws_guard.py; docs/api.md#websockets) accept, send `{"kind": "refused", "code",
"reason"}` and close with that code: 4401 not signed in (or a forged, expired or used ticket),
4403 a foreign Origin or a user in no organization, 4404 no such path or job (a job of another
organization is the same answer as a missing one). A client frame that is not a JSON object is
ignored with a log line (the socket stays open).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from config.ws_guard import FORBIDDEN, NOT_FOUND, NOT_SIGNED_IN
from training import selectors
from core.broadcast import job_group, org_jobs_group
from core.permissions import actor_for_user

RATE_LIMITED = ("metrics", "progress")
logger = logging.getLogger(__name__)


class _Refusing:
    """Distinct refusals and a tolerant frame reader, for both consumers."""

    async def refuse(self, code: int, reason: str) -> None:
        await self.accept()
        await self.send_json({"kind": "refused", "code": code, "reason": reason})
        await self.close(code=code, reason=reason)

    async def refuse_anonymous_or_orgless(self, actor_found: bool) -> None:
        user = self.scope.get("user")
        if self.scope.get("ticket_used") and not self.scope.get("ticket_valid"):
            await self.refuse(NOT_SIGNED_IN, "the ticket is forged, expired or already used; get a new one from "
                                             "POST /api/v1/ws-tickets/ and connect within a minute")
        elif user is None or not user.is_authenticated:
            await self.refuse(NOT_SIGNED_IN, "not signed in: send the session cookie, or ?ticket= from "
                                             "POST /api/v1/ws-tickets/")
        elif not actor_found:
            await self.refuse(FORBIDDEN, "your user belongs to no organization")

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data if text_data is not None else bytes_data)
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            logger.info("websocket %s: ignored a frame that is not JSON (%s)", self.scope.get("path"), exc)
            return
        if not isinstance(content, dict):
            logger.info("websocket %s: ignored a frame that is not a JSON object", self.scope.get("path"))
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):
        if content.get("action") == "ping":
            await self.send_json({"kind": "pong"})


def _normalize(payload: dict[str, Any]) -> dict[str, Any]:
    if "kind" not in payload and "cost" in payload:  # billing publishes {"cost": {...}}
        return {"kind": "cost", **payload}
    return payload if "kind" in payload else {"kind": "update", **payload}


class _Coalescer:
    """Collects high-rate messages and sends them at most `rate` times a second."""

    def __init__(self, send, rate: float):
        self._send = send
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._last = 0.0
        self._task: asyncio.Task | None = None
        self.points: dict[int, dict] = {}
        self.progress: dict[str, dict] = {}  # per job id

    def add(self, payload: dict[str, Any]) -> None:
        if payload["kind"] == "metrics":
            for point in payload.get("points") or []:
                self.points[int(point.get("step", 0))] = point
        else:
            self.progress[str(payload.get("job_id", ""))] = payload
        if self._task is None or self._task.done():
            delay = max(0.0, self._last + self._interval - time.monotonic())
            self._task = asyncio.ensure_future(self._later(delay))

    async def _later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.flush()

    async def flush(self) -> None:
        points, progress = self.points, self.progress
        self.points, self.progress = {}, {}
        if not points and not progress:
            return
        self._last = time.monotonic()
        if points:
            message = {"kind": "metrics", "points": [points[s] for s in sorted(points)]}
            job_progress = progress.pop("", None)
            if job_progress:
                message["progress"] = job_progress
            await self._send(message)
        for payload in progress.values():
            await self._send(payload)

    async def flush_now(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        await self.flush()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _job_for(user, job_id):
    actor = actor_for_user(user)
    if actor is None:
        return None
    return selectors.job_get(organization=actor.organization, job_id=job_id)


def _snapshot(job_id, organization_id):
    job = selectors.job_queryset(organization=organization_id).get(pk=job_id)
    return selectors.job_snapshot(job=job)


def _org_for(user):
    actor = actor_for_user(user)
    return actor.organization if actor else None


def _jobs_snapshot(organization):
    return [selectors.job_list_payload(j) for j in selectors.job_list(organization=organization)[:50]]


class JobConsumer(_Refusing, AsyncJsonWebsocketConsumer):
    group = None

    async def connect(self):
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        user = self.scope.get("user")
        actor = await database_sync_to_async(actor_for_user)(user) if user is not None and user.is_authenticated else None
        if actor is None:
            await self.refuse_anonymous_or_orgless(False)
            return
        job = await database_sync_to_async(_job_for)(user, job_id)
        if job is None:
            await self.refuse(NOT_FOUND, "no such job in your organization")
            return
        self.coalescer = _Coalescer(self.send_json, settings.WS_METRICS_MAX_PER_S)
        self.group = job_group(job.pk)
        # Join before reading the snapshot: anything published meanwhile is queued for us and
        # follows the snapshot (a point may come twice; clients key points by step).
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        snapshot = await database_sync_to_async(_snapshot)(job.pk, job.organization_id)
        await self.send_json({"kind": "snapshot", **snapshot})

    async def disconnect(self, code):
        if getattr(self, "coalescer", None):
            self.coalescer.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_update(self, event):
        payload = _normalize(event["payload"])
        if payload["kind"] in RATE_LIMITED:
            payload.pop("job_id", None)
            # A pod event's points and the job's progress come as one message (pod_events).
            progress = payload.pop("progress", None) if payload["kind"] == "metrics" else None
            self.coalescer.add(payload)
            if progress:
                self.coalescer.add(progress)
            return
        await self.coalescer.flush_now()
        await self.send_json(payload)


class JobListConsumer(_Refusing, AsyncJsonWebsocketConsumer):
    """The organization's jobs: a snapshot of the 50 newest, then status, progress and cost
    changes of any of its jobs, each with its `job_id`."""

    group = None

    async def connect(self):
        user = self.scope.get("user")
        organization = (await database_sync_to_async(_org_for)(user)
                        if user is not None and user.is_authenticated else None)
        if organization is None:
            await self.refuse_anonymous_or_orgless(False)
            return
        self.coalescer = _Coalescer(self.send_json, settings.WS_METRICS_MAX_PER_S)
        self.group = org_jobs_group(organization.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        jobs = await database_sync_to_async(_jobs_snapshot)(organization)
        await self.send_json({"kind": "snapshot", "jobs": jobs})

    async def disconnect(self, code):
        if getattr(self, "coalescer", None):
            self.coalescer.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_update(self, event):
        payload = _normalize(event["payload"])
        if payload["kind"] == "progress":
            self.coalescer.add(payload)
            return
        await self.coalescer.flush_now()
        await self.send_json(payload)
