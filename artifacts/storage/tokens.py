"""Signed, expiring tokens for the disk backend's links: the disk counterpart of S3's presigned
URLs. A token names one storage key and one operation (get or put) and is refused after its
time-to-live, when tampered with, or when signed with another SECRET_KEY."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing


class TokenInvalid(Exception):
    """The token is expired, tampered with, or for another operation."""


@dataclass(frozen=True)
class StorageToken:
    key: str
    op: str
    ttl_s: int
    filename: str | None = None
    user_id: int | None = None


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=settings.ARTIFACT_TOKEN_SALT)


def token_make(*, key: str, op: str, ttl_s: int, filename: str | None = None, user_id: int | None = None) -> str:
    payload = {"k": key, "o": op, "t": int(ttl_s)}
    if filename:
        payload["n"] = filename
    if user_id is not None:
        payload["u"] = user_id
    return _signer().sign_object(payload, compress=True)


def token_read(token: str, *, op: str) -> StorageToken:
    """The token's contents; TokenInvalid when it is expired, tampered with or not for `op`.

    The time-to-live travels inside the signed payload, so each link keeps the lifetime it was
    issued with even if the setting changes later."""
    signer = _signer()
    try:
        payload = signer.unsign_object(token)
        # unsign_object does not check age; unsign the raw value again with the signed TTL.
        signer.unsign(token, max_age=int(payload["t"]))
    except signing.SignatureExpired as exc:
        raise TokenInvalid("this link has expired; ask for a new one") from exc
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise TokenInvalid("this link is not valid") from exc
    if payload.get("o") != op:
        raise TokenInvalid("this link is not valid for this operation")
    return StorageToken(key=payload["k"], op=payload["o"], ttl_s=int(payload["t"]), filename=payload.get("n"),
                        user_id=payload.get("u"))
