"""POST /api/v1/pod-events/ answered in front of Django's middleware stack (config/asgi.py).

Through Django's ASGI handler every middleware (`MiddlewareMixin`) runs its request and response
hooks through `sync_to_async`: eight middlewares are sixteen hops between the event loop and the
request's thread, plus URL resolution, the request signals and a disconnect listener, before and
after a view that does one hop of its own. At a few hundred pod events per second that was most
of a web process's CPU. This app serves that one path (POST only) itself and calls the same view,
`training.webhooks.pod_events`, unchanged: the size limit, the signature checked before the body
is parsed, the same status codes and bodies. Everything else goes to Django as before.

What the middleware stack did for this path, and what happens here instead:
- `ALLOWED_HOSTS` (CommonMiddleware asks for the host): checked; 400 as Django answers.
- `SECURE_SSL_REDIRECT`: a plain-http request is left to Django, which redirects it.
- the `X-Content-Type-Options` and `X-Frame-Options` headers: added from the same settings.
- sessions, CSRF (the view is exempt), authentication, messages, CORS: nothing to do for a signed
  server-to-server POST with no cookies.
- Database connections: the view's database work (`_verify_and_ingest`) runs in a thread of a
  small pool kept for this path (`POD_EVENTS_THREADS`, the size of the connection pool), and the
  thread's connection is closed (returned to the pool) as soon as that work is done, as
  `request_finished` does. Django's handler would start a new thread for every request
  (`ThreadSensitiveContext`); under load, starting it stalled the event loop until the new thread
  got the GIL, and dozens of threads contending for it slowed every database round trip.
- A body over `MAX_BODY_BYTES` is answered 413 as soon as the limit is passed, without reading
  the rest (Django read all of it first, and answered 400 past DATA_UPLOAD_MAX_MEMORY_SIZE).
"""
from __future__ import annotations

import asyncio
import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import JsonResponse
from django.db import connections

from training import webhooks

logger = logging.getLogger(__name__)

PATH = "/api/v1/pod-events/"


class PodEventsApp:
    """ASGI app: POST /api/v1/pod-events/ here, every other HTTP request to `django_app`."""

    def __init__(self, django_app):
        self.django_app = django_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or (
                settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https"):
            return await self.django_app(scope, receive, send)
        body = await _read_body(receive, webhooks.MAX_BODY_BYTES)
        if body is None:
            return  # the pod went away before its event was read; it will resend it
        await _send(send, await _respond(scope, body))


async def _respond(scope, body: bytes | _TooLarge):
    if isinstance(body, _TooLarge):
        return webhooks._error(413, "too_large", f"event body over {webhooks.MAX_BODY_BYTES} bytes")
    request = ASGIRequest(scope, io.BytesIO(body))
    try:
        request.get_host()
    except DisallowedHost as exc:
        return webhooks._error(400, "bad_host", str(exc))
    try:
        parsed = webhooks.request_parse(request)
        if isinstance(parsed, JsonResponse):
            return parsed
        response, result = await asyncio.get_running_loop().run_in_executor(_executor(), _in_thread, parsed)
        await webhooks.result_publish(result)
        return response
    except Exception:
        # Django's handler would answer 500 too; the pod retries it.
        logger.exception("pod event failed")
        return webhooks._error(500, "server_error", "the event could not be stored; retry it")


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.POD_EVENTS_THREADS, thread_name_prefix="pod-events")
        return _pool


def _in_thread(parsed):
    try:
        return webhooks._verify_and_ingest(*parsed)
    finally:
        _close_connections()


class _TooLarge:
    pass


async def _read_body(receive, limit: int) -> bytes | _TooLarge | None:
    """The request body; _TooLarge once past `limit` (the rest is not read); None on disconnect."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _close_connections() -> None:
    # Runs in the pool's thread after each event: with a connection pool the connection goes
    # back to it; without one it is closed. (An atomic block is open only if a caller ran this in
    # its own thread and transaction, which is not ours to close.)
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


async def _send(send, response) -> None:
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if getattr(settings, "X_FRAME_OPTIONS", None):
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
    body = response.content
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
    if not response.has_header("Content-Length"):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
