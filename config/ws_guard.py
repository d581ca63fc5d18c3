"""Websocket refusals with distinct close codes, and the Origin check (docs/api.md#websockets).

A refused socket is accepted, sent one message `{"kind": "refused", "code": C, "reason": "..."}`
and closed with close code C (daphne rejects a handshake only with a bare 403 and drops close
reasons, so a client could not tell refusals apart otherwise):

- 4401 not signed in: no session and no ticket, or a ticket that is forged, expired or used;
- 4403 forbidden: an Origin that is not ours nor a configured frontend origin, or a user in no
  organization;
- 4404 not found: no such websocket path (e.g. a job id that is not a UUID), or no such job in
  the caller's organization (a job of another organization gets the same answer);
- 4503 the server has no configured secret key and the connection reached a non-loopback address.

Origin: a browser always sends one, and it must equal this server's own origin (the Host header,
host and port; scheme https for wss) or one of FRONTEND_ORIGINS (scheme, host and port compared,
default ports filled in). A client that sends no Origin is not a browser (a server-side Next.js,
a script): nothing for the check to protect, it goes on to authentication (a ticket or session).
"""
from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

logger = logging.getLogger("config.ws")

NOT_SIGNED_IN, FORBIDDEN, NOT_FOUND = 4401, 4403, 4404
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


async def refuse(receive, send, code: int, reason: str, *, accepted: bool = False) -> None:
    """Accept (unless already), say why, close with `code`."""
    if not accepted:
        message = await receive()
        if message.get("type") != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps({"kind": "refused", "code": code, "reason": reason})})
    await send({"type": "websocket.close", "code": code, "reason": reason})


def origin_tuple(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _host_port(host_header: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + host_header.strip())
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def origin_allowed(origin: str, *, host_header: str | None, scheme: str, frontend_origins, allowed_hosts) -> bool:
    got = origin_tuple(origin)
    if got is None:
        return False
    for allowed in frontend_origins:
        want = origin_tuple(allowed)
        if want is not None and want == got:
            return True
    if not host_header:
        return False
    host = _host_port(host_header)
    if host is None:
        return False
    from django.http.request import validate_host

    name, port = host
    if not name or not validate_host(name, list(allowed_hosts)):
        return False
    o_scheme, o_host, o_port = got
    if o_host != name:
        return False
    if scheme == "wss" and o_scheme != "https":
        return False
    if port is None:  # no port in Host: the default one of the Origin's scheme (TLS may end at a proxy)
        return o_port == DEFAULT_PORTS[o_scheme]
    return o_port == port


class OriginGuard:
    def __init__(self, app, frontend_origins, allowed_hosts):
        self.app = app
        self.frontend_origins = list(frontend_origins)
        self.allowed_hosts = list(allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1") or None
            if not origin_allowed(text, host_header=host, scheme=scope.get("scheme", "ws"),
                                  frontend_origins=self.frontend_origins, allowed_hosts=self.allowed_hosts):
                logger.warning("websocket %s refused: Origin %s is not allowed", scope.get("path"), text[:200])
                return await refuse(receive, send, FORBIDDEN,
                                    f"Origin {text[:200]} is not allowed: open the socket from this site or a "
                                    "configured frontend (FRONTEND_ORIGINS), or send no Origin with a ticket")
        return await self.app(scope, receive, send)


class NotFound:
    """The last websocket route: anything no other route matched."""

    async def __call__(self, scope, receive, send):
        await refuse(receive, send, NOT_FOUND, f"no websocket at {scope.get('path', '')[:200]}; "
                     "use /ws/jobs/ or /ws/jobs/<job uuid>/")
