"""Pods: launch (idempotent, adopts a pod that already exists), terminate (until confirmed),
resume after an interruption, and reconcile the provider's pods with the jobs.

Provider calls happen outside row locks (they can take 30 s); every decision is re-checked
under the lock afterwards.
"""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gpu_worker.contracts import EXIT_INTERRUPTED, SPEC_ENV_VAR
from training import states
from training.models import Checkpoint, JobEvent, TrainingJob
from training.providers import (
    POD_EXITED,
    POD_TERMINATED,
    NoCapacityError,
    PodRequest,
    ProviderError,
    get_provider,
    pod_name,
    pod_name_prefix,
)
from training.services.jobs import job_lock, job_move, job_spec_build, job_stopped, stop_reason
from training.providers.base import describe_request
from training.services.pod_events import interruption_record

logger = logging.getLogger(__name__)

# `<prefix>-<job uuid>-<attempt>`: every pod names its job, so a pod confirmed gone is billed to it
# even when the job has moved on to another pod.
_POD_NAME_JOB_RE = re.compile(r"-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(\d+)$")


class PodStillAlive(Exception):
    """The provider has not confirmed the pod is gone yet; the terminate task retries."""


@dataclass(frozen=True)
class LaunchOutcome:
    action: str  # launched | adopted | skipped | superseded
    pod_id: str = ""
    pod_name: str = ""


def _pod_request(job: TrainingJob) -> PodRequest:
    spec = job_spec_build(job)
    env = {SPEC_ENV_VAR: spec.to_env_value()}
    if job.test_hooks and settings.ALLOW_TEST_HOOKS and job.provider == "local":
        env["BRIGHTRUN_ALLOW_TEST_HOOKS"] = "1"
    return PodRequest(
        name=job.pod_name,
        gpu_type_id=job.gpu_type,
        env=env,
        cloud_type=job.cloud_type,
        spot=job.spot,
        bid_per_gpu=float(job.bid_per_gpu) if job.bid_per_gpu is not None else None,
        gpu_count=job.gpu_count,
        image=settings.RUNPOD_IMAGE,
    )


def job_launch(*, job_id) -> LaunchOutcome:
    """Start the job's next attempt, or finish starting the current one after a crash.

    The pod name is recorded (and committed) before the provider is called, so a retry of this
    function after the worker died at any point finds and adopts the pod instead of starting a
    second one. Provider errors propagate: transient ones are retried by the task.
    """
    with transaction.atomic():
        job = job_lock(job_id, select_related=("dataset",))
        if job.status in (states.QUEUED, states.INTERRUPTED):
            job.attempt += 1
            job.pod_name = pod_name(job.pk, job.attempt)
            job.pod_id = ""
            job.webhook_secret = secrets.token_urlsafe(32)
            reason = "launching" if job.attempt == 1 else f"relaunching (attempt {job.attempt})"
            if job.resume_from:
                reason += f" from checkpoint {job.resume_from}"
            job_move(job, states.PROVISIONING, reason=reason)
        elif not (job.status == states.PROVISIONING and not job.pod_id):
            return LaunchOutcome("skipped", job.pod_id, job.pod_name)
        request = _pod_request(job)
        provider_name = job.provider

        alternatives = _launch_alternatives(job)

    provider = get_provider(provider_name)
    existing = provider.find_by_name(request.name)
    used = request
    if existing is not None:
        pod = existing
    elif alternatives:
        pod, used = provider.launch_with_fallback(
            request, alternatives, on_refused=lambda candidate, exc: _capacity_refused_record(job_id, candidate))
    else:
        try:
            pod = provider.launch(request)
        except NoCapacityError:
            _capacity_refused_record(job_id, request)
            raise

    with transaction.atomic():
        job = job_lock(job_id)
        superseded = job.pod_name != request.name or job.is_terminal
        if used is not request and not superseded:
            _fallback_record(job, request, used)
        request = used
        # The pod exists and bills from its own start: recorded for billing even when it is
        # superseded (the job that rented it pays for it until it is confirmed gone).
        pod_started_record(job, pod, request, adopted=bool(existing))
        if superseded:
            # Cancelled (or superseded) while we were launching: this pod belongs to nobody.
            from training import tasks

            transaction.on_commit(lambda: tasks.pod_terminate.delay(provider_name, pod.pod_id))
            return LaunchOutcome("superseded", pod.pod_id, request.name)
        job.pod_id = pod.pod_id
        job.launched_at = job.launched_at or timezone.now()
        job.save(update_fields=["pod_id", "launched_at", "updated_at"])
    return LaunchOutcome("adopted" if existing else "launched", pod.pod_id, request.name)


