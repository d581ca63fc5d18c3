"""Item 4 of issue 10: SIGKILL the real Celery worker at random points while it launches,
terminates and resumes pods (each kill lands on one of each), with the beat's reconcile running
throughout (another process). Pods are a stand-in process on the local provider: the pod path is
under test, not training. Measures orphans after settling and the longest orphan life, against
the bound POD_ORPHAN_GRACE_S + RECONCILE_INTERVAL_S."""
from __future__ import annotations

import json
import random
import sys
import threading
import time

import pytest
from django.db import connections

from tests.jobs.conftest import wait_for
from tests.jobs.factories import make_dataset
from tests.reliability.figures import FULL, record, size
from training import states
from training.models import TrainingJob

# Full size only (make reliability); `make test` runs the 20-kill launch matrix in tests/jobs.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not FULL, reason="full size only: make reliability")]

STAND_IN = [sys.executable, "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(75)); time.sleep(900)"]
KILLS = size(3, 200)
GRACE_S = 3.0
INTERVAL_S = 2.0


class Observer:
    """Watches the provider and the jobs every 0.2 s: how long each pod lives without a live
    job owning it (from the moment it is first seen unowned until it is gone or owned)."""

    def __init__(self, provider):
        self.provider = provider
        self.unowned_since: dict[str, float] = {}
        self.lives: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                live = {p.name for p in self.provider.list("brightrun-") if p.state in ("running", "starting")}
                owned = set(TrainingJob.objects.filter(status__in=states.POD_STATES).values_list("pod_name", flat=True))
                for name in live - owned:
                    self.unowned_since.setdefault(name, now)
                for name in list(self.unowned_since):
                    if name not in live or name in owned:
                        self.lives.append(now - self.unowned_since.pop(name))
                self.stop.wait(0.2)
        finally:
            connections.close_all()

    def longest(self) -> float:
        now = time.monotonic()
        return max(self.lives + [now - t for t in self.unowned_since.values()] + [0.0])


class Beat:
    """pods_reconcile every INTERVAL_S in a thread of its own (the beat plus a healthy worker)."""

    def __init__(self):
        self.stop = threading.Event()
        self.runs = 0
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        from training.services.pods import pods_reconcile

        try:
            while not self.stop.wait(INTERVAL_S):
                try:
                    pods_reconcile()
                    self.runs += 1
                except Exception as exc:  # noqa: BLE001 - recorded; a reconcile error is a finding
                    self.errors.append(repr(exc))
        finally:
            connections.close_all()


