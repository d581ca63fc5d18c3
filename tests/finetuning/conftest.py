"""The official `openai` client against a live test server (pytest-django's live_server), and
the real job stack (Celery worker, local provider, tiny model) for the tests that train."""
from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from tests.jobs.conftest import job_stack, tiny_model_path  # noqa: F401  (fixtures reused as they are)

openai = pytest.importorskip("openai")


@pytest.fixture
def engineer(organization, make_user):
    return make_user("eng", organization)


def _client(live_server, raw_key: str, **kw):
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=raw_key, **{"max_retries": 2, "timeout": 60, **kw})


@pytest.fixture
def issue_key():
    from finetuning.services import api_key_issue

    def issue(user, name: str = "tests") -> str:
        return api_key_issue(user=user, name=name)[1]

    return issue


@pytest.fixture
def client_for(live_server, issue_key):
    """client_for(user or raw key, **client options) → an OpenAI client with a fresh key of that
    user (or that key). The
    clients are closed afterwards: a kept-alive connection would keep a server thread, and its
    database session, open past the test."""
    clients = []

    def make(user, **kw):
        clients.append(_client(live_server, user if isinstance(user, str) else issue_key(user), **kw))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def oai(client_for, engineer):
    return client_for(engineer)


@pytest.fixture
def isolated_queue(settings):
    """Jobs created by tests without a worker go to a queue of their own, emptied afterwards, so no
    other worker ever launches them."""
    from config.celery import app as celery_app

    queue = f"test-oai-{uuid.uuid4().hex[:10]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    yield queue
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
        conn.default_channel.queue_purge(f"{queue}.pods")  # pod control (config/celery_routes.py)
    celery_app.conf.task_default_queue = previous


class RequestLog:
    """Requests the live server received, counted by "METHOD /path" (on the server's side,
    whatever the client retried)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    def __call__(self, sender, environ=None, **kwargs):
        if environ is not None:
            with self._lock:
                self.counts[f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"] += 1


@pytest.fixture
def server_requests():
    from django.core.signals import request_started

    log = RequestLog()
    request_started.connect(log, weak=False)
    yield log.counts
    request_started.disconnect(log)
