"""Websocket authentication for token clients: a short-lived, single-use ticket.

Browsers send their session cookie with the websocket handshake; a token client (the Next.js
frontend) cannot set headers on a browser websocket, so it asks the API for a ticket
(`POST /api/v1/ws-tickets/`) and opens `/ws/jobs/...?ticket=...` within WS_TICKET_TTL_S.
The ticket is signed (nobody can forge one) and burnt in Redis on first use (nobody can replay
one), so the ticket is worth nothing once the socket is open or the minute has passed.
"""
from __future__ import annotations

import secrets
from functools import lru_cache
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

SALT = "brightrun.ws-ticket"


@lru_cache(maxsize=2)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url)


def ws_ticket_issue(*, user) -> str:
    return signing.dumps({"u": user.pk, "n": secrets.token_urlsafe(12)}, salt=SALT, compress=True)


def ws_ticket_redeem(ticket: str):
    """The user the ticket was issued to, once; None for a forged, expired or used ticket."""
    try:
        data = signing.loads(ticket, salt=SALT, max_age=settings.WS_TICKET_TTL_S)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    first_use = _redis(settings.REDIS_URL).set(f"ws-ticket-used:{data['n']}", 1, nx=True,
                                               ex=settings.WS_TICKET_TTL_S * 2)
    if not first_use:
        return None
    return get_user_model().objects.filter(pk=data["u"], is_active=True).first()


class TicketAuthMiddleware:
    """Replaces scope["user"] with the ticket's user when the query string carries `ticket=`.
    Sits inside AuthMiddlewareStack, so a session still works without a ticket."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode())
        ticket = (query.get("ticket") or [None])[0]
        if ticket:
            from django.contrib.auth.models import AnonymousUser

            user = await database_sync_to_async(ws_ticket_redeem)(ticket)
            scope = {**scope, "user": user or AnonymousUser(), "ticket_used": True, "ticket_valid": user is not None}
        return await self.inner(scope, receive, send)
