"""Issue 16 item 2: a hostile body cannot take a web process's memory, and a crashed web process
is restarted by runall while the rest keeps serving.

Peak RSS is the kernel's high-water mark (VmHWM in /proc/PID/status), reset before each probe
(`echo 5 > /proc/PID/clear_refs`), of one web process as runall starts it (`python -m
config.serve`, daphne with the body limits)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.net_support import free_port, wait_listening
from tests.reliability.figures import record

pytestmark = pytest.mark.slow
MB = 1024 * 1024


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"BRIGHTRUN_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1", "DATABASE_CONN_MAX_AGE": "0"})
    return env


def _status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M)[1])


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _post(port: int, head: str, size: int) -> tuple[bytes, int]:
    """Send the headers then up to `size` body bytes (1 MiB at a time) until the server stops
    taking them; return the answer's first bytes and how much of the body was sent."""
    sent = 0
    block = b"a" * MB
    if "chunked" in head:
        block = f"{MB:x}\r\n".encode() + block + b"\r\n"
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            while sent < size:
                sock.sendall(block)
                sent += MB
        except OSError:
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                    break
        except OSError:
            pass
    return answer, sent


def test_peak_rss_under_hostile_bodies(tmp_path):
    from django.conf import settings

    port = free_port()
    log = tmp_path / "web.log"
    proc = subprocess.Popen([sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port),
                             "config.asgi:application"], cwd=REPO_ROOT, env=_env(tmp_path),
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_listening(port, proc=proc, log=log)
        _post(port, "GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 0)  # warm
        time.sleep(0.5)
        idle_mb = _status_kb(proc.pid, "VmRSS") / 1024
        spool_mb = settings.FILE_UPLOAD_MAX_MEMORY_SIZE / MB
        target_mb = 2 * idle_mb + spool_mb
        record("16.2 memory", "web process idle RSS (MB)", f"{idle_mb:.0f}")
        probes = {
            "anonymous 200 MB POST /login/": (
                "POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {200 * MB}\r\n\r\n", 200 * MB),
            "anonymous 200 MB POST /api/v1/datasets/": (
                "POST /api/v1/datasets/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                f"Content-Length: {200 * MB}\r\n\r\n", 200 * MB),
            "authenticated 200 MB upload POST /api/v1/datasets/": (
                "POST /api/v1/datasets/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token 0123456789abcdef\r\n"
                f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {200 * MB}\r\n\r\n", 200 * MB),
            "anonymous 200 MB chunked POST /login/": (
                "POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", 200 * MB),
        }
        for name, (head, size) in probes.items():
            _reset_peak(proc.pid)
            answer, sent = _post(port, head, size)
            peak_mb = _status_kb(proc.pid, "VmHWM") / 1024
            status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
            record("16.2 memory", f"peak RSS, {name} (MB; answer {status}, {sent // MB} MB sent)",
                   f"{peak_mb:.0f}", target=f"< {target_mb:.0f}")
            assert proc.poll() is None, f"the web process died under {name}"
            assert peak_mb < target_mb, f"{name}: peak {peak_mb:.0f} MB over {target_mb:.0f} MB"
            assert status == "413", answer[:300]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_runall_restarts_a_crashed_web_process(tmp_path):
    port = free_port()
    log = tmp_path / "runall.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "runall", "--only", "web", "--no-migrate", "--web-workers", "1",
                             "--port", str(port)], cwd=REPO_ROOT, env=_env(tmp_path), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_listening(port, proc=proc, log=log)
        first = int(re.search(r"started web \(pid (\d+)", log.read_text())[1])
        started = time.monotonic()
        os.kill(first, signal.SIGKILL)  # what the kernel's OOM killer does
        deadline = time.monotonic() + 60
        second = None
        while time.monotonic() < deadline and second is None:
            pids = [int(p) for p in re.findall(r"started web \(pid (\d+)", log.read_text())]
            second = pids[-1] if len(pids) > 1 else None
            time.sleep(0.1)
        assert second and second != first, log.read_text()
        wait_listening(port, proc=proc, log=log)
        record("16.2 memory", "runall: web process killed -9, serving again after (s)",
               f"{time.monotonic() - started:.1f}", target="restarted, tier kept")
        assert proc.poll() is None, "runall stopped the tier"
        assert "restarting it" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
