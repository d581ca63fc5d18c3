"""Loopback helpers for tests that start a real server process: a free port, and waiting until
the process listens on it (failing with its log's tail when it exits or never listens)."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, *, proc: subprocess.Popen | None = None, log: Path | None = None,
                   timeout_s: float = 60) -> None:
    """Returns once something accepts connections on 127.0.0.1:`port`. Raises AssertionError with
    the tail of `log` when `proc` exits first or nothing listens within `timeout_s`."""
    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}) before listening on {port}:\n{tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout_s:g} s:\n{tail()}")
