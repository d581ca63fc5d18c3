"""Reads of the OpenAI-compatible API: the status a client sees, and cursor-paginated lists
(newest first; `after` is the id of the last item of the previous page)."""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform

from billing.models import JobCost
from finetuning.errors import ApiError, NotFound
from finetuning.models import FineTuningFile, FineTuningJob, FineTuningRun
from training import states
from training.models import Checkpoint, JobEvent, MetricPoint, TrainingJob


# Our job states → OpenAI's statuses. A file is validated when it is uploaded and again when
# the job is created (both synchronously), so a job is never seen `validating_files`: it is
# `queued` until a pod is being provisioned. `interrupted` resumes by itself, so it is `running`.
STATUS_MAP = {
    states.QUEUED: "queued",
    **{s: "running" for s in states.RUNNING_STATES},
    states.INTERRUPTED: "running",
    states.COMPLETED: "succeeded",
    states.FAILED: "failed",
    states.CANCELLED: "cancelled",
}
BUDGET_STOP = "budget_cap"  # training.services.jobs.BUDGET_STOP


def _budget_stopped(run: TrainingJob) -> bool:
    return run.status == states.CANCELLED and run.error_class == BUDGET_STOP


def fine_tuning_job_status(job: FineTuningJob) -> str:
    """OpenAI's status of `job`, from its current run and its pause/cancel marks.

    `paused`: a pause was asked (the run is stopping or has stopped at a checkpoint), or the
    budget enforcer stopped the run (it kept its checkpoint: resume continues when the budget
    allows). A run that finished or failed before the stop took effect reports that instead.
    """
    if job.cancelled_at:
        return "cancelled"
    run = job.training_job
    if job.paused_at:
        if run.status == states.COMPLETED and not (run.result or {}).get("stopped_early"):
            return "succeeded"
        if run.status == states.FAILED:
            return "failed"
        if run.status == states.CANCELLED and run.cancel_requested:
            return "cancelled"  # cancelled elsewhere (dashboard, admin) while paused
        return "paused"
    if _budget_stopped(run):
        return "paused"
    return STATUS_MAP[run.status]


def fine_tuning_job_error(job: FineTuningJob, status: str) -> dict[str, Any] | None:
    run = job.training_job
    if status == "failed" and (run.error_class or run.error_message):
        message = run.error_message or run.error_class
        if run.error_suggestion:
            message = f"{message}. {run.error_suggestion}"
        return {"code": run.error_class or "training_failed", "message": message, "param": None}
    if status == "paused" and _budget_stopped(run):
        return {"code": "budget_exceeded", "message": f"{run.error_message}. Resume the job once the budget allows; "
                                                      "it continues from its last checkpoint.", "param": None}
    return None


# --------------------------------------------------------------------------- one object

def api_file_get(*, organization, file_id: str) -> FineTuningFile:
    found = FineTuningFile.objects.filter(pk=file_id, organization=organization, deleted_at__isnull=True).first()
    if found is None:
        raise NotFound(f"No such File object: {file_id}", param="id")
    return found


def fine_tuning_job_get(*, organization, job_id: str) -> FineTuningJob:
    found = (FineTuningJob.objects.select_related("training_job", "training_file", "validation_file", "organization")
             .filter(pk=job_id, organization=organization).first())
    if found is None:
        raise NotFound(f"No fine-tuning job found with id {job_id!r} in your organization", param="fine_tuning_job_id")
    return found


# --------------------------------------------------------------------------- pages

@dataclass(frozen=True)
class Page:
    items: list
    has_more: bool


def _page(rows: list, limit: int) -> Page:
    return Page(rows[:limit], len(rows) > limit)


def _after_bound(model, queryset, after: str | None):
    """Rows strictly after the cursor row in (-created_at, -id) order."""
    if not after:
        return queryset
    cursor = queryset.filter(pk=after).values("created_at", "pk").first()
    if cursor is None:
        raise ApiError(f"after: no {model._meta.verbose_name} {after!r} in this list", param="after")
    return queryset.filter(Q(created_at__lt=cursor["created_at"]) | Q(created_at=cursor["created_at"], pk__lt=cursor["pk"]))


def api_files_page(*, organization, after: str | None, limit: int, order: str = "desc",
                   purpose: str | None = None) -> Page:
    qs = FineTuningFile.objects.filter(organization=organization, deleted_at__isnull=True)
    if purpose:
        qs = qs.filter(purpose=purpose)
    if after:
        cursor = qs.filter(pk=after).values("created_at", "pk").first()
        if cursor is None:
            raise ApiError(f"after: no file {after!r} in this list", param="after")
        t, pk = cursor["created_at"], cursor["pk"]
        qs = qs.filter(Q(created_at__lt=t) | Q(created_at=t, pk__lt=pk)) if order == "desc" else \
            qs.filter(Q(created_at__gt=t) | Q(created_at=t, pk__gt=pk))
    ordering = ["-created_at", "-pk"] if order == "desc" else ["created_at", "pk"]
    return _page(list(qs.order_by(*ordering)[:limit + 1]), limit)