def test_kill_matrix_launch_terminate_resume(job_stack, organization, settings):
    from training import tasks
    from training.providers import clear_provider_cache, get_provider
    from training.services.jobs import job_cancel, job_create
    from training.services.pods import pods_reconcile

    settings.LOCAL_WORKER_COMMAND = STAND_IN
    settings.LAUNCH_STALL_S = 5
    settings.POD_ORPHAN_GRACE_S = GRACE_S
    settings.RECONCILE_INTERVAL_S = INTERVAL_S
    settings.POD_EXIT_SETTLE_S = 2
    settings.JOB_MAX_ATTEMPTS = 10_000
    clear_provider_cache()
    job_stack.env["LOCAL_WORKER_COMMAND"] = json.dumps(STAND_IN)
    provider = get_provider("local")
    dataset = make_dataset(organization)
    rng = random.Random(20261128)

    def new_job():
        return job_create(organization=organization, dataset=dataset, provider="local", start=False, base_model="tiny")

    # A few running jobs to terminate and interrupt.
    job_stack.start_worker()
    running = [new_job() for _ in range(3)]
    for job in running:
        tasks.job_launch.delay(str(job.pk))
    wait_for(lambda: all(TrainingJob.objects.get(pk=j.pk).pod_id for j in running), 60, message="first pods")
    job_stack.kill_worker()

    observer, beat = Observer(provider), Beat()
    observer.thread.start()
    beat.thread.start()
    landed = {"launch": {}, "terminate": {}, "resume": {}}
    jobs, cancelled = list(running), []
    t0 = time.monotonic()
    try:
        for k in range(KILLS):
            job_stack.start_worker()
            launch = new_job()
            jobs.append(launch)
            tasks.job_launch.delay(str(launch.pk))
            live = [j for j in TrainingJob.objects.filter(pk__in=[j.pk for j in jobs], status__in=states.POD_STATES)
                    .exclude(pod_id="")]
            victim = rng.choice(live) if live else None
            if victim is not None:
                job_cancel(job_id=victim.pk)  # on commit: terminate the pod (a worker task)
                cancelled.append(victim)
                live.remove(victim)
            evicted = rng.choice(live) if live else None
            if evicted is not None:
                provider.interrupt(evicted.pod_id)  # a spot eviction: the stand-in exits 75
                pods_reconcile()                     # → interrupted, on commit job_resume (a worker task)
            time.sleep(rng.uniform(0.0, 0.3))
            job_stack.kill_worker()
            launch.refresh_from_db()
            key = "queued" if launch.status == states.QUEUED else ("launched" if launch.pod_id else "named, no pod id")
            landed["launch"][key] = landed["launch"].get(key, 0) + 1
            if victim is not None:
                key = "pod gone" if provider.status(victim.pod_id) is None or \
                    provider.status(victim.pod_id).state not in ("running", "starting") else "pod alive"
                landed["terminate"][key] = landed["terminate"].get(key, 0) + 1
            if evicted is not None:
                evicted.refresh_from_db()
                key = evicted.status if evicted.status != states.PROVISIONING else \
                    ("relaunched" if evicted.pod_id else "named, no pod id")
                landed["resume"][key] = landed["resume"].get(key, 0) + 1

        # Settle: a healthy worker, the beat keeps reconciling.
        job_stack.start_worker()

        def settled():
            live_jobs = list(TrainingJob.objects.filter(pk__in=[j.pk for j in jobs], status__in=states.POD_STATES))
            names = [p.name for p in provider.list("brightrun-") if p.state in ("running", "starting")]
            wanted = {j.pod_name for j in live_jobs}
            return (all(j.pod_id for j in live_jobs) and sorted(names) == sorted(wanted)
                    and len(names) == len(set(names)) and not observer.unowned_since)

        wait_for(settled, 120, interval_s=0.5, message=f"one pod per live job; worker log:\n{job_stack.log()}")
    finally:
        observer.stop.set()
        beat.stop.set()
        observer.thread.join(10)
        beat.thread.join(30)
    elapsed = time.monotonic() - t0
    live_jobs = list(TrainingJob.objects.filter(pk__in=[j.pk for j in jobs], status__in=states.POD_STATES))
    pods = [p for p in provider.list("brightrun-") if p.state in ("running", "starting")]
    per_job = {}
    for pod in pods:
        per_job.setdefault(pod.name.rsplit("-", 1)[0], []).append(pod.name)
    orphans = {p.name for p in pods} - {j.pod_name for j in live_jobs}
    duplicates = sum(len(v) - 1 for v in per_job.values())
    longest = observer.longest()
    label = "4 kill matrix"
    record(label, "SIGKILLs of the Celery worker (each during a launch, a terminate and a resume)", KILLS,
           size=f"{KILLS} kills")
    record(label, "kills landed: launch", json.dumps(landed["launch"]))
    record(label, "kills landed: terminate", json.dumps(landed["terminate"]))
    record(label, "kills landed: resume", json.dumps(landed["resume"]))
    record(label, "orphaned pods after settling; second pods for one job", f"{len(orphans)}; {duplicates}", target="0; 0")
    record(label, "longest orphan life (observed every 0.2 s)", f"{longest:.1f} s ({len(observer.lives)} orphans seen)",
           target=f"≤ grace {GRACE_S:.0f} s + interval {INTERVAL_S:.0f} s (+0.5 s observation)")
    record(label, "reconcile runs; reconcile errors", f"{beat.runs}; {len(beat.errors)}", size=f"{elapsed:.0f} s")
    assert not orphans and duplicates == 0
    assert not beat.errors, beat.errors[:3]
    assert longest <= GRACE_S + INTERVAL_S + 1.5, observer.lives
