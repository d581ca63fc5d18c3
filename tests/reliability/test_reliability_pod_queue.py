"""Issue 16 item 5: pod control has its own queue, so a cancel's terminate is never behind a
validation backlog; and a repeated validation request returns the live run instead of another."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.reliability.figures import record

pytestmark = pytest.mark.django_db(transaction=True)


def _queued_task_names(queue: str) -> list[str]:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]


def test_terminate_goes_to_the_pod_queue_ahead_of_a_validation_backlog(organization, isolated_queue):
    from tests.jobs.factories import make_running_job
    from training.services.jobs import job_cancel
    from validation import tasks as validation_tasks

    jobs = [make_running_job(organization, status="training") for _ in range(6)]
    for _ in range(37):  # what one job's repeated validation requests queued in the issue
        validation_tasks.job_validate.delay(str(uuid.uuid4()))
    for job in jobs:
        job_cancel(job_id=job.pk)
    default, pods = _queued_task_names(isolated_queue), _queued_task_names(f"{isolated_queue}.pods")
    assert pods.count("training.tasks.job_terminate") == 6, pods
    assert "training.tasks.job_terminate" not in default
    assert default.count("validation.tasks.job_validate") == 37
    ahead = max((i for i, name in enumerate(pods) if name != "training.tasks.job_terminate"), default=-1) + 1
    record("16.5 pod control", "tasks queued ahead of 6 job_terminate with 37 validations waiting", ahead,
           target="0 (was 37)")
    assert ahead == 0


def test_runall_and_compose_run_a_pod_control_worker():
    import yaml
    from django.conf import settings

    from tests.conftest import REPO_ROOT
    from training.management.commands.runall import process_commands

    commands = process_commands("127.0.0.1", 8000, 2, 1)
    pods_queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}.pods"
    assert commands["pods"][commands["pods"].index("-Q") + 1] == pods_queue
    assert commands["worker"][commands["worker"].index("-Q") + 1] == settings.CELERY_TASK_DEFAULT_QUEUE
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    assert "celery.pods" in services["pod-worker"]["command"]
    assert "celery.pods" not in services["worker"]["command"] and "celery" in services["worker"]["command"]


@pytest.mark.slow
def test_a_repeated_validation_request_returns_the_live_run(organization, client_as, isolated_queue):
    from accounts.models import Role
    from tests.validation.test_validation_runs import _completed_job
    from validation.models import RunStatus, ValidationRun

    engineer = client_as("eng", organization, Role.ENGINEER)
    job = _completed_job(organization, engineer.user)
    first = engineer.post(f"/api/v1/jobs/{job.pk}/validation/")
    assert first.status_code == 202, first.json()
    answers = [engineer.post(f"/api/v1/jobs/{job.pk}/validation/") for _ in range(36)]
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["id"] for a in answers} == {first.json()["id"]}
    assert ValidationRun.objects.filter(job=job, trigger="on_demand").count() == 1
    queued = _queued_task_names(isolated_queue).count("validation.tasks.validation_run_execute")
    record("16.5 pod control", "validation runs / tasks queued for 37 requests on one job", f"1 / {queued}",
           target="1 / 1 (was 37 / 37)")
    assert queued == 1
    # Once it has finished, a new request starts a new run.
    ValidationRun.objects.filter(pk=first.json()["id"]).update(status=RunStatus.COMPLETED)
    assert engineer.post(f"/api/v1/jobs/{job.pk}/validation/").status_code == 202
