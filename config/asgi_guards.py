"""ASGI guards in front of the whole application (config/asgi.py).

- `LoopbackOnly`: without DJANGO_SECRET_KEY (a key generated for this machine, see
  config/settings/secret_key.py) a connection that reached a non-loopback address is refused:
  503 with what to set, and websockets are closed with 4503.
- `BodyLimit`: a request whose Content-Length is over the route's limit (config/body_limits.py)
  is answered 413 before a byte of its body is read, and a body without Content-Length is counted
  while read and cut off past the limit. `python -m config.serve` (what runall starts) applies the
  same limits earlier still, in daphne, before daphne buffers the body.
"""
from __future__ import annotations

import json
import logging

from asgiref.sync import sync_to_async
from django.conf import settings

from config.body_limits import credential_valid, limit_for
from config.settings.secret_key import is_loopback, refusal

logger = logging.getLogger("config.guards")


async def send_json(send, status: int, code: str, message: str, detail: dict | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "detail": detail or {}}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class LoopbackOnly:
    def __init__(self, app):
        self.app = app
        self._logged = False

    async def __call__(self, scope, receive, send):
        server = scope.get("server")
        if scope["type"] in ("http", "websocket") and server and not is_loopback(str(server[0])):
            message = refusal(str(server[0]))
            if not self._logged:
                logger.error(message)
                self._logged = True
            if scope["type"] == "http":
                await send_json(send, 503, "secret_key_not_configured", message)
            else:
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 4503, "reason": "secret key not configured"})
            return
        await self.app(scope, receive, send)


class BodyLimit:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        limit = limit_for(scope.get("method", "GET"), scope.get("path", "/"), headers)
        length = None
        for name, value in headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return await send_json(send, 400, "bad_request", "Content-Length is not a number")
        if length is not None and length > limit.max_bytes:
            return await send_json(send, 413, "too_large", limit.message(length), {"limit_bytes": limit.max_bytes})
        if (length is not None and length > settings.ANON_BODY_MAX_BYTES and limit.needs_credential
                and not await sync_to_async(credential_valid, thread_sensitive=False)(headers)):
            return await send_json(send, 401, "not_authenticated",
                                   f"a body over {settings.ANON_BODY_MAX_BYTES} bytes needs a valid credential "
                                   "(Authorization: Token/Bearer, or a signed-in session); nothing was read")
        if length is not None:
            return await self.app(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit.max_bytes:
                    raise BodyTooLarge(limit.message(seen))
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge as exc:
            await send_json(send, 413, "too_large", str(exc), {"limit_bytes": limit.max_bytes})


class BodyTooLarge(Exception):
    pass