def _capacity_refused_record(job_id, candidate: PodRequest) -> None:
    """A create refused for capacity (free: no pod): counted for the on-demand fallback."""
    with transaction.atomic():
        job = TrainingJob.objects.filter(pk=job_id).only("pk", "attempt").first()
        if job is not None:
            JobEvent.objects.create(
                job=job, event_id=f"capacity-{secrets.token_hex(6)}", source=JobEvent.SOURCE_SYSTEM,
                type="capacity_refused", attempt=job.attempt,
                message=f"no capacity for {describe_request(candidate)}",
                data={"gpu_type": candidate.gpu_type_id, "cloud_type": candidate.cloud_type, "spot": candidate.spot})


def _launch_alternatives(job: TrainingJob) -> list[dict]:
    """The PodRequest changes the job accepts when its own choice has no capacity, in order; for a
    spot job with `on_demand_after_spot_failures` N, on-demand (same GPU and cloud) once N spot
    creates were refused."""
    fallback = job.capacity_fallback or {}
    out = []
    for alt in fallback.get("alternatives") or []:
        change = {}
        if "gpu_type" in alt:
            change["gpu_type_id"] = alt["gpu_type"]
        if "cloud_type" in alt:
            change["cloud_type"] = alt["cloud_type"]
        if "spot" in alt:
            change["spot"] = bool(alt["spot"])
        if alt.get("bid_per_gpu") is not None:
            change["bid_per_gpu"] = float(alt["bid_per_gpu"])
        if not change.get("spot", job.spot):
            change["bid_per_gpu"] = None
        out.append(change)
    n = fallback.get("on_demand_after_spot_failures")
    if job.spot and n:
        refused = JobEvent.objects.filter(job=job, type="capacity_refused", data__spot=True).count()
        if refused >= n:
            out.append({"spot": False, "bid_per_gpu": None})
    return out


def _fallback_record(job: TrainingJob, wanted: PodRequest, used: PodRequest) -> None:
    """The launch got an alternative: the job now runs (and is estimated) on what it got."""
    job.gpu_type, job.cloud_type, job.spot = used.gpu_type_id, used.cloud_type, used.spot
    job.bid_per_gpu = used.bid_per_gpu if used.spot else None
    job.save(update_fields=["gpu_type", "cloud_type", "spot", "bid_per_gpu", "updated_at"])
    JobEvent.objects.create(
        job=job, event_id=f"fallback-{job.attempt}-{secrets.token_hex(4)}", source=JobEvent.SOURCE_SYSTEM,
        type="capacity_fallback", attempt=job.attempt,
        message=f"no capacity for {describe_request(wanted)}; launched on {describe_request(used)}, "
                "an alternative the job accepts",
        data={"wanted": {"gpu_type": wanted.gpu_type_id, "cloud_type": wanted.cloud_type, "spot": wanted.spot},
              "got": {"gpu_type": used.gpu_type_id, "cloud_type": used.cloud_type, "spot": used.spot,
                      "bid_per_gpu": used.bid_per_gpu}})
    from training.signals import job_relaunched_elsewhere

    job_id = str(job.pk)
    transaction.on_commit(lambda: job_relaunched_elsewhere.send(sender=TrainingJob, job_id=job_id))


def pod_started_record(job: TrainingJob, pod, request: PodRequest | None = None, *, adopted: bool = False) -> JobEvent:
    """The audit row billing opens a pod's segment from: the pod's id, its own start time (the
    provider's, else now) and its own $/h as the provider reported it (None: not known yet; the
    reconciler reads it). One per pod name; idempotent."""
    gpu = request.gpu_type_id if request is not None else job.gpu_type
    cloud = request.cloud_type if request is not None else job.cloud_type
    spot = request.spot if request is not None else job.spot
    started = pod.started_at if pod.started_at else timezone.now().timestamp()
    event, _ = JobEvent.objects.get_or_create(
        job=job, event_id=f"pod-{pod.name or job.pod_name}",
        defaults={"source": JobEvent.SOURCE_SYSTEM, "type": "pod_adopted" if adopted else "pod_launched",
                  "attempt": job.attempt,
                  "message": f"pod {pod.pod_id} ({gpu}, {cloud.lower()}, {'spot' if spot else 'on-demand'}"
                             + (f", ${pod.cost_per_hr:g}/h" if pod.cost_per_hr is not None else "") + ")",
                  "data": {"pod_id": pod.pod_id, "pod_name": pod.name or job.pod_name, "cost_per_hr": pod.cost_per_hr,
                           "started_at": started, "gpu_type": gpu, "cloud_type": cloud, "spot": bool(spot),
                           "bid_per_gpu": str(job.bid_per_gpu) if spot and job.bid_per_gpu is not None else None,
                           "provider": job.provider}})
    return event


