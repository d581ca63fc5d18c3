"""The secret key when DJANGO_SECRET_KEY is unset (the embedded default).

No key is written in the code: on first run a random one is generated and kept in
`<var>/secret_key` (mode 0600), so sessions, websocket tickets and signed links survive a restart
but no one who has read this repository can forge them. Several processes starting at once
(runall: daphne, worker, beat) agree on one key: it is written to a temporary file and linked into
place, which fails for all but the first; the others read the winner's.

A generated key is only for this machine: serving on a non-loopback address refuses to start
without DJANGO_SECRET_KEY (`manage.py runall`, and config/asgi.py for daphne started directly).
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

KEY_FILE_NAME = "secret_key"


def embedded_secret_key(var_dir: Path) -> str:
    path = Path(var_dir) / KEY_FILE_NAME
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(64) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic; fails when another process won
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.02)  # pragma: no cover - a file linked in place is complete
    raise RuntimeError(f"{path} is empty: delete it and start again")


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    import ipaddress

    host = (host or "").strip()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(host: str) -> str:
    return (f"refusing to serve on {host}: no DJANGO_SECRET_KEY is configured, and the generated key in "
            f"var/{KEY_FILE_NAME} is for this machine's loopback only. Set DJANGO_SECRET_KEY (50+ random "
            "characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(64))'), or bind 127.0.0.1.")
