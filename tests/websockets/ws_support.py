"""A real daphne serving config.asgi on a free port, sharing the test database and Redis, for
websocket and browser tests (`transaction=True` tests: the server sees committed rows only)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.net_support import free_port, wait_listening



@dataclass
class Daphne:
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_daphne(env: dict[str, str], log: Path, *, timeout_s: float = 30) -> tuple[subprocess.Popen, int]:
    """daphne serving config.asgi on a free port with `env`, its output in `log`; returns once it
    listens (raises with the log's tail when it exits or does not listen in `timeout_s`)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                            cwd=REPO_ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_listening(port, proc=proc, log=log, timeout_s=timeout_s)
    except AssertionError:
        proc.kill()
        raise
    return proc, port


def stop_daphne(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.conf import settings

    from tests.jobs.conftest import _database_url

    with django_db_blocker.unblock():
        database_url = _database_url()
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": settings.REDIS_URL, "DATABASE_CONN_MAX_AGE": "0",
           "PYTHONUNBUFFERED": "1", "STORAGE_DISK_ROOT": str(tmp_path_factory.mktemp("storage"))}
    proc, port = start_daphne(env, log)
    yield Daphne(port=port, log=log)
    stop_daphne(proc)
    time.sleep(0.5)  # let PostgreSQL see its connections go before the test database is dropped


def session_cookie(user) -> str:
    """A logged-in session for `user`, as a Cookie header value (the session is in the database)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"
