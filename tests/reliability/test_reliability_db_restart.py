"""Item 5 of issue 10, second half: PostgreSQL restarted while a pod's events stream in.

A private PostgreSQL cluster (`servers.PrivatePostgres`, a free port, never the machine's shared
server) holds a copy of the test database with one running job; a daphne process (the product's
ASGI entry point, its default persistent connections) serves `/api/v1/pod-events/` from it; the
pod's real sender (`gpu_worker.events.EventSender`, its queue, batching and retries) posts a stream
of signed events for the job while the cluster is stopped (`-m immediate`: connections cut, as in
a crash) and started again on the same data directory, several times.

Afterwards every emitted event is stored exactly once (no loss: the sender retries 5xx and refused
connections; no duplicate: dedup by event id, and a retried request is resent as it was), every
metric point and checkpoint is there, and the job's state is the in-order one.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from tests.jobs.factories import make_running_job
from tests.reliability.figures import record, size
from tests.reliability.servers import PrivatePostgres, pg_bin
from tests.websockets.ws_support import start_daphne

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RESTARTS = size(1, 6)    # fast: one restart while sending; full: every second one with the pod quiet
STEPS = size(150, 600)   # metrics events; plus 3 stages, a checkpoint every 10 steps, a log every 25
EMIT_EVERY_S = 0.02      # the pod's pace: well inside the sender's 256-event queue over an outage
DOWN_S = 1.5             # how long the cluster stays down each time


def _copy_test_database(pg: PrivatePostgres, tmp_path) -> None:
    """The test database (schema and the rows the test made) into the private cluster."""
    from tests.jobs.conftest import _database_url

    dump = tmp_path / "dump.sql"
    subprocess.run([str(pg.bin / "pg_dump"), "--no-owner", "--no-privileges", "-f", str(dump), _database_url()],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([str(pg.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), pg.url()],
                   check=True, capture_output=True, timeout=120)


def _start_daphne(database_url: str, tmp_path) -> tuple[subprocess.Popen, int, object]:
    from django.conf import settings

    log = tmp_path / "daphne.log"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_CONN_MAX_AGE"}  # the product's default
    env.update(DATABASE_URL=database_url, REDIS_URL=settings.REDIS_URL, PYTHONUNBUFFERED="1",
               STORAGE_DISK_ROOT=str(tmp_path / "storage"))
    proc, port = start_daphne(env, log, timeout_s=60)
    return proc, port, log


class Wire:
    """Every request the sender makes, as the pod saw it: when it started and ended, and 'ok',
    the status code or the error."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log: list[tuple[float, float, str]] = []

    def record(self, started: float, outcome: str) -> None:
        with self.lock:
            self.log.append((started, time.monotonic(), outcome))

    def failures(self) -> list[tuple[float, float, str]]:
        return [r for r in self.log if r[2] != "ok"]

    def longest_outage(self) -> float:
        """Longest time from a failed request to the next delivered one."""
        longest, since = 0.0, None
        for _started, ended, outcome in self.log:
            if outcome == "ok":
                if since is not None:
                    longest = max(longest, ended - since)
                since = None
            elif since is None:
                since = ended
        return longest