def fine_tuning_jobs_page(*, organization, after: str | None, limit: int, metadata: dict[str, str] | None = None,
                          metadata_null: bool = False) -> Page:
    qs = FineTuningJob.objects.filter(organization=organization)
    if metadata_null:
        qs = qs.filter(Q(metadata__isnull=True) | Q(metadata={}))
    for i, (key, value) in enumerate((metadata or {}).items()):
        # KeyTextTransform rather than metadata__<key>: a key may contain "__" or other lookups.
        qs = qs.alias(**{f"_meta{i}": KeyTextTransform(key, "metadata")}).filter(**{f"_meta{i}": value})
    qs = _after_bound(FineTuningJob, qs, after)
    qs = qs.select_related("training_job", "training_file", "validation_file", "organization")
    return _page(list(qs.order_by("-created_at", "-pk")[:limit + 1]), limit)


# Event ids: "ftevent-e<JobEvent pk>" (messages) and "ftevent-m<MetricPoint pk>" (metrics).
# Pod events that a transition row already tells, or that carry no news, are not listed.
HIDDEN_EVENT_TYPES = ("metrics", "heartbeat", "stage_changed", "completed", "failed")
_KINDS = {"m": 0, "e": 1}  # tie-break between a metric and a message stored in the same instant


def _run_ids(job: FineTuningJob) -> list:
    return list(FineTuningRun.objects.filter(fine_tuning_job=job).values_list("training_job_id", flat=True))


def run_indexes(job: FineTuningJob) -> dict:
    """training job id → its run index (0: the first run)."""
    return dict(FineTuningRun.objects.filter(fine_tuning_job=job).values_list("training_job_id", "index"))


def _event_querysets(run_ids: list) -> dict[str, Any]:
    return {
        "e": JobEvent.objects.filter(job_id__in=run_ids).exclude(type__in=HIDDEN_EVENT_TYPES),
        "m": MetricPoint.objects.filter(job_id__in=run_ids),
    }


def fine_tuning_job_events_page(*, job: FineTuningJob, after: str | None, limit: int) -> Page:
    """Messages (our JobEvents) and metrics (MetricPoints, one per step) of every run of the job,
    newest first, as (kind, row) pairs."""
    querysets = _event_querysets(_run_ids(job))
    if after:
        kind, raw_pk = after.removeprefix("ftevent-")[:1], after.removeprefix("ftevent-")[1:]
        cursor = querysets[kind].filter(pk=int(raw_pk)).values("created_at", "pk").first() \
            if kind in querysets and raw_pk.isdigit() else None
        if cursor is None:
            raise ApiError(f"after: no event {after!r} in this job's events", param="after")
        t, rank, pk = cursor["created_at"], _KINDS[kind], cursor["pk"]
        for k, qs in querysets.items():
            if _KINDS[k] < rank:
                querysets[k] = qs.filter(created_at__lte=t)
            elif _KINDS[k] == rank:
                querysets[k] = qs.filter(Q(created_at__lt=t) | Q(created_at=t, pk__lt=pk))
            else:
                querysets[k] = qs.filter(created_at__lt=t)
    streams = [
        [((row.created_at, _KINDS[k], row.pk), k, row) for row in qs.order_by("-created_at", "-pk")[:limit + 1]]
        for k, qs in querysets.items()
    ]
    merged = heapq.merge(*streams, key=lambda item: item[0], reverse=True)
    rows: list = []
    for _, k, row in merged:
        rows.append((k, row))
        if len(rows) > limit:
            break
    return _page(rows, limit)


def fine_tuning_job_checkpoints_page(*, job: FineTuningJob, after: str | None, limit: int) -> Page:
    """Complete checkpoints of every run, newest first; ids "ftckpt-<pk>"."""
    qs = Checkpoint.objects.filter(job_id__in=_run_ids(job), complete=True)
    if after:
        raw = after.removeprefix("ftckpt-")
        if not raw.isdigit() or not qs.filter(pk=int(raw)).exists():
            raise ApiError(f"after: no checkpoint {after!r} in this job's checkpoints", param="after")
        qs = qs.filter(pk__lt=int(raw))
    return _page(list(qs.order_by("-pk")[:limit + 1]), limit)


