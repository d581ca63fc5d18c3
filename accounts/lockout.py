"""Login throttling and lockout, shared by every password login: the API's token endpoint, the
dashboard's login page and the admin's (accounts.backends.LockoutModelBackend is the one place
they all pass through, `django.contrib.auth.authenticate`).

Failures are counted in Redis (every web process sees the same counts) per username and per client
address over LOGIN_LOCKOUT_WINDOW_S. At LOGIN_MAX_FAILURES for a username, or
LOGIN_MAX_FAILURES_PER_IP for an address, further attempts are refused, the right password
included, until the window since the first failure has passed; a success clears the username's
count. If Redis cannot be reached, logins are not throttled (logged), rather than all refused.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Locked:
    retry_after_s: int
    why: str

    @property
    def message(self) -> str:
        return (f"too many failed sign-ins {self.why}; try again in {self.retry_after_s} s "
                "(or ask an administrator to reset the password)")


@lru_cache(maxsize=1)
def _client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _keys(username: str, ip: str | None) -> tuple[str, str | None]:
    prefix = settings.LOGIN_LOCKOUT_PREFIX
    user = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]
    return f"{prefix}:user:{user}", (f"{prefix}:ip:{ip}" if ip else None)


def client_ip(request) -> str | None:
    if request is None:
        return None
    meta = getattr(request, "META", {}) or {}
    return meta.get("REMOTE_ADDR") or None


def locked(username: str, ip: str | None) -> Locked | None:
    user_key, ip_key = _keys(username, ip)
    try:
        client = _client()
        pipe = client.pipeline()
        pipe.get(user_key)
        pipe.ttl(user_key)
        if ip_key:
            pipe.get(ip_key)
            pipe.ttl(ip_key)
        values = pipe.execute()
    except Exception as exc:  # noqa: BLE001 - Redis down: do not lock everyone out
        logger.warning("login lockout unavailable (%s); not throttling", exc)
        return None
    user_count, user_ttl = int(values[0] or 0), int(values[1] or 0)
    if user_count >= settings.LOGIN_MAX_FAILURES:
        return Locked(max(1, user_ttl), "for this username")
    if ip_key:
        ip_count, ip_ttl = int(values[2] or 0), int(values[3] or 0)
        if ip_count >= settings.LOGIN_MAX_FAILURES_PER_IP:
            return Locked(max(1, ip_ttl), "from this address")
    return None


def record_failure(username: str, ip: str | None) -> None:
    try:
        pipe = _client().pipeline()
        for key in _keys(username, ip):
            if key:
                pipe.incr(key)
                pipe.expire(key, settings.LOGIN_LOCKOUT_WINDOW_S, nx=True)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001
        logger.warning("login failure not counted (%s)", exc)


def reset(username: str) -> None:
    try:
        _client().delete(_keys(username, None)[0])
    except Exception as exc:  # noqa: BLE001
        logger.warning("login failures not cleared (%s)", exc)
