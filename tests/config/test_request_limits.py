"""No public secret key (issue 16 item 3) and request bodies refused before they are read (item 2)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.net_support import free_port, wait_listening


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"BRIGHTRUN_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1", **extra})
    return env


PRINT_KEY = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); " \
            "from django.conf import settings; print(settings.SECRET_KEY, settings.SECRET_KEY_CONFIGURED)"


def test_embedded_key_is_generated_once_private_and_kept(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", PRINT_KEY], cwd=REPO_ROOT, env=_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    keys = {out.split()[0] for out, _ in outs}
    assert len(keys) == 1, "processes started together must agree on one key"
    key = keys.pop()
    assert len(key) >= 50 and "insecure" not in key and all(out.split()[1] == "False" for out, _ in outs)
    path = tmp_path / "var" / "secret_key"
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = subprocess.run([sys.executable, "-c", PRINT_KEY], cwd=REPO_ROOT, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert again.stdout.split()[0] == key, "the key survives a restart"
    other = subprocess.run([sys.executable, "-c", PRINT_KEY], cwd=REPO_ROOT, env=_env(tmp_path / "other"),
                           capture_output=True, text=True, timeout=120)
    assert other.stdout.split()[0] != key, "another machine (var folder) gets another key"
    configured = subprocess.run([sys.executable, "-c", PRINT_KEY], cwd=REPO_ROOT,
                                env=_env(tmp_path / "c", DJANGO_SECRET_KEY="k" * 60), capture_output=True, text=True,
                                timeout=120)
    assert configured.stdout.split() == ["k" * 60, "True"]
    assert not (tmp_path / "c" / "var" / "secret_key").exists()


@pytest.mark.parametrize("argv", [
    ["manage.py", "runall", "--host", "0.0.0.0", "--no-migrate", "--only", "web"],
    ["-m", "config.serve", "-b", "0.0.0.0", "-p", "1", "config.asgi:application"],
])
def test_serving_beyond_loopback_needs_a_configured_key(tmp_path, argv):
    proc = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "refusing to serve on 0.0.0.0" in proc.stderr and "DJANGO_SECRET_KEY" in proc.stderr, proc.stderr


def _call(app, scope, body_messages=()):
    sent, received = [], list(body_messages)
    reads = {"n": 0}

    async def receive():
        reads["n"] += 1
        return received.pop(0) if received else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, reads["n"]


def test_asgi_guard_refuses_a_generated_key_beyond_loopback():
    from config.asgi_guards import LoopbackOnly

    called = []

    async def inner(scope, receive, send):
        called.append(scope)

    app = LoopbackOnly(inner)
    sent, _ = _call(app, {"type": "http", "server": ("10.1.2.3", 8000), "headers": []})
    assert sent[0]["status"] == 503 and not called
    assert json.loads(sent[1]["body"])["error"]["code"] == "secret_key_not_configured"
    _call(app, {"type": "http", "server": ("127.0.0.1", 8000), "headers": []})
    assert len(called) == 1


@pytest.mark.django_db
def test_asgi_guard_refuses_by_content_length_before_reading(settings):
    from config.asgi_guards import BodyLimit

    async def inner(scope, receive, send):
        raise AssertionError("the application must not be called")

    app = BodyLimit(inner)
    scope = {"type": "http", "method": "POST", "path": "/login/",
             "headers": [(b"content-length", str(200 * 1024 * 1024).encode())]}
    sent, reads = _call(app, scope)
    assert reads == 0 and sent[0]["status"] == 413
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "too_large" and error["detail"]["limit_bytes"] == settings.ANON_BODY_MAX_BYTES
    # With a credential the route's limit applies: an upload may be as large as DATASET_MAX_BYTES.
    authed = {**scope, "path": "/api/v1/datasets/",
              "headers": [(b"content-length", str(settings.DATASET_MAX_BYTES).encode()), (b"authorization", b"Token x")]}
    seen = []

    async def passes(scope, receive, send):
        seen.append(scope["path"])

    sent, _ = _call(BodyLimit(passes), authed)
    # Within the upload limit, but the token is forged: refused before the body is read.
    assert sent[0]["status"] == 401 and seen == []
    # No Content-Length: counted while read, cut off past the limit.
    chunk = b"x" * 32 * 1024

    async def reader(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("read past the limit")

    sent, reads = _call(BodyLimit(reader), {**scope, "headers": []},
                        [{"type": "http.request", "body": chunk, "more_body": True}] * 10)
    assert sent[0]["status"] == 413 and reads == settings.ANON_BODY_MAX_BYTES // len(chunk) + 1


def _serve(tmp_path, env):
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port),
                             "config.asgi:application"], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_listening(port, proc=proc, log=tmp_path / "serve.log")
    except AssertionError:
        proc.kill()
        raise
    return proc, port


def _raw(port, head: bytes, body_chunks=(), timeout=20) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server closed: it refused the body
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data and b'"error"' in data and data.rstrip().endswith(b"}"):
                    break
        except OSError:
            pass
        return data


@pytest.mark.slow
def test_daphne_refuses_large_bodies_before_buffering_them(tmp_path):
    env = _env(tmp_path, DATABASE_CONN_MAX_AGE="0")
    proc, port = _serve(tmp_path, env)
    try:
        big = 200 * 1024 * 1024
        answer = _raw(port, (f"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded"
                             f"\r\nContent-Length: {big}\r\n\r\n").encode())
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"without credentials" in answer
        answer = _raw(port, (f"POST /api/v1/datasets/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token abc\r\n"
                             f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {big}\r\n\r\n").encode())
        assert answer.startswith(b"HTTP/1.1 413") and b"DATASET_MAX_BYTES" in answer, answer[:300]
        # Chunked (no Content-Length): counted as it arrives, cut off past the anonymous limit.
        chunk = b"8000\r\n" + b"a" * 0x8000 + b"\r\n"
        answer = _raw(port, b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                      [chunk] * 8)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        # A small request still reaches Django (its CSRF check answers 403: no token, no form).
        body = b"username=nobody&password=wrong"
        answer = _raw(port, (f"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                             f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
                             ).encode() + body)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:300]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.django_db(transaction=True)
def test_asgi_guard_checks_the_credential_before_a_large_body(make_user, organization):
    from rest_framework.authtoken.models import Token

    from config.asgi_guards import BodyLimit

    calls = []

    async def inner(scope, receive, send):
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    user = make_user("uploader", organization)
    good = Token.objects.create(user=user).key
    big = str(5 * 1024 * 1024).encode()
    scope = {"type": "http", "method": "POST", "path": "/api/v1/jobs/", "headers": [(b"content-length", big)]}
    sent, reads = _call(BodyLimit(inner), {**scope, "headers": [*scope["headers"], (b"authorization", b"Token forged")]})
    assert sent[0]["status"] == 401 and reads == 0 and not calls
    sent, _ = _call(BodyLimit(inner), {**scope, "headers": [*scope["headers"], (b"authorization", f"Token {good}".encode())]})
    assert sent[0]["status"] == 204 and calls == ["/api/v1/jobs/"]
    # A small body is not looked up here (the view authenticates it as usual).
    small = {**scope, "headers": [(b"content-length", b"100"), (b"authorization", b"Token forged")]}
    sent, _ = _call(BodyLimit(inner), small)
    assert sent[0]["status"] == 204
