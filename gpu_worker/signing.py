"""Standard Webhooks signatures (https://www.standardwebhooks.com/), stdlib only.

Headers: webhook-id, webhook-timestamp (unix seconds), webhook-signature ("v1,<base64 HMAC-SHA256
of 'id.timestamp.body'>", several space-separated signatures allowed). Verification uses the raw
body bytes and a constant-time compare.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_S = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class SignatureError(Exception):
    """The request is not signed by the holder of the secret (or is too old / too new)."""


class MalformedSignature(SignatureError):
    """Headers missing or unparseable."""


def _key(secret: str) -> bytes:
    # Standard Webhooks secrets may carry a "whsec_" prefix followed by base64.
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def compute_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: compute_signature(secret, msg_id, ts, body),
    }


def parse_headers(headers: Mapping[str, str]) -> tuple[str, int, list[str]]:
    """Return (id, timestamp, signatures) or raise MalformedSignature."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get(HEADER_ID)
    ts_raw = lower.get(HEADER_TIMESTAMP)
    sig_raw = lower.get(HEADER_SIGNATURE)
    if not msg_id or not ts_raw or not sig_raw:
        raise MalformedSignature("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        ts = int(ts_raw)
    except ValueError as exc:
        raise MalformedSignature("webhook-timestamp is not an integer") from exc
    return msg_id, ts, sig_raw.split()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> str:
    """Verify a signed request; return its webhook-id. Raises SignatureError."""
    msg_id, ts, signatures = parse_headers(headers)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError(f"webhook-timestamp is more than {tolerance_s} s from the server clock")
    expected = compute_signature(secret, msg_id, ts, body)
    for candidate in signatures:
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return msg_id
    raise SignatureError("no signature matches")
