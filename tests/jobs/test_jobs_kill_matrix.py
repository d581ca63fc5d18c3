"""SIGKILL the Celery worker at random points during launch, 20 times: after reconcile, exactly
one pod per live job and no orphans. Pods are a stand-in process (the launch path is what is
under test, not training)."""
import json
import random
import sys
import time

import pytest

from tests.jobs.conftest import wait_for
from tests.jobs.factories import make_dataset
from training import states
from training.models import TrainingJob

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STAND_IN = [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(75)); time.sleep(600)"]
KILLS = 20


def test_kill_the_worker_during_launch(job_stack, organization, settings):
    from training import tasks
    from training.providers import clear_provider_cache, get_provider
    from training.services.jobs import job_create
    from training.services.pods import pods_reconcile

    settings.LOCAL_WORKER_COMMAND = STAND_IN
    settings.LAUNCH_STALL_S = 0
    settings.POD_ORPHAN_GRACE_S = 0
    clear_provider_cache()
    job_stack.env["LOCAL_WORKER_COMMAND"] = json.dumps(STAND_IN)
    dataset = make_dataset(organization)
    rng = random.Random(20261128)
    jobs = []
    for i in range(KILLS):
        job_stack.start_worker()
        job = job_create(organization=organization, dataset=dataset, provider="local", start=False, base_model="tiny")
        jobs.append(job)
        tasks.job_launch.delay(str(job.pk))
        time.sleep(rng.uniform(0.0, 0.6))
        job_stack.kill_worker()
    # Where the kills landed: before the launch started, between recording the pod name and
    # saving the pod id (the dangerous window), or after.
    landed = {"queued": 0, "named, no pod id": 0, "launched": 0}
    for job in jobs:
        job.refresh_from_db()
        key = "queued" if job.status == states.QUEUED else ("launched" if job.pod_id else "named, no pod id")
        landed[key] += 1
    # A cancelled job must not keep a pod either.
    from training.services.jobs import job_cancel

    job_cancel(job_id=jobs[0].pk)

    job_stack.start_worker()
    provider = get_provider("local")

    def settled():
        pods_reconcile()
        live_jobs = list(TrainingJob.objects.filter(pk__in=[j.pk for j in jobs], status__in=states.POD_STATES))
        pods = provider.list("brightrun-")
        names = [p.name for p in pods]
        wanted = {j.pod_name for j in live_jobs}
        return (all(j.pod_id for j in live_jobs) and len(live_jobs) == KILLS - 1
                and sorted(names) == sorted(wanted) and len(names) == len(set(names)))

    wait_for(settled, 120, interval_s=1.0, message=f"one pod per live job; worker log:\n{job_stack.log()}")
    pods = provider.list("brightrun-")
    by_job = {}
    for pod in pods:
        by_job.setdefault(pod.name.rsplit("-", 1)[0], []).append(pod)
    assert all(len(v) == 1 for v in by_job.values())
    assert len(pods) == KILLS - 1
    print(f"\nkill matrix: {KILLS} SIGKILLs during launch {landed}; live jobs {KILLS - 1}, pods {len(pods)}, "
          "duplicates 0, orphans 0")
