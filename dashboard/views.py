"""Server-rendered dashboard pages. Reads go through selectors; every action (create, cancel,
stop, retry, notes) is a fetch() to the API with the session, so the dashboard and the frontend
share one path and one set of rules."""
from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from dashboard import selectors as dash
from dashboard.hyperparameter_fields import hyperparameter_fields
from gpu_worker.presets import PRESETS
from training import selectors, states
from training.models import Dataset
from core.permissions import actor_for_request

STAGES = [(s, label) for s, label in states.CHOICES if s in states.POD_STAGES]


def _actor(request):
    actor = actor_for_request(request)
    if actor is None:
        raise PermissionDenied("your account belongs to no organization; ask an admin to add you to one")
    return actor


def _ctx(request, **extra):
    actor = _actor(request)
    return {"actor": actor, "can_run_jobs": actor.can_run_jobs, **extra}


@login_required
def jobs(request):
    actor = _actor(request)
    status = [s for s in request.GET.get("status", "").split(",") if s in dict(states.CHOICES)]
    rows = selectors.job_list(organization=actor.organization, status=status or None,
                              client=request.GET.get("client") or None, search=request.GET.get("q") or None,
                              ordering=request.GET.get("ordering", "-created_at"))[:200]
    return render(request, "dashboard/jobs.html", _ctx(request, jobs=[selectors.job_list_payload(j) for j in rows],
                                                       jobs_raw=rows, statuses=states.CHOICES,
                                                       selected_status=status))


@login_required
def job_new(request):
    actor = _actor(request)
    if not actor.can_run_jobs:
        raise PermissionDenied("your role can read but not start jobs")
    presets = [{"name": p.name, "when_to_choose": p.when_to_choose, "hyperparameters": p.hyperparameters.to_dict()}
               for p in PRESETS.values()]
    from django.conf import settings

    fields = hyperparameter_fields()
    return render(request, "dashboard/job_new.html", _ctx(
        request,
        datasets=list(Dataset.objects.filter(organization=actor.organization).order_by("-created_at")
                      .values("id", "name", "conversation_count", "trainable_turns")),
        presets=presets, templates=list(selectors.job_template_list(organization=actor.organization)
                                        .values("id", "name", "preset", "overrides", "base_model", "gpu_type",
                                                "cloud_type", "spot", "description")),
        gpus=dash.gpu_catalog(), default_gpu=settings.DEFAULT_GPU_TYPE, default_base_model=settings.DEFAULT_BASE_MODEL,
        budgets=dash.budgets_overview(organization=actor.organization),
        hp_basic=[f for f in fields if not f["advanced"]], hp_advanced=[f for f in fields if f["advanced"]],
    ))


@login_required
def job_detail(request, pk):
    actor = _actor(request)
    job = selectors.job_get(organization=actor.organization, job_id=pk)
    if job is None:
        raise Http404("no such job")
    snapshot = selectors.job_snapshot(job=job)
    validation = None
    if job.status == states.COMPLETED:
        from validation import selectors as validation_selectors

        document = validation_selectors.validation_report(job=job)
        if document is not None:
            validation = {"headline": document["headline"], "verdict": document["verdict"].get("verdict"),
                          "verdict_label": document["verdict"].get("label"), "gates": document["gates"]}
    return render(request, "dashboard/job_detail.html", _ctx(
        request, job=job, snapshot=snapshot, stages=dash.stage_strip(job, STAGES), validation=validation,
        evaluation=[(k.replace("_", " "), dash.human(v)) for k, v in selectors.job_evaluation(job).items()],
        hyperparameters=[(k.replace("_", " "), dash.human(v)) for k, v in (job.hyperparameters or {}).items()],
        retries=list(job.retries.order_by("-created_at").values("id", "name", "status")[:5]),
    ))


@login_required
def compare(request):
    actor = _actor(request)
    ids = []
    for value in request.GET.getlist("ids") + request.GET.get("id", "").split(","):
        for part in value.split(","):
            try:
                ids.append(uuid.UUID(part.strip()))
            except ValueError:
                continue
    ids = ids[:8]
    rows = selectors.jobs_compare(organization=actor.organization, job_ids=ids) if ids else []
    choices = selectors.job_list(organization=actor.organization)[:100]
    hp_keys = sorted({k for r in rows for k in (r["hyperparameters"] or {})})
    eval_keys = sorted({k for r in rows for k in (r["evaluation"] or {})})
    validation_warnings = selectors.jobs_validation_warnings(organization=actor.organization, job_ids=ids) if ids else []
    return render(request, "dashboard/compare.html", _ctx(request, rows=rows, choices=choices, selected=[str(i) for i in ids],
                                                          hp_keys=hp_keys, eval_keys=eval_keys,
                                                          validation_warnings=validation_warnings))


@login_required
def datasets(request):
    actor = _actor(request)
    return render(request, "dashboard/datasets.html",
                  _ctx(request, datasets=selectors.dataset_list(organization=actor.organization)))