def job_of_pod(pod_name: str) -> TrainingJob | None:
    m = _POD_NAME_JOB_RE.search(pod_name or "")
    return TrainingJob.objects.filter(pk=m.group(1)).first() if m else None


def pod_gone_record(*, pod_id: str, pod_name: str = "", ended_at: float | None = None, how: str) -> bool:
    """Record that the provider confirmed the pod gone (or no longer billing): billing closes its
    segment at `ended_at` (the provider's own time when it gave one, else now). Only pods a job
    recorded as started; idempotent. Returns True when this call recorded it."""
    job = None
    if pod_name:
        job = job_of_pod(pod_name)
    if job is None:
        started = (JobEvent.objects.filter(type__in=("pod_launched", "pod_adopted"), data__pod_id=pod_id)
                   .select_related("job").first())
        job = started.job if started is not None else None
    if job is None:
        return False
    started = JobEvent.objects.filter(job=job, type__in=("pod_launched", "pod_adopted"), data__pod_id=pod_id).first()
    if started is None:
        return False
    now = timezone.now().timestamp()
    ended = min(float(ended_at), now) if ended_at else now
    _, created = JobEvent.objects.get_or_create(
        job=job, event_id=f"pod-gone-{pod_id}",
        defaults={"source": JobEvent.SOURCE_SYSTEM, "type": "pod_gone", "attempt": started.attempt,
                  "message": f"pod {pod_id} is gone ({how}); it bills no more",
                  "data": {"pod_id": pod_id, "pod_name": started.data.get("pod_name", pod_name),
                           "ended_at": max(ended, float(started.data.get("started_at") or ended)), "how": how}})
    if created:
        from training.signals import pod_gone

        job_id = str(job.pk)
        transaction.on_commit(lambda: pod_gone.send(sender=TrainingJob, job_id=job_id, pod_id=pod_id))
    return created


def job_launch_failed(*, job_id, error: ProviderError) -> None:
    """A launch that cannot succeed (or ran out of retries): fail the job with the provider's words."""
    with transaction.atomic():
        job = job_lock(job_id)
        if job.is_terminal:
            return
        job.error_class = error.error_class
        job.error_message = error.message
        job.error_suggestion = error.suggestion
        job.save()
        job_move(job, states.FAILED, reason=f"could not start a pod: {error.message}")


def job_pod_terminate(*, job_id) -> bool:
    """Terminate the job's current pod; True once the provider confirms it is gone."""
    job = TrainingJob.objects.get(pk=job_id)
    if not job.pod_name:
        return True
    provider = get_provider(job.provider)
    pod_id = job.pod_id
    if not pod_id:
        found = provider.find_by_name(job.pod_name)
        if found is None:
            return True
        pod_id = found.pod_id
    if not provider.terminate(pod_id):
        raise PodStillAlive(f"pod {pod_id} is still running")
    pod_gone_record(pod_id=pod_id, pod_name=job.pod_name, how="terminated")
    return True


def job_signal_stop(*, job_id) -> None:
    """Ask the pod to stop at the next step boundary (SIGTERM); it checkpoints and reports
    `interrupted`, which completes the stop. A pod that is already gone is handled by reconcile."""
    job = TrainingJob.objects.get(pk=job_id)
    if job.is_terminal or not job.pod_id:
        if job.status == states.PROVISIONING and not job.pod_id:
            with transaction.atomic():
                locked = job_lock(job_id)
                if not locked.is_terminal:
                    job_stopped(locked, "stopped before the pod started")
        return
    # A long grace: the worker finishes its current step (which may be slow) and writes its
    # checkpoint on SIGTERM; killing it at the usual terminate grace loses that checkpoint.
    if get_provider(job.provider).stop(job.pod_id, grace_s=settings.POD_STOP_GRACE_S):
        pod_gone_record(pod_id=job.pod_id, pod_name=job.pod_name, how="terminated on a stop request")