def metrics_at(checkpoints: list[Checkpoint]) -> dict[tuple, dict]:
    """(training job id, step) → that step's metric values, for the given checkpoints."""
    if not checkpoints:
        return {}
    wanted = Q()
    for c in checkpoints:
        wanted |= Q(job_id=c.job_id, step=c.step)
    return {(m.job_id, m.step): m.values for m in MetricPoint.objects.filter(wanted)}


# --------------------------------------------------------------------------- cost (from billing)

def fine_tuning_job_costs(jobs: list[FineTuningJob]) -> dict[str, dict[str, float]]:
    """job id → {"estimated_cost", "current_cost"} in USD over all its runs (billing's JobCost).
    A settled run counts its actual cost in the estimate."""
    runs = list(FineTuningRun.objects.filter(fine_tuning_job__in=jobs).values_list("fine_tuning_job_id", "training_job_id"))
    costs = {c.job_id: c for c in JobCost.objects.filter(job_id__in=[t for _, t in runs])}
    totals: dict[str, dict[str, Decimal]] = {}
    for job_id, run_id in runs:
        cost = costs.get(run_id)
        if cost is None:
            continue
        total = totals.setdefault(job_id, {"estimated_cost": Decimal(0), "current_cost": Decimal(0)})
        settled = cost.settled_at is not None and cost.actual_cost is not None
        total["estimated_cost"] += cost.actual_cost if settled else cost.est_cost
        total["current_cost"] += cost.cost
    return {job_id: {k: round(float(v), 4) for k, v in total.items()} for job_id, total in totals.items()}


# --------------------------------------------------------------------------- results files

RESULTS_FILE_PREFIX = "file-results-"
RESULTS_PURPOSE = "fine-tune-results"
RESULTS_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
# Our metric keys behind OpenAI's columns (the pod's metrics events; valid_* on evaluation steps).
_RESULTS_KEYS = {"train_loss": "loss", "train_accuracy": "train_mean_token_accuracy", "valid_loss": "valid_loss",
                 "valid_mean_token_accuracy": "valid_mean_token_accuracy"}
RESULTS_STATUSES = frozenset({"succeeded", "failed", "cancelled", "paused"})


def results_file_id(job: FineTuningJob) -> str:
    return RESULTS_FILE_PREFIX + job.id.removeprefix("ftjob-")


def results_file_job(*, organization, file_id: str) -> FineTuningJob | None:
    """The job whose results file `file_id` names, None when it names no results file (NotFound
    when it names one of a job that is not in the organization or has none yet)."""
    if not file_id.startswith(RESULTS_FILE_PREFIX):
        return None
    job = (FineTuningJob.objects.select_related("training_job", "organization")
           .filter(pk="ftjob-" + file_id.removeprefix(RESULTS_FILE_PREFIX), organization=organization).first())
    if job is None or fine_tuning_job_status(job) not in RESULTS_STATUSES:
        raise NotFound(f"No such File object: {file_id}", param="id")
    return job


def results_csv(job: FineTuningJob) -> str:
    """OpenAI's results file: one row per recorded step of every run of the job (a resumed run's
    steps replace the stopped run's from its checkpoint on), empty cells where a value was not
    measured at that step (valid_* exist on evaluation steps only)."""
    import csv
    import io

    run_ids = list(FineTuningRun.objects.filter(fine_tuning_job=job).order_by("index")
                   .values_list("training_job_id", flat=True)) or [job.training_job_id]
    order = {run_id: i for i, run_id in enumerate(run_ids)}
    rows: dict[int, dict] = {}
    points = sorted(MetricPoint.objects.filter(job_id__in=run_ids).values_list("job_id", "step", "values"),
                    key=lambda p: (order[p[0]], p[1]))
    for _run, step, values in points:
        values = values or {}
        rows[step] = {column: values.get(key) for column, key in _RESULTS_KEYS.items()}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULTS_COLUMNS)
    for step in sorted(rows):
        cells = rows[step]
        writer.writerow([step] + ["" if cells[c] is None else repr(float(cells[c])) if isinstance(cells[c], (int, float))
                                  else cells[c] for c in RESULTS_COLUMNS[1:]])
    return out.getvalue()


def file_jobs_using(*, api_file: FineTuningFile) -> list[str]:
    """Ids of the jobs, not finished, that train or validate on `api_file` (they still read it: a
    resume recomposes nothing, but a queued or running job's file must not disappear under it)."""
    jobs = FineTuningJob.objects.select_related("training_job").filter(
        Q(training_file=api_file) | Q(validation_file=api_file)).order_by("created_at")
    return [j.id for j in jobs if fine_tuning_job_status(j) in ("queued", "running", "paused")]