@login_required
def dataset_detail(request, pk):
    actor = _actor(request)
    dataset = get_object_or_404(Dataset, pk=pk, organization=actor.organization)
    stats = dataset.stats or {}
    distributions = []
    for key, value in stats.items():
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            total = max(value.values()) or 1
            distributions.append({"name": key.replace("_", " "),
                                  "rows": [{"label": k, "count": v, "pct": round(100 * v / total)}
                                           for k, v in sorted(value.items(), key=lambda kv: -kv[1])[:30]]})
    scalars = {k: v for k, v in stats.items() if isinstance(v, (int, float, str))}
    return render(request, "dashboard/dataset_detail.html",
                  _ctx(request, dataset=dataset, distributions=distributions, scalars=scalars,
                       tokens=stats.get("tokens") or {}))


@login_required
def budgets(request):
    actor = _actor(request)
    return render(request, "dashboard/budgets.html", _ctx(
        request, budgets=dash.budgets_overview(organization=actor.organization),
        spend=dash.spend_by_month(organization=actor.organization)))


def _job_or_404(actor, pk):
    job = selectors.job_get(organization=actor.organization, job_id=pk)
    if job is None:
        raise Http404("no such job")
    return job


@login_required
def job_report(request, pk):
    from validation import selectors as validation_selectors

    actor = _actor(request)
    job = _job_or_404(actor, pk)
    runs = validation_selectors.validation_runs_brief(job=job)
    return render(request, "dashboard/report.html", _ctx(
        request, job=job, report=validation_selectors.validation_report(job=job), runs=runs,
        pending=next((r for r in runs if r["status"] in ("pending", "running")), None)))


@login_required
def job_report_pdf(request, pk):
    from django.http import HttpResponse

    from validation import report as validation_report
    from validation import selectors as validation_selectors

    actor = _actor(request)
    job = _job_or_404(actor, pk)
    document = validation_selectors.validation_report(job=job)
    if document is None:
        raise Http404("this job has no validation report yet")
    response = HttpResponse(validation_report.render_pdf(document), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="validation-{job.pk}.pdf"'
    return response


@login_required
def reports_compare(request):
    from validation import selectors as validation_selectors

    actor = _actor(request)
    a, b = request.GET.get("a", ""), request.GET.get("b", "")
    comparison = None
    if a and b:
        try:
            ids = [uuid.UUID(a), uuid.UUID(b)]
        except ValueError:
            raise Http404("a and b must be job ids") from None
        comparison = validation_selectors.reports_compare(organization=actor.organization, job_ids=ids)
        if comparison is None:
            raise Http404("no such job")
    choices = selectors.job_list(organization=actor.organization, status=[states.COMPLETED])[:100]
    validation_warnings = selectors.jobs_validation_warnings(organization=actor.organization, job_ids=ids) \
        if comparison is not None else []
    return render(request, "dashboard/report_compare.html",
                  _ctx(request, comparison=comparison, choices=choices, a=a, b=b,
                       validation_warnings=validation_warnings))


def _history_rows(request, actor):
    from dashboard.history import history_rows

    g = request.GET
    status = [s for s in g.get("status", "").split(",") if s in dict(states.CHOICES)]
    try:
        dataset = uuid.UUID(g["dataset"]) if g.get("dataset") else None
    except ValueError:
        raise Http404("dataset must be a dataset id") from None
    return history_rows(organization=actor.organization, status=status or None, dataset=dataset,
                        preset=g.get("preset") or None, client=g.get("client") or None,
                        created_by=g.get("created_by") or None, search=g.get("q") or None,
                        sort=g.get("sort") or "-created_at")


@login_required
def history(request):
    """Every job of the organization with its outcome, for comparing runs (docs/dashboard.md)."""
    from dashboard.history import SORT_KEYS, scatter

    actor = _actor(request)
    rows = _history_rows(request, actor)
    query = request.GET.copy()
    query.pop("sort", None)
    sort = request.GET.get("sort") or "-created_at"
    columns = [("name", "Job"), ("dataset", "Dataset"), ("preset", "Preset"), (None, "Key settings"),
               ("train_loss", "Train loss"), ("val_loss", "Val. loss"), ("quality", "Empathy win rate"),
               (None, "Gates"), ("cost", "Cost"), ("duration_s", "Duration"), ("created_by", "Started by"),
               ("created_at", "Created")]
    return render(request, "dashboard/history.html", _ctx(
        request, rows=rows, scatter=scatter(rows), statuses=states.CHOICES, query=query.urlencode(),
        sort=sort, sort_keys=SORT_KEYS, presets=list(PRESETS),
        columns=[{"key": k, "label": label, "active": k and sort.lstrip("-") == k,
                  "next": (k if sort == f"-{k}" else f"-{k}") if k else None} for k, label in columns],
        datasets=Dataset.objects.filter(organization=actor.organization).order_by("name").values("id", "name"),
    ))


@login_required
def history_export(request):
    from django.http import HttpResponse

    from dashboard.history import history_csv

    actor = _actor(request)
    response = HttpResponse(history_csv(_history_rows(request, actor)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="jobs-history.csv"'
    return response