def job_resume(*, job_id) -> bool:
    """Relaunch an interrupted job from its last complete checkpoint, within the attempt limit.
    Records the steps lost since that checkpoint; falls back to on-demand after
    SPOT_FALLBACK_AFTER spot interruptions. Returns True when a relaunch was started."""
    with transaction.atomic():
        job = job_lock(job_id)
        if job.status != states.INTERRUPTED:
            return False
        if job.stop_requested:
            job_stopped(job, "stopped while interrupted")
            return False
        if job.attempt >= settings.JOB_MAX_ATTEMPTS:
            job.error_class = "too_many_interruptions"
            job.error_message = f"the pod was interrupted {job.interruptions} times in {job.attempt} attempts"
            job.error_suggestion = "retry on on-demand capacity (spot off) or another GPU type"
            job.save()
            job_move(job, states.FAILED, reason=job.error_message)
            return False
        checkpoint = Checkpoint.objects.filter(job=job, uri=job.resume_from).first() if job.resume_from else None
        resumed_step = checkpoint.step if checkpoint else 0
        lost = max(0, job.current_step - resumed_step)
        job.lost_steps += lost
        notes = []
        if job.spot and job.interruptions >= settings.SPOT_FALLBACK_AFTER:
            job.spot = False
            notes.append(f"falling back to on-demand after {job.interruptions} spot interruptions")
        job.save()
        JobEvent.objects.create(
            job=job, event_id=f"resume-{job.attempt + 1}", source=JobEvent.SOURCE_SYSTEM, type="resume",
            attempt=job.attempt, step=resumed_step,
            message=f"resuming from step {resumed_step}; {lost} steps lost" + (f"; {'; '.join(notes)}" if notes else ""),
            data={"checkpoint_uri": job.resume_from, "resumed_step": resumed_step, "lost_steps": lost,
                  "interruption": job.interruptions},
        )
    job_launch(job_id=job_id)
    return True


# --------------------------------------------------------------------------- reconcile

@dataclass
class ReconcileReport:
    pods_seen: int = 0
    orphans_terminated: list[str] = field(default_factory=list)
    jobs_interrupted: list[str] = field(default_factory=list)
    jobs_failed: list[str] = field(default_factory=list)
    jobs_relaunched: list[str] = field(default_factory=list)
    pods_adopted: list[str] = field(default_factory=list)


def _age_s(started_at: float | None, now: float) -> float:
    return now - started_at if started_at else float("inf")


def pods_reconcile(*, now=None) -> ReconcileReport:
    """Make the provider's pods and the jobs agree. Lists the pods first, then reads the jobs,
    so a pod launched in between is never mistaken for an orphan (its job already names it).
    Safe to run twice at once: every action is idempotent and re-checked under the row lock."""
    report = ReconcileReport()
    now_dt = now or timezone.now()
    now_ts = now_dt.timestamp()
    prefix = pod_name_prefix() + "-"
    provider_names = {settings.GPU_PROVIDER} | set(
        TrainingJob.objects.filter(status__in=states.LIVE_STATES).values_list("provider", flat=True).distinct())
    for provider_name in sorted(provider_names):
        provider = get_provider(provider_name)
        pods = provider.list(prefix)
        report.pods_seen += len(pods)
        jobs = list(TrainingJob.objects.filter(provider=provider_name, status__in=states.LIVE_STATES))
        owner = {j.pod_name: j for j in jobs if j.pod_name and j.status in states.POD_STATES}
        pods_by_name = {p.name: p for p in pods}

        for pod in pods:
            job = owner.get(pod.name)
            if pod.state in (POD_EXITED, POD_TERMINATED):
                # Stopped or evicted: it bills no more from the provider's own time.
                pod_gone_record(pod_id=pod.pod_id, pod_name=pod.name, ended_at=pod.ended_at,
                                how="evicted" if pod.interrupted else "exited")
            if job is None and _age_s(pod.started_at, now_ts) >= settings.POD_ORPHAN_GRACE_S:
                if provider.terminate(pod.pod_id):
                    report.orphans_terminated.append(pod.name)
                    pod_gone_record(pod_id=pod.pod_id, pod_name=pod.name, how="terminated (no live job)")

        for job in jobs:
            if job.status == states.QUEUED and seconds_in_state(job, states.QUEUED, now_dt) > settings.LAUNCH_STALL_S:
                # Its launch task was lost (a worker died before acknowledging it): send another.
                from training import tasks

                tasks.job_launch.delay(str(job.pk))
                report.jobs_relaunched.append(str(job.pk))
                continue
            if job.status not in states.POD_STATES:
                continue
            pod = pods_by_name.get(job.pod_name)
            if job.status == states.PROVISIONING and not job.pod_id:
                if pod is not None:
                    _adopt(job.pk, pod)
                    report.pods_adopted.append(pod.name)
                elif seconds_in_state(job, states.PROVISIONING, now_dt) > settings.LAUNCH_STALL_S:
                    from training import tasks

                    tasks.job_launch.delay(str(job.pk))  # a launch that died: try again (idempotent)
                    report.jobs_relaunched.append(str(job.pk))
                continue
            info = pod if pod is not None else provider.status(job.pod_id)
            if info is None or info.state in (POD_EXITED, POD_TERMINATED):
                pod_gone_record(pod_id=job.pod_id, pod_name=job.pod_name,
                                ended_at=info.ended_at if info is not None else None,
                                how="gone from the provider" if info is None else
                                ("evicted" if info.interrupted else "exited"))
                outcome = _pod_gone(job.pk, info, now_dt)
                if outcome == states.INTERRUPTED:
                    report.jobs_interrupted.append(str(job.pk))
                elif outcome == states.FAILED:
                    report.jobs_failed.append(str(job.pk))
                continue
            last = job.last_event_at or job.launched_at
            if last and (now_dt - last).total_seconds() > _silence_limit(job):
                if provider.terminate(job.pod_id):
                    pod_gone_record(pod_id=job.pod_id, pod_name=job.pod_name, how="terminated (silent pod)")
                if _interrupt(job.pk, f"no event from the pod for {int((now_dt - last).total_seconds())} s; "
                                      "it was terminated and the job resumes from its last checkpoint"):
                    report.jobs_interrupted.append(str(job.pk))
    return report


