"""Reads of the training app that are more than one line: job lists with their annotations,
metric series (downsampled by training/metric_series.py), snapshots for the job page and its
websocket, exports.

Every function takes the organization (or a job already fetched through it): nothing here reads
across organizations. Query counts do not grow with the number of jobs or metric points.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Iterator

from django.apps import apps
from django.conf import settings
from django.db.models import Case, Count, F, FloatField, Q, QuerySet, Value, When
from django.db.models.functions import Cast

from training import states
from training.metric_series import EXPORT_KEYS, SERIES_KEYS, metric_series  # noqa: F401 - re-exported
from training.models import Checkpoint, Dataset, JobEvent, JobTemplate, MetricPoint, TrainingJob

JOB_ORDERINGS = {
    "created_at": ("created_at",), "-created_at": ("-created_at",),
    "finished_at": ("finished_at",), "-finished_at": ("-finished_at",),
    "name": ("name", "-created_at"), "-name": ("-name", "-created_at"),
    "status": ("status", "-created_at"), "-status": ("-status", "-created_at"),
    "progress": ("progress_ratio", "-created_at"), "-progress": ("-progress_ratio", "-created_at"),
    "last_loss": ("last_loss", "-created_at"), "-last_loss": ("-last_loss", "-created_at"),
    "cost": ("cost_spent", "-created_at"), "-cost": ("-cost_spent", "-created_at"),
}


def billing_installed() -> bool:
    return apps.is_installed("billing")


# --------------------------------------------------------------------------- jobs

def job_queryset(*, organization) -> QuerySet[TrainingJob]:
    """The organization's jobs with what lists show (dataset, creator, cost) in the same query."""
    qs = (TrainingJob.objects.filter(organization=organization)
          .select_related("dataset", "created_by")
          .annotate(progress_ratio=Case(
              When(status=states.COMPLETED, then=Value(1.0)),
              When(total_steps__gt=0, then=Cast(F("current_step"), FloatField()) / Cast(F("total_steps"), FloatField())),
              default=Value(0.0), output_field=FloatField())))
    if billing_installed():
        # billing.JobCost is a one-to-one (related_name "cost"): one LEFT JOIN, no per-row query.
        qs = qs.annotate(cost_spent=F("cost__cost"), cost_estimate=F("cost__est_cost"),
                         cost_rate_per_hour=F("cost__rate_per_hour"))
    else:  # pragma: no cover - billing is installed in this project
        qs = qs.annotate(cost_spent=Value(None, output_field=FloatField()),
                         cost_estimate=Value(None, output_field=FloatField()),
                         cost_rate_per_hour=Value(None, output_field=FloatField()))
    return qs


def job_list(*, organization, status: Iterable[str] | None = None, dataset=None, preset: str | None = None,
             client: str | None = None, created_by: str | None = None, created_after=None, created_before=None,
             search: str | None = None, ordering: str = "-created_at") -> QuerySet[TrainingJob]:
    """Filtered and ordered. `created_by` is a username or a user id; dates are inclusive."""
    qs = job_queryset(organization=organization)
    if status:
        qs = qs.filter(status__in=list(status))
    if dataset:
        qs = qs.filter(dataset_id=dataset)
    if preset:
        qs = qs.filter(preset=preset)
    if client:
        qs = qs.filter(client=client)
    if created_by:
        by_user = Q(created_by__username=created_by)
        if str(created_by).isdigit():
            by_user |= Q(created_by_id=int(created_by))
        qs = qs.filter(by_user)
    if created_after:
        qs = qs.filter(created_at__date__gte=created_after)
    if created_before:  # a date: up to the end of that day
        qs = qs.filter(created_at__date__lte=created_before)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(client__icontains=search) | Q(notes__icontains=search))
    return qs.order_by(*JOB_ORDERINGS.get(ordering, JOB_ORDERINGS["-created_at"]))


def job_get(*, organization, job_id) -> TrainingJob | None:
    return job_queryset(organization=organization).filter(pk=job_id).first()


def job_cost(job: TrainingJob) -> dict | None:
    """The job's cost as billing reports it (`{"spent", "rate_per_hour", "estimate", ...}`), or None
    when billing has no row for it. Read-only: metering to this second is billing's job."""
    if not billing_installed():  # pragma: no cover
        return None
    from billing.models import JobCost
    from billing.services.metering import cost_payload

    cost = JobCost.objects.filter(job_id=job.pk).first()
    return cost_payload(cost)["cost"] if cost else None


