"""GET /healthz: database, broker, channel layer and storage, each "ok" or the error; 503 if any is down."""
from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

CHECK_TIMEOUT_S = 2.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_S) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_S)
        # A connection object can exist without a server answering; ask the server.
        conn.default_channel.client.ping()


def check_channel_layer() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def roundtrip():
        channel = await layer.new_channel("healthz.")
        await layer.send(channel, {"type": "healthz.ping", "nonce": uuid.uuid4().hex})
        return await layer.receive(channel)

    async def bounded():
        return await asyncio.wait_for(roundtrip(), timeout=CHECK_TIMEOUT_S)

    message = async_to_sync(bounded)()
    if message.get("type") != "healthz.ping":
        raise RuntimeError("channel layer returned an unexpected message")


def check_storage() -> None:
    from artifacts.storage import get_storage

    get_storage().health_check()


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "channel_layer": check_channel_layer,
    "storage": check_storage,
}


def run_checks() -> dict[str, dict]:
    results = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
            results[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
        else:
            results[name] = {"status": "ok"}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return results


@require_GET
def healthz(request):
    results = run_checks()
    healthy = all(r["status"] == "ok" for r in results.values())
    return JsonResponse({"status": "ok" if healthy else "error", "checks": results}, status=200 if healthy else 503)
