"""Signed, numbered events from the pod, sent from a bounded background queue.

Training never waits on the network: `emit` appends the event to the local events.jsonl and
hands it to a queue drained by one thread that POSTs it (Standard Webhooks signature with the
job's secret) with retries and exponential backoff. When the queue is full, queued `metrics`
events are dropped first (the newest metrics supersede them); stage, checkpoint, log and
terminal events are never dropped. `close(deadline_s)` flushes what it can before the deadline.

When the queue backs up (the receiver is slower than training, or was unreachable), consecutive
queued `metrics` events go out as one request carrying all their points (`metrics_batch`): any other
event is a barrier, so the order of events is kept. A request that failed is retried exactly as it
was first sent (same events, same id), so the receiver's dedup by event id covers it.

A pod stepping faster than `METRICS_MIN_INTERVAL_S` sends at most one metrics request per interval
(`linger_s`): its points wait for the next one and go together. The receiver's load is then
bounded by the number of pods (2 metrics requests/s each), not by how fast they train; a pod stepping
slower than that sends every point at once, as before. Every other event (stage, checkpoint, log,
terminal) is sent without waiting, with the metrics queued ahead of it.
"""
from __future__ import annotations

import collections
import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from . import signing
from .contracts import EVENT_HEARTBEAT, EVENT_METRICS, EVENT_TYPES, JobSpec, PodEvent

log = logging.getLogger(__name__)

DROPPABLE = frozenset({EVENT_METRICS, EVENT_HEARTBEAT})
# One batched request: at most this many points, and a body well under the receiver's 256 KiB limit
# (training.webhooks.MAX_BODY_BYTES); a metrics point is about 300 bytes.
BATCH_MAX_POINTS = 100
BATCH_MAX_BYTES = 64 * 1024
# At most one request per this many seconds while only metrics are queued (see the module doc):
# 50 pods stepping 20 times a second make about 100 metrics requests/s instead of 1,000, at the
# price of up to this much more delay before a point reaches the charts (a pod stepping slower
# than twice a second is not delayed at all); docs/performance.md has the figures behind 0.5.
# Each interval is drawn within +-METRICS_INTERVAL_JITTER of it, so that pods started together
# (a sweep) do not send in step.
METRICS_MIN_INTERVAL_S = 0.5
METRICS_INTERVAL_JITTER = 0.2


def metrics_interval_s(min_interval_s: float) -> float:
    """The wait after a request before the next metrics-only one: `min_interval_s`, jittered."""
    return min_interval_s * random.uniform(1 - METRICS_INTERVAL_JITTER, 1 + METRICS_INTERVAL_JITTER)


def event_id_for(job_id: str, attempt: int, seq: int) -> str:
    """Deterministic per (job, attempt, seq): a resent event keeps its id, so the receiver dedups it."""
    return f"evt_{job_id}_{attempt}_{seq}"


def metrics_batch(events: list[PodEvent]) -> PodEvent:
    """One `metrics` event carrying the points of `events` (consecutive metrics events of one job
    and attempt, in order) in `data.points`, each point its event's data with its `step` and `seq`.

    It takes the id, seq, step and timestamp of the last event: ids are per seq and each event is
    sent in exactly one request, so the id is unique and the same on every retry of this request."""
    last = events[-1]
    points = [{**e.data, "step": e.step, "seq": e.seq} for e in events]
    return PodEvent(event_id=last.event_id, job_id=last.job_id, attempt=last.attempt, seq=last.seq,
                    type=EVENT_METRICS, timestamp=last.timestamp, step=last.step, data={"points": points})


def next_request(queue: collections.deque[PodEvent], *, coalesce: bool = True,
                 max_points: int = BATCH_MAX_POINTS, max_bytes: int = BATCH_MAX_BYTES) -> tuple[PodEvent, int]:
    """Pop what to send next off `queue` (not empty): (event, number of emitted events it carries).

    The head alone, unless it is a metrics event with more metrics events right behind it (and
    `coalesce`): then as many of those as the bounds allow, as one `metrics_batch`."""
    head = queue.popleft()
    if not coalesce or head.type != EVENT_METRICS or "points" in head.data:
        return head, points_in(head)
    taken, size = [head], len(head.to_json())
    while queue and len(taken) < max_points:
        nxt = queue[0]
        if nxt.type != EVENT_METRICS or "points" in nxt.data or (nxt.job_id, nxt.attempt) != (head.job_id, head.attempt):
            break  # a barrier: nothing is sent ahead of a stage, checkpoint, log or terminal event
        size += len(nxt.to_json())
        if size > max_bytes:
            break
        taken.append(queue.popleft())
    return (head, 1) if len(taken) == 1 else (metrics_batch(taken), len(taken))


