"""Job notifications: e-mail through Django's mail backends and Slack incoming webhooks,
filtered by each user's preferences. Sent from a Celery task, never inside a request."""
from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.core.mail import send_mail

from training.models import NotificationPreference, TrainingJob

logger = logging.getLogger(__name__)

KINDS = ("completed", "failed", "interrupted", "resumed")


def _stop_reason(job: TrainingJob) -> str:
    event = job.events.filter(type="stop_requested").order_by("-created_at").first()
    return event.message if event is not None else "stopped early"


def _message(job: TrainingJob, kind: str) -> tuple[str, str]:
    stopped_early = kind == "completed" and bool(job.result.get("stopped_early"))
    # A run stopped on request (stop early, an OpenAI-API pause) is not announced as a finished
    # training: the title says it stopped, the body why and which checkpoint was kept.
    said = "stopped early" if stopped_early else kind
    title = f"[Bright Run] {job.name}: {said}"
    lines = [f"Job {job.pk} ({job.name}) {said}.", f"Dataset: {job.dataset.name}; preset: {job.preset}; "
             f"base model: {job.base_model}."]
    if kind == "completed":
        if stopped_early:
            lines.append(f"Reason: {_stop_reason(job)}; adapter kept from step {job.result.get('checkpoint_step')}.")
        evaluation = job.result.get("eval") or {}
        if evaluation.get("base_perplexity") and evaluation.get("adapted_perplexity"):
            lines.append(f"Validation perplexity {evaluation['base_perplexity']:.2f} -> {evaluation['adapted_perplexity']:.2f}.")
        lines.append(f"Adapter: {job.adapter_uri}")
    elif kind == "failed":
        lines.append(f"Error ({job.error_class}): {job.error_message}")
        if job.error_suggestion:
            lines.append(f"What to do: {job.error_suggestion}")
    elif kind == "interrupted":
        lines.append(f"The pod was interrupted at step {job.current_step}; resuming from {job.resume_from or 'the start'}.")
    elif kind == "resumed":
        lines.append(f"Attempt {job.attempt} started; {job.lost_steps} steps lost to interruptions so far.")
    lines.append(f"{settings.PUBLIC_BASE_URL}/jobs/{job.pk}/")
    return title, "\n".join(lines)


def notify_job(*, job_id, kind: str) -> dict[str, int]:
    """Send the `kind` notification of a job to its creator. Returns what was sent."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    job = TrainingJob.objects.select_related("created_by", "dataset").get(pk=job_id)
    user = job.created_by
    if user is None:
        return {"email": 0, "slack": 0}
    prefs = NotificationPreference.objects.filter(user=user).first() or NotificationPreference(user=user, on_resumed=False)
    if not prefs.wants(kind):
        return {"email": 0, "slack": 0}
    title, body = _message(job, kind)
    sent = {"email": 0, "slack": 0}
    if prefs.email and user.email:
        sent["email"] = send_mail(title, body, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=False)
    if prefs.slack and settings.SLACK_WEBHOOK_URL:
        response = requests.post(settings.SLACK_WEBHOOK_URL, json={"text": f"*{title}*\n{body}"}, timeout=10)
        response.raise_for_status()
        sent["slack"] = 1
    return sent
