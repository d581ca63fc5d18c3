"""The webhook forgery classes of issue 10, as request builders any test can post: each returns
(body, headers) for the i-th attempt. The same classes as tests/jobs/test_jobs_webhooks.py (which
could import them from here instead of defining them inline)."""
from __future__ import annotations

import json
import math
import time

from gpu_worker import signing
from tests.jobs.factories import pod_event


def forgery_classes(job, other):
    """name → build(i) for `job`; `other` is another running job (its secret must not work)."""

    def valid(i):
        ev = pod_event(job, 100_000 + i, "log", data={"message": f"hello {i}"})
        return ev.to_json(), signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json())

    def flipped_byte(i):
        ev = pod_event(job, 200_000 + i, "log", data={"message": "x" * 8})
        body = bytearray(ev.to_json())
        body[(i * 7919) % len(body)] ^= 1 << (i % 8)  # a different byte and bit each time
        return bytes(body), signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json())

    def wrong_secret(i):
        ev = pod_event(job, 300_000 + i, "log")
        return ev.to_json(), signing.sign_headers(f"not-the-secret-{i}", ev.event_id, ev.to_json())

    def other_jobs_secret(i):
        ev = pod_event(job, 400_000 + i, "log")
        return ev.to_json(), signing.sign_headers(other.webhook_secret, ev.event_id, ev.to_json())

    def missing_headers(i):
        ev = pod_event(job, 500_000 + i, "log")
        headers = signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json())
        drop = list(headers)[i % len(headers)] if i % 4 else None  # one header missing, or all of them
        return ev.to_json(), ({k: v for k, v in headers.items() if k != drop} if drop else {})

    def stale(i):
        ev = pod_event(job, 600_000 + i, "log")
        return ev.to_json(), signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json(),
                                                  timestamp=int(time.time()) - 301)

    def future(i):
        ev = pod_event(job, 700_000 + i, "log")
        return ev.to_json(), signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json(),
                                                  timestamp=math.ceil(time.time()) + 301)  # ≥ 301 s ahead when verified

    def reserialized(i):
        ev = pod_event(job, 800_000 + i, "log", data={"message": "y", "n": i})
        headers = signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json())
        # the same JSON value in other bytes: indented, or keys in another order
        value = json.loads(ev.to_json())
        body = (json.dumps(value, indent=2) if i % 2 else json.dumps(dict(reversed(list(value.items()))))).encode()
        return body, headers

    return {"valid": valid, "flipped body byte": flipped_byte, "wrong secret": wrong_secret,
            "another job's secret": other_jobs_secret, "missing headers": missing_headers,
            "timestamp -301 s": stale, "timestamp +301 s": future, "re-serialized JSON": reserialized}


def post(client, body: bytes, headers: dict):
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return client.post("/api/v1/pod-events/", data=body, content_type="application/json", **meta)
