"""How large a request body may be, decided from the method, path and headers alone (before any
of the body is read, and without the database).

- A request with no credential at all (no Authorization header, no session cookie, no signed pod
  event, no signed storage link) is anonymous: at most `ANON_BODY_MAX_BYTES` (64 KiB; a login form
  or a token request is well under 1 KiB).
- With a credential: the route's limit. Dataset uploads (`/api/v1/datasets/`, `/v1/files`):
  `DATASET_MAX_BYTES` plus 1 MiB of multipart framing; pod events: the webhook's own limit; a
  signed storage link PUT (the disk backend's pod uploads; the signature is checked here, it is
  cheap): `POD_UPLOAD_MAX_BYTES`; anything else: `REQUEST_BODY_MAX_BYTES` (10 MiB).

The credential is not verified here (that needs the database), only present: a forged header
buys the route's limit, and the route still refuses it before parsing a multipart body.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

MULTIPART_SLACK = 1024 * 1024
UPLOAD_PREFIXES = ("/api/v1/datasets/", "/v1/files")
POD_EVENTS_PATH = "/api/v1/pod-events/"
STORAGE_LINK_PREFIX = "/api/v1/artifacts/files/"


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    why: str
    needs_credential: bool = False  # the limit was granted for a credential's presence

    def message(self, size: int) -> str:
        return (f"request body of {size} bytes is over the {self.max_bytes}-byte limit for {self.why}; "
                "nothing was read or stored")


def _header(headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _has_session(headers) -> bool:
    cookie = _header(headers, b"cookie")
    return bool(cookie) and (settings.SESSION_COOKIE_NAME.encode() + b"=") in cookie


def _storage_link_valid(method: str, path: str) -> bool:
    if method != "PUT" or not path.startswith(STORAGE_LINK_PREFIX):
        return False
    token = path[len(STORAGE_LINK_PREFIX):].strip("/")
    try:
        from artifacts.storage.tokens import TokenInvalid, token_read
    except ImportError:  # pragma: no cover
        return False
    try:
        token_read(token, op="put")
    except TokenInvalid:
        return False
    return True


def limit_for(method: str, path: str, headers) -> Limit:
    """`headers`: (name, value) byte pairs, names lower-case (ASGI) or any case (Twisted)."""
    if path == POD_EVENTS_PATH and _header(headers, b"webhook-signature"):
        from training.webhooks import MAX_BODY_BYTES

        return Limit(MAX_BODY_BYTES, "a pod event")
    if _storage_link_valid(method, path):
        return Limit(settings.POD_UPLOAD_MAX_BYTES, "an upload through a storage link")
    if not (_header(headers, b"authorization") or _has_session(headers)):
        return Limit(settings.ANON_BODY_MAX_BYTES, "a request without credentials (sign in or send a token)")
    if path.startswith(UPLOAD_PREFIXES):
        return Limit(settings.DATASET_MAX_BYTES + MULTIPART_SLACK, "a dataset upload (DATASET_MAX_BYTES)", True)
    return Limit(settings.REQUEST_BODY_MAX_BYTES, "this route", True)


def credential_valid(headers) -> bool:
    """Whether the request's credential is real (database lookups: run it in a thread). Asked by
    the ASGI guard before a body above the anonymous limit is handed to Django, so a forged header
    buys nothing: a multipart parse of a body costs many times its size."""
    from django.db import close_old_connections

    auth = (_header(headers, b"authorization") or b"").decode("latin-1").strip()
    scheme, _, raw = auth.partition(" ")
    raw = raw.strip()
    try:
        if scheme.lower() == "token" and raw:
            from rest_framework.authtoken.models import Token

            return Token.objects.filter(key=raw, user__is_active=True).exists()
        if scheme.lower() == "bearer" and raw:
            from finetuning.services import api_key_authenticate

            key = api_key_authenticate(raw_key=raw)
            return key is not None and key.user.is_active
        if auth:
            return False
        cookie = (_header(headers, b"cookie") or b"").decode("latin-1")
        name = settings.SESSION_COOKIE_NAME + "="
        for part in cookie.split(";"):
            part = part.strip()
            if part.startswith(name):
                from importlib import import_module

                store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=part[len(name):])
                return bool(store.get("_auth_user_id"))
        return False
    finally:
        close_old_connections()