def job_eta_at(job: TrainingJob):
    """When the job should finish, from the pod's last ETA and when it sent it."""
    if job.is_terminal or not job.eta_s or not job.last_event_at:
        return None
    return job.last_event_at + timedelta(seconds=float(job.eta_s))


def job_recent_events(job: TrainingJob, limit: int | None = None) -> list[JobEvent]:
    """The newest `limit` events, oldest first."""
    limit = limit or settings.JOB_RECENT_EVENTS
    # stage_changed is told by the transition it causes; metrics are the charts.
    rows = list(job.events.exclude(type__in=["metrics", "heartbeat", "stage_changed"])
                .order_by("-created_at", "-id")[:limit])
    rows.reverse()
    return rows


def checkpoint_live(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as the websocket and the job page show it: ids and sizes, not its storage URI."""
    return {"id": checkpoint.pk, "name": f"step-{checkpoint.step}", "step": checkpoint.step,
            "bytes": checkpoint.bytes, "epoch": checkpoint.epoch}


def job_checkpoints(job: TrainingJob) -> list[Checkpoint]:
    return list(job.checkpoints.order_by("step"))


# --------------------------------------------------------------------------- metrics

def metric_points(*, job: TrainingJob, after_step: int | None = None) -> QuerySet[MetricPoint]:
    rows = job.metrics.order_by("step")
    return rows.filter(step__gt=after_step) if after_step is not None else rows


def metric_export_rows(*, job: TrainingJob) -> Iterator[dict[str, Any]]:
    """Every metric point, flat (one column per metric), streamed from the database."""
    for step, attempt, values, created in (job.metrics.order_by("step")
                                           .values_list("step", "attempt", "values", "created_at").iterator(2000)):
        values = values if isinstance(values, dict) else {}
        yield {"step": step, "attempt": attempt, **{k: values.get(k) for k in EXPORT_KEYS},
               "recorded_at": created.isoformat()}


def job_evaluation(job: TrainingJob) -> dict[str, Any]:
    """The evaluation the pod reported on completion (perplexities, ...), if any."""
    result = job.result or {}
    evaluation = result.get("eval") or result.get("evaluation") or {}
    return evaluation if isinstance(evaluation, dict) else {}


# --------------------------------------------------------------------------- snapshots

def job_progress_payload(job: TrainingJob) -> dict[str, Any]:
    eta_at = job_eta_at(job)
    return {"status": job.status, "stage": job.stage, "step": job.current_step, "total_steps": job.total_steps,
            "progress": round(job.progress, 4), "epoch": job.epoch, "loss": job.last_loss,
            "tokens_per_s": job.tokens_per_s, "eta_s": None if job.is_terminal else job.eta_s,
            "eta_at": eta_at.isoformat() if eta_at else None}


def event_payload(event: JobEvent) -> dict[str, Any]:
    return {"type": event.type, "source": event.source, "step": event.step, "attempt": event.attempt,
            "from_status": event.from_status, "to_status": event.to_status,
            "message": event.message or (event.data or {}).get("message", ""),
            "level": (event.data or {}).get("level", ""), "created_at": event.created_at.isoformat()}


def job_snapshot(*, job: TrainingJob, max_points: int | None = None) -> dict[str, Any]:
    """Everything a job page needs to draw itself, as plain JSON: the websocket's first message
    and the page's initial data. A constant number of queries."""
    return {
        "job": {"id": str(job.pk), "name": job.name, **job_progress_payload(job),
                "error": {"class": job.error_class, "message": job.error_message, "suggestion": job.error_suggestion,
                          "fix": job.error_fix} if job.error_class else None,
                "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                "stage_times": job.stage_times or {}},
        "metrics": metric_series(job=job, max_points=max_points),
        "cost": job_cost(job),
        "events": [event_payload(e) for e in job_recent_events(job)],
        "checkpoints": [{**checkpoint_live(c), "complete": c.complete, "created_at": c.created_at.isoformat()}
                        for c in job_checkpoints(job)],
    }


def job_list_payload(job: TrainingJob) -> dict[str, Any]:
    """One row of the live jobs list."""
    return {"id": str(job.pk), "name": job.name, "client": job.client, "dataset": job.dataset.name,
            "preset": job.preset, "created_by": job.created_by.username if job.created_by else None,
            "created_at": job.created_at.isoformat(), **job_progress_payload(job),
            "cost": str(job.cost_spent) if getattr(job, "cost_spent", None) is not None else None}


# --------------------------------------------------------------------------- compare, datasets, templates

def jobs_compare(*, organization, job_ids: list, max_points: int | None = None) -> list[dict[str, Any]]:
    """For the compare page: each job's configuration, final metrics, duration, cost and loss curve."""
    jobs = list(job_queryset(organization=organization).filter(pk__in=job_ids))
    out = []
    for job in sorted(jobs, key=lambda j: job_ids.index(j.pk) if j.pk in job_ids else 0):
        started = job.launched_at or job.created_at
        end = job.finished_at
        out.append({
            "id": str(job.pk), "name": job.name, "status": job.status, "preset": job.preset,
            "base_model": job.base_model, "dataset": job.dataset.name, "gpu_type": job.gpu_type, "spot": job.spot,
            "hyperparameters": job.hyperparameters, "overrides": job.overrides,
            "final_loss": job.last_loss, "evaluation": job_evaluation(job),
            "duration_s": (end - started).total_seconds() if end and started else None,
            "cost": str(job.cost_spent) if job.cost_spent is not None else None,
            "loss": metric_series(job=job, keys=("loss",), max_points=max_points)["series"]["loss"],
        })
    return out


def dataset_list(*, organization) -> QuerySet[Dataset]:
    return Dataset.objects.filter(organization=organization).annotate(job_count=Count("jobs")).order_by("-created_at")


def job_template_list(*, organization) -> QuerySet[JobTemplate]:
    return JobTemplate.objects.filter(organization=organization).select_related("created_by").order_by("name")


def dataset_shared_conversations(*, dataset: Dataset) -> list[dict[str, Any]]:
    """The organization's other datasets that share conversations (same content hash) with
    `dataset`, and on which sides: `our_val_in_their_train` counts this dataset's validation
    conversations that the other trains on, and the reverse."""
    from training.models import DatasetConversation

    mine = DatasetConversation.objects.filter(dataset=dataset)
    counts: dict[Any, dict[str, Any]] = {}
    for side in ("train", "val"):
        rows = (DatasetConversation.objects.filter(organization_id=dataset.organization_id,
                                                   conversation_hash__in=mine.filter(side=side).values("conversation_hash"))
                .exclude(dataset=dataset).values("dataset_id", "dataset__name", "side").annotate(n=Count("id")))
        for row in rows:
            entry = counts.setdefault(row["dataset_id"], {
                "dataset_id": str(row["dataset_id"]), "name": row["dataset__name"], "conversations": 0,
                "our_val_in_their_train": 0, "their_val_in_our_train": 0})
            entry["conversations"] += row["n"]
            if side == "val" and row["side"] == "train":
                entry["our_val_in_their_train"] += row["n"]
            if side == "train" and row["side"] == "val":
                entry["their_val_in_our_train"] += row["n"]
    return sorted(counts.values(), key=lambda e: -e["conversations"])


def validation_sets_compare(*, datasets: list[Dataset]) -> list[str]:
    """Warnings for a page that compares jobs: their datasets validate on different conversation
    sets (different val_fingerprint), and worse, one's validation conversations are another's
    training conversations. Empty when every dataset validates on the same set."""
    from training.models import DatasetConversation

    distinct = {d.pk: d for d in datasets}
    if len(distinct) < 2:
        return []
    prints = {d.val_fingerprint or f"unknown-{d.pk}" for d in distinct.values()}
    if len(prints) < 2:
        return []
    warnings = ["the jobs validate on different validation sets (" + ", ".join(
        f"{d.name}: {d.val_conversations} conversations" for d in distinct.values()) +
        "); their validation figures are not measured on the same conversations"]
    ids = list(distinct)
    for a in ids:
        val_hashes = DatasetConversation.objects.filter(dataset_id=a, side="val").values("conversation_hash")
        for b in ids:
            if a == b:
                continue
            leaked = DatasetConversation.objects.filter(dataset_id=b, side="train",
                                                        conversation_hash__in=val_hashes).count()
            if leaked:
                warnings.append(f"{leaked} of the {distinct[a].val_conversations} validation conversations of "
                                f"{distinct[a].name} are training conversations of {distinct[b].name}: a job on "
                                f"{distinct[b].name} has seen them, so its validation figures on them flatter it")
    return warnings


def dataset_emotion_labels(*, dataset: Dataset) -> list[str]:
    """The dataset's own client-emotion labels (stats["emotion_labels"]["labels"]); empty for a
    dataset imported before the labels were recorded."""
    return list(((dataset.stats or {}).get("emotion_labels") or {}).get("labels") or [])


def jobs_validation_warnings(*, organization, job_ids: list) -> list[str]:
    """validation_sets_compare for the datasets of the jobs a compare page shows."""
    datasets = list(Dataset.objects.filter(organization=organization, jobs__pk__in=job_ids).distinct())
    return validation_sets_compare(datasets=datasets)
