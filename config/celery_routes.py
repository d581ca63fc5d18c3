"""Pod control first: launching, stopping and terminating pods go to a queue of their own, served
by a worker of their own (`runall`'s `pods` process, compose's `pod-worker`), so no backlog of
validation or packaging work on the default queue delays a cancel (a pod billed meanwhile).

The queue is `<default queue>.pods` (CELERY_POD_QUEUE_SUFFIX), computed when a task is sent, so
a test that gives itself its own default queue gets its own pod queue too.
"""
from __future__ import annotations

POD_CONTROL_TASKS = frozenset({
    "training.tasks.job_launch",
    "training.tasks.job_resume",
    "training.tasks.job_terminate",
    "training.tasks.pod_terminate",
    "training.tasks.job_signal_stop",
})


def pod_control_queue(default_queue: str | None = None) -> str:
    from django.conf import settings

    if default_queue is None:
        from config.celery import app

        default_queue = app.conf.task_default_queue
    return f"{default_queue}{settings.CELERY_POD_QUEUE_SUFFIX}"


def route(name, args, kwargs, options, task=None, **kw):
    if name in POD_CONTROL_TASKS:
        return {"queue": pod_control_queue()}
    return None