def _silence_limit(job: TrainingJob) -> float:
    return settings.PROVISIONING_TIMEOUT_S if job.status == states.PROVISIONING else settings.POD_SILENCE_TIMEOUT_S


def seconds_in_state(job: TrainingJob, state: str, now_dt) -> float:
    """Seconds since the job last entered `state` (infinite when unknown)."""
    from datetime import datetime

    entered = (job.stage_times or {}).get(state)
    return (now_dt - datetime.fromisoformat(entered)).total_seconds() if entered else float("inf")


def _adopt(job_id, pod) -> None:
    with transaction.atomic():
        job = job_lock(job_id)
        if job.pod_name == pod.name and not job.pod_id and not job.is_terminal:
            job.pod_id = pod.pod_id
            job.launched_at = job.launched_at or timezone.now()
            job.save(update_fields=["pod_id", "launched_at", "updated_at"])
            pod_started_record(job, pod, adopted=True)


def _interrupt(job_id, reason: str) -> bool:
    with transaction.atomic():
        job = job_lock(job_id)
        if job.status not in states.POD_STATES:
            return False
        if job.stop_requested:
            # Say why it stopped (the user's pause or stop), then what happened to the pod.
            asked = stop_reason(job)
            job_stopped(job, f"{asked}; the pod ended before reporting its stop ({reason})" if asked else reason)
            return True
        return interruption_record(job, checkpoint_uri=None, step=job.current_step, reason=reason)


def _pod_gone(job_id, info, now_dt) -> str | None:
    """The job's pod exited or vanished without the job reaching an end state."""
    exit_code = info.exit_code if info is not None else None
    interrupted = info is None or info.state == POD_TERMINATED or exit_code == EXIT_INTERRUPTED or \
        getattr(info, "interrupted", False)
    if interrupted:
        return states.INTERRUPTED if _interrupt(job_id, "the pod is gone (terminated by the cloud or lost)") else None
    with transaction.atomic():
        job = job_lock(job_id)
        if job.status not in states.POD_STATES:
            return None
        # Its last events may still be on their way: give them time before judging.
        last = job.last_event_at or job.launched_at
        if last and (now_dt - last).total_seconds() < settings.POD_EXIT_SETTLE_S:
            return None
        job.error_class = "pod_exited"
        job.error_message = (f"the pod exited with code {exit_code} without reporting the end of the job"
                             if exit_code else "the pod exited without reporting the end of the job")
        job.error_suggestion = "look at the pod's log; retry the job (it starts again from the beginning)"
        job.save()
        job_move(job, states.FAILED, reason=job.error_message)
        return states.FAILED


__all__ = ["LaunchOutcome", "PodStillAlive", "ReconcileReport", "job_launch", "job_launch_failed",
           "job_of_pod", "job_pod_terminate", "job_resume", "job_signal_stop", "pod_gone_record",
           "pod_started_record", "pods_reconcile"]
