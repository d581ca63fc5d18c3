"""Reads of validation runs and reports, always scoped to an organization."""
from __future__ import annotations

from typing import Any

from validation.models import RunStatus, ValidationRun


def job_for_organization(*, organization, job_id):
    from training.models import TrainingJob

    return TrainingJob.objects.select_related("dataset").filter(pk=job_id, organization=organization).first()


def validation_run_latest(*, job, completed: bool = True) -> ValidationRun | None:
    runs = ValidationRun.objects.filter(job=job).select_related("job", "job__dataset", "requested_by",
                                                                "validation_dataset")
    if completed:
        runs = runs.filter(status=RunStatus.COMPLETED)
    return runs.order_by("-created_at").first()


def validation_report(*, job) -> dict[str, Any] | None:
    """The report document of the job's latest completed run (None when there is none)."""
    from validation.report import report_document

    run = validation_run_latest(job=job)
    return report_document(run) if run else None


def validation_runs_brief(*, job, limit: int = 10) -> list[dict[str, Any]]:
    return list(ValidationRun.objects.filter(job=job).order_by("-created_at")
                .values("id", "status", "verdict", "trigger", "created_at", "finished_at", "errors")[:limit])


def validation_data_of(job, run: ValidationRun | None = None) -> dict[str, Any]:
    """What a job's report was measured on: the validation split of the run's validation dataset
    (the job's own, or the organization's benchmark), identified by the split's fingerprint (the
    hashes of its conversations), so two datasets with the same held-out conversations compare as
    the same data."""
    ds = (run.validation_dataset if run is not None and run.validation_dataset_id else None) or job.dataset
    return {"dataset_id": str(ds.pk), "dataset": ds.name, "val_fingerprint": ds.val_fingerprint or None,
            "val_conversations": ds.val_conversations, "benchmark": ds.pk != job.dataset_id}


def validation_data_differs(sides: list[dict[str, Any]]) -> bool:
    """True when the sides were not validated on the same held-out conversations (an unknown
    fingerprint counts as different unless it is the very same dataset)."""
    keys = {d["val_fingerprint"] or f"dataset:{d['dataset_id']}" for d in (s["validation_data"] for s in sides)}
    return len(keys) > 1


def reports_compare(*, organization, job_ids: list) -> dict[str, Any] | None:
    """Two (or more) jobs' latest reports side by side, metric by metric. None when a job is not
    the organization's (the caller answers 404). `validation_data_differs` says the figures were
    measured on different held-out conversations: the API then refuses (409), the page flags it."""
    sides = []
    for job_id in job_ids:
        job = job_for_organization(organization=organization, job_id=job_id)
        if job is None:
            return None
        run = validation_run_latest(job=job)
        from validation.report import report_document

        report = report_document(run) if run else None
        sides.append({"job": {"id": str(job.pk), "name": job.name, "base_model": job.base_model,
                              "dataset": job.dataset.name, "status": job.status}, "report": report,
                      "validation_data": validation_data_of(job, run)})
    keys: list[tuple[str, str]] = []
    for side in sides:
        for m in (side["report"] or {}).get("metrics") or []:
            if m["key"] not in [k for k, _ in keys]:
                keys.append((m["key"], m["name"]))
    rows = []
    for key, name in keys:
        cells = []
        for side in sides:
            found = [m for m in ((side["report"] or {}).get("metrics") or []) if m["key"] == key]
            cells.append(found[0] if found else None)
        rows.append({"key": key, "name": name, "cells": cells})
    return {"reports": sides, "metrics": rows, "validation_data_differs": validation_data_differs(sides)}