def linger_s(queue: collections.deque[PodEvent], *, last_request_at: float | None, min_interval_s: float,
             now: float, full_at: int = BATCH_MAX_POINTS) -> float:
    """Seconds to wait before sending the next request: more than 0 only while every queued event is
    a metrics event, fewer than a full batch (`full_at`) are queued, and the last request started
    less than `min_interval_s` ago (`now` and `last_request_at` on the same clock). A full batch
    goes at once, so a pod stepping faster than a batch per interval is not held back."""
    if min_interval_s <= 0 or last_request_at is None or len(queue) >= full_at:
        return 0.0
    if any(e.type != EVENT_METRICS for e in queue):
        return 0.0
    return max(0.0, last_request_at + min_interval_s - now)


def points_in(event: PodEvent) -> int:
    """How many emitted events `event` stands for (a batch: its points)."""
    points = event.data.get("points") if event.type == EVENT_METRICS else None
    return len(points) if isinstance(points, list) else 1


class EventSender:
    def __init__(
        self,
        spec: JobSpec,
        work_dir: Path,
        *,
        max_queue: int = 256,
        request_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        heartbeat_interval_s: float | None = None,
        batch: bool = True,
        batch_max_points: int = BATCH_MAX_POINTS,
        batch_max_bytes: int = BATCH_MAX_BYTES,
        metrics_min_interval_s: float = METRICS_MIN_INTERVAL_S,
    ):
        self.job_id = spec.job_id
        self.attempt = spec.attempt
        self.callback_url = spec.callback_url
        self.secret = spec.webhook_secret
        self.max_queue = max_queue
        self.request_timeout_s = request_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.batch = batch
        self.batch_max_points = batch_max_points
        self.batch_max_bytes = batch_max_bytes
        self.metrics_min_interval_s = metrics_min_interval_s if batch else 0.0
        self._last_request_at: float | None = None  # monotonic start of the last request
        self._interval_s = self.metrics_min_interval_s  # this interval, jittered
        self.path = Path(work_dir) / "events.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        self._queue: collections.deque[PodEvent] = collections.deque()
        self._cond = threading.Condition()
        self._seq = 0
        self._closing = False
        self._deadline: float | None = None
        self._in_flight: PodEvent | None = None
        # A request that failed goes back to the head of the queue as it was sent (never re-batched).
        self._requeued: PodEvent | None = None
        self.dropped = 0      # emitted events not delivered (a dropped batch counts its points)
        self.delivered = 0    # emitted events delivered (a batch counts its points)
        self.requests = 0     # requests delivered
        self.last_delivery_at: float | None = None
        self.last_emit_at = time.time()
        self._session = None
        self._thread: threading.Thread | None = None
        if self.callback_url:
            self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ producer side
    def emit(self, type: str, data: dict[str, Any] | None = None, *, step: int = 0) -> PodEvent:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        with self._cond:
            self._seq += 1
            event = PodEvent(
                event_id=event_id_for(self.job_id, self.attempt, self._seq),
                job_id=self.job_id,
                attempt=self.attempt,
                seq=self._seq,
                type=type,
                timestamp=time.time(),
                step=int(step),
                data=dict(data or {}),
            )
            self._file.write(event.to_json().decode() + "\n")
            self._file.flush()
            self.last_emit_at = event.timestamp
            if self.callback_url and not self._closing:
                self._enqueue(event)
                self._cond.notify_all()
        return event

    def _enqueue(self, event: PodEvent) -> None:
        # Caller holds self._cond.
        if len(self._queue) >= self.max_queue:
            victim = next((e for e in self._queue if e.type in DROPPABLE), None)
            if victim is not None:
                self._queue.remove(victim)
                self.dropped += points_in(victim)
            elif event.type in DROPPABLE:
                self.dropped += 1
                return
            # Otherwise the queue grows past its bound: important events are never dropped.
        self._queue.append(event)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._in_flight is not None else 0)

    def close(self, deadline_s: float = 10.0) -> bool:
        """Flush until the queue is empty or `deadline_s` passes. True when everything was delivered."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + deadline_s
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=deadline_s + self.request_timeout_s + 1)
        self._file.close()
        return self.pending() == 0

    # ------------------------------------------------------------------ sender thread
    def _post(self, event: PodEvent) -> str:
        """One delivery attempt: 'ok', 'retry' or 'drop' (rejected for good)."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        body = event.to_json()
        headers = signing.sign_headers(self.secret, event.event_id, body)
        headers["content-type"] = "application/json"
        timeout = self.request_timeout_s
        if self._deadline is not None:
            timeout = max(0.1, min(timeout, self._deadline - time.monotonic()))
        try:
            resp = self._session.post(self.callback_url, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            log.debug("event %s not delivered: %s", event.event_id, exc)
            return "retry"
        if 200 <= resp.status_code < 300 or resp.status_code == 409:  # 409: already stored
            return "ok"
        if resp.status_code in (408, 425, 429) or resp.status_code >= 500:
            return "retry"
        log.warning("event %s rejected with HTTP %s; not retrying", event.event_id, resp.status_code)
        return "drop"

    def _backoff_wait(self, delay: float) -> None:
        """Wait `delay` seconds before the retry (caller holds self._cond). New events notify the
        condition; they must not cut the wait short, or a pod retries at its emit rate during an
        outage (and, the backoff doubling on every failure, then waits the maximum once quiet).
        Only close() does: its flush starts with an immediate try."""
        retry_at = time.monotonic() + delay
        closing = self._closing
        while (remaining := retry_at - time.monotonic()) > 0 and self._closing == closing:
            self._cond.wait(timeout=remaining)

    def _run(self) -> None:
        backoff = self.backoff_initial_s
        while True:
            with self._cond:
                while not self._queue:
                    if self._closing:
                        return
                    wait = None
                    if self.heartbeat_interval_s:
                        wait = max(0.0, self.last_emit_at + self.heartbeat_interval_s - time.time())
                        if wait == 0.0:
                            break
                    self._cond.wait(timeout=wait)
                if not self._queue:
                    # Idle past the heartbeat interval: say we are alive.
                    self._cond.release()
                    try:
                        self.emit(EVENT_HEARTBEAT, {})
                    finally:
                        self._cond.acquire()
                    continue
                if self._closing and self._deadline is not None and time.monotonic() > self._deadline:
                    return
                retrying = self._queue[0] is self._requeued
                if not retrying and not self._closing:
                    wait = linger_s(self._queue, last_request_at=self._last_request_at,
                                    min_interval_s=self._interval_s, now=time.monotonic(),
                                    full_at=self.batch_max_points)
                    if wait > 0:
                        # More points may come meanwhile and go with these; an emit of any other
                        # event, or close(), wakes us and ends the wait.
                        self._cond.wait(timeout=wait)
                        continue
                event, carried = next_request(self._queue, coalesce=self.batch and not retrying,
                                              max_points=self.batch_max_points, max_bytes=self.batch_max_bytes)
                self._requeued = None
                self._in_flight = event
                self._last_request_at = time.monotonic()
                self._interval_s = metrics_interval_s(self.metrics_min_interval_s)
            outcome = self._post(event)
            with self._cond:
                self._in_flight = None
                if outcome == "retry":
                    # Retried as it was: it may have been stored already, and the receiver dedups it
                    # by its id only if the id still covers the same points. (A backlog past
                    # `max_queue` drops the oldest metrics, this one included.)
                    self._queue.appendleft(event)
                    self._requeued = event
                    # Jittered so that many pods cut off by the same outage do not retry in step.
                    delay = backoff * random.uniform(0.5, 1.0)
                    if self._deadline is not None:
                        delay = min(delay, max(0.0, self._deadline - time.monotonic()))
                        if delay <= 0:
                            return
                    self._backoff_wait(delay)
                    backoff = min(backoff * 2, self.backoff_max_s)
                else:
                    if outcome == "ok":
                        self.delivered += carried
                        self.requests += 1
                        self.last_delivery_at = time.time()
                    else:
                        self.dropped += carried
                    backoff = self.backoff_initial_s


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events a run wrote to its local events.jsonl, in order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
