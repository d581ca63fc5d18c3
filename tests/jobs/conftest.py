"""A real stack for end-to-end job tests: the test database (PostgreSQL), Redis, a live HTTP
server for pod webhooks, a real Celery worker process on a queue of its own, the local provider
running the real gpu_worker, and a tiny model built from the shipped sample."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SAMPLE_FILE


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from gpu_worker.tiny_model import make_tiny_model

    return Path(make_tiny_model(SAMPLE_FILE, tmp_path_factory.mktemp("tiny") / "tiny-llama"))


@pytest.fixture
def fake(settings):
    """The in-memory fake GPU provider as the default provider, reset for this test."""
    from training.providers import clear_provider_cache, get_provider

    settings.GPU_PROVIDER = "fake"
    clear_provider_cache()
    provider = get_provider("fake")
    provider.reset()
    yield provider
    clear_provider_cache()


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    auth = f"{user}:{s['PASSWORD']}@" if s.get("PASSWORD") else f"{user}@"
    return f"postgresql://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


@dataclass
class Stack:
    env: dict
    queue: str
    log_dir: Path
    worker: subprocess.Popen | None = None
    worker_log: Path | None = None
    starts: int = 0

    def start_worker(self, *, wait_ready: bool = True, extra_env: dict | None = None) -> subprocess.Popen:
        self.starts += 1
        self.worker_log = self.log_dir / f"worker-{self.starts}.log"
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", f"{self.queue},{self.queue}.pods", "-l", "INFO",
                "--concurrency", "2", "-n", f"test-{self.queue}-{self.starts}@%h", "--without-gossip",
                "--without-mingle"]
        self.worker = subprocess.Popen(argv, cwd=REPO_ROOT, env={**self.env, **(extra_env or {})},
                                       stdout=open(self.worker_log, "wb"), stderr=subprocess.STDOUT,
                                       start_new_session=True)
        if wait_ready:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if b" ready." in self.worker_log.read_bytes():
                    break
                if self.worker.poll() is not None:
                    raise RuntimeError(f"celery worker exited:\n{self.worker_log.read_text()[-3000:]}")
                time.sleep(0.2)
            else:
                raise RuntimeError("celery worker did not become ready in 60 s")
        return self.worker

    def kill_worker(self, sig=signal.SIGKILL) -> None:
        if self.worker and self.worker.poll() is None:
            try:
                os.killpg(self.worker.pid, sig)
            except ProcessLookupError:
                pass
            self.worker.wait(timeout=30)

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_worker()

    def log(self) -> str:
        return self.worker_log.read_text(errors="replace")[-5000:] if self.worker_log else ""


@pytest.fixture
def job_stack(transactional_db, live_server, settings, storage_root, tmp_path):
    """Everything but the worker's pod command, which tests choose (the real gpu_worker by default)."""
    from config.celery import app as celery_app
    from training.providers import clear_provider_cache

    queue = f"test-{uuid.uuid4().hex[:10]}"
    pods_dir = tmp_path / "pods"
    settings.PUBLIC_BASE_URL = live_server.url
    settings.LOCAL_PODS_DIR = str(pods_dir)
    settings.ALLOW_TEST_HOOKS = True
    settings.GPU_PROVIDER = "local"
    settings.CHECKPOINT_EVERY_STEPS = 2
    settings.POD_COMPLETED_EXIT_WAIT_S = 1
    # Base models named by path must sit under MODELS_DIR (issue 16): here, pytest's temp folder,
    # where the tiny model is built.
    settings.MODELS_DIR = str(tmp_path.parent)
    clear_provider_cache()
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "PUBLIC_BASE_URL": live_server.url,
        "STORAGE_BACKEND": "disk",
        "STORAGE_DISK_ROOT": str(storage_root),
        "LOCAL_PODS_DIR": str(pods_dir),
        "ALLOW_TEST_HOOKS": "1",
        "CHECKPOINT_EVERY_STEPS": "2",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "POD_COMPLETED_EXIT_WAIT_S": "1",
        "MODELS_DIR": str(tmp_path.parent),
        # A small evaluating stage for the tiny CPU model (the validation tests ask for more).
        "POD_EVAL_MAX_REPLIES": "2",
        "POD_EVAL_MAX_NEW_TOKENS": "12",
        "POD_EVAL_MAX_EMOTION_ITEMS": "6",
        "POD_EVAL_KNOWLEDGE": "0",
        "PYTHONUNBUFFERED": "1",
    }
    stack = Stack(env=env, queue=queue, log_dir=tmp_path)
    yield stack
    stack.kill_worker()
    # No pod may outlive the test.
    from training.providers import get_provider

    provider = get_provider("local")
    for pod in provider.list(""):
        provider.terminate(pod.pod_id)
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
        conn.default_channel.queue_purge(f"{queue}.pods")  # pod control (config/celery_routes.py)
    celery_app.conf.task_default_queue = previous_queue
    clear_provider_cache()


def wait_for(predicate, timeout_s: float, interval_s: float = 0.25, message: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {message}")


def read_pod_json(pods_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in pods_dir.glob("*/pod.json")]