class Restarts:
    """Stops the cluster (immediate: every connection cut, as in a crash) and starts it again on
    the same data directory; `busy` restarts run in a thread while the pod keeps sending, quiet
    ones while the pod has nothing to send (the server's pooled connection is then stale when
    the next event comes)."""

    def __init__(self, pg: PrivatePostgres):
        self.pg = pg
        self.windows: list[tuple[float, float]] = []  # (stopped at, accepting again at), monotonic
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def _restart(self) -> None:
        try:
            down = time.monotonic()
            self.pg.stop("immediate")
            time.sleep(DOWN_S)
            self.pg.start()
            self.windows.append((down, time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def busy(self) -> None:
        thread = threading.Thread(target=self._restart, daemon=True)
        thread.start()
        self.threads.append(thread)

    def quiet(self, sender) -> None:
        deadline = time.monotonic() + 60
        while sender.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._restart()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)


def _stored(pg: PrivatePostgres, job_id) -> dict:
    import psycopg

    with psycopg.connect(pg.url(), autocommit=True) as conn:
        events = conn.execute("SELECT event_id, seq, type, data FROM training_jobevent WHERE job_id = %s AND source = 'pod'",
                              (job_id,)).fetchall()
        steps = [r[0] for r in conn.execute("SELECT step FROM training_metricpoint WHERE job_id = %s", (job_id,))]
        checkpoints = [r[0] for r in conn.execute("SELECT step FROM training_checkpoint WHERE job_id = %s", (job_id,))]
        status, current_step, total_steps = conn.execute(
            "SELECT status, current_step, total_steps FROM training_trainingjob WHERE id = %s", (job_id,)).fetchone()
    return {"events": events, "metric_steps": steps, "checkpoints": checkpoints, "status": status,
            "current_step": current_step, "total_steps": total_steps}


def test_postgres_restart_during_event_ingestion(organization, tmp_path, monkeypatch):
    import requests

    from gpu_worker.contracts import JobSpec
    from gpu_worker.events import EventSender, read_events

    if pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin) on this machine")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL refuses to run as root")

    job = make_running_job(organization, status="provisioning")
    pg = PrivatePostgres(tmp_path / "pg")
    pg.init()
    pg.start()
    daphne = None
    try:
        _copy_test_database(pg, tmp_path)
        daphne, port, daphne_log = _start_daphne(pg.url(), tmp_path)

        wire = Wire()
        real_post = requests.Session.post

        def post(self, url, *args, **kwargs):
            started = time.monotonic()
            try:
                resp = real_post(self, url, *args, **kwargs)
            except requests.RequestException as exc:
                wire.record(started, type(exc).__name__)
                raise
            wire.record(started, "ok" if resp.status_code < 300 else str(resp.status_code))
            return resp

        monkeypatch.setattr(requests.Session, "post", post)
        spec = JobSpec(job_id=str(job.pk), attempt=job.attempt, base_model="tiny", train_uri="file:///nowhere/train.jsonl",
                       val_uri=None, output_uri="file:///nowhere/out", callback_url=f"http://127.0.0.1:{port}/api/v1/pod-events/",
                       webhook_secret=job.webhook_secret)
        sender = EventSender(spec, tmp_path / "pod")
        restarts = Restarts(pg)
        # Restart k at the k-th of RESTARTS evenly spaced steps; even k while sending, odd k quiet.
        marks = {int(STEPS * (k + 1) / (RESTARTS + 1)): k for k in range(RESTARTS)}

        for stage in ("preprocessing", "model_loading", "training"):
            sender.emit("stage_changed", {"stage": stage})
        for step in range(1, STEPS + 1):
            if step in marks and marks[step] % 2 == 0:
                restarts.busy()
            elif step in marks:
                restarts.quiet(sender)
            sender.emit("metrics", {"loss": round(2.0 / step, 6), "learning_rate": 1e-4, "total_steps": STEPS}, step=step)
            if step % 10 == 0:
                sender.emit("checkpoint_saved", {"step": step, "uri": f"file:///ck/{job.pk}/step-{step}"}, step=step)
            if step % 25 == 0:
                sender.emit("log", {"level": "info", "message": f"step {step}"}, step=step)
            time.sleep(EMIT_EVERY_S)
        restarts.join()
        assert restarts.errors == [], f"restarting PostgreSQL failed: {restarts.errors!r}"
        flushed = sender.close(deadline_s=120)
        stored = _stored(pg, job.pk)
    finally:
        if daphne is not None and daphne.poll() is None:
            os.killpg(daphne.pid, signal.SIGTERM)
            daphne.wait(timeout=20)
        pg.cleanup()

    sent = read_events(tmp_path / "pod" / "events.jsonl")
    # Which emitted events each stored row carries: itself, or the points of a metrics batch.
    carried: dict[int, int] = {}
    for _event_id, seq, type_, data in stored["events"]:
        points = (data or {}).get("points") if type_ == "metrics" else None
        for s in ([p["seq"] for p in points] if isinstance(points, list) else [seq]):
            carried[s] = carried.get(s, 0) + 1
    seqs = [e["seq"] for e in sent]
    lost = [s for s in seqs if s not in carried]
    duplicated = [s for s, n in carried.items() if n > 1]
    metric_steps = sorted(stored["metric_steps"])
    outage = wire.longest_outage()
    # Failed requests that did not overlap a restart (one cut by the stop started just before
    # it): the server used a pooled connection that a restart had cut, after the cluster was back.
    after_back = [o for started, ended, o in wire.failures()
                  if not any(started <= up and ended >= down for down, up in restarts.windows)]

    record("5 PostgreSQL restarts", "restarts during ingestion (stop -m immediate, start)", len(restarts.windows),
           size=f"{RESTARTS} × {DOWN_S} s down" + (", every second one with the pod quiet" if RESTARTS > 1 else ""))
    record("5 PostgreSQL restarts", "events emitted by the pod (stages, metrics, checkpoints, logs)", len(sent),
           size=f"{STEPS} steps")
    record("5 PostgreSQL restarts", "events lost", len(lost), target="0")
    record("5 PostgreSQL restarts", "events stored more than once", len(duplicated), target="0")
    record("5 PostgreSQL restarts", "requests failed and retried by the pod (5xx, refused)",
           f"{len(wire.failures())} ({', '.join(sorted({o for *_, o in wire.failures()})) or 'none'})")
    record("5 PostgreSQL restarts", "requests failed while the database was up (stale connections)", len(after_back), target="0")
    record("5 PostgreSQL restarts", "longest outage seen by the pod (failed request → next delivery)",
           f"{outage:.1f} s", target=f"database down {DOWN_S} s + backoff")

    assert flushed, f"the sender still holds {sender.pending()} events after the flush"
    assert len(restarts.windows) == RESTARTS
    assert wire.failures(), "no request failed: the restarts did not hit the stream"
    assert lost == [], f"{len(lost)} events lost (seq {lost[:10]}…); daphne log:\n{daphne_log.read_text()[-3000:]}"
    assert duplicated == [], f"events stored more than once: seq {duplicated[:10]}"
    assert sender.dropped == 0
    assert metric_steps == list(range(1, STEPS + 1)), "metric points missing or repeated"
    assert sorted(stored["checkpoints"]) == list(range(10, STEPS + 1, 10))
    assert (stored["status"], stored["current_step"], stored["total_steps"]) == ("training", STEPS, STEPS)
    assert after_back == [], (f"{len(after_back)} requests failed after PostgreSQL was back ({after_back}): stale connections; "
                              f"daphne log:\n{daphne_log.read_text()[-3000:]}")
