"""Validation reports of a job (the validation app): read the latest report, run one on demand,
compare two jobs' reports. Scoped to the caller's organization like every job endpoint: another
organization's job is 404. Viewers read; engineers and admins run."""
from __future__ import annotations

import uuid

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import OrganizationScopedMixin
from core.errors import DomainError
from training.apis.jobs import JobScopedMixin


# The common error body ({"error": {code, message, detail}}, config.api_errors) as the schema shows it.
ERROR_BODY = inline_serializer("ValidationError409", fields={"error": inline_serializer("ValidationErrorBody", fields={
    "code": serializers.CharField(), "message": serializers.CharField(),
    "detail": serializers.JSONField(allow_null=True)})})


class ValidationRunRequestSerializer(serializers.Serializer):
    validation_data = serializers.ChoiceField(
        choices=["own", "benchmark"], default="own", required=False,
        help_text="own: the job's dataset's validation split (default); benchmark: the organization's benchmark "
                  "dataset's validation split (409 when it has none, the job trained on part of it, or the pod "
                  "did not evaluate the job on it)")


def _run_brief(run) -> dict:
    return {"id": str(run.pk), "job": str(run.job_id), "status": run.status, "trigger": run.trigger,
            "verdict": run.verdict or None, "errors": run.errors,
            "validation_dataset": str(run.validation_dataset_id) if run.validation_dataset_id else None,
            "created_at": run.created_at.isoformat() if run.created_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None}


class JobValidationApi(JobScopedMixin, APIView):
    """GET: the job's latest validation report (summary verdict, every metric with value, CI, n and
    pass / fail / not computed with the reason, training curve, configuration, cost, side-by-side
    examples), with the recent runs. 404 when the job has no completed run yet.

    POST: start a validation run now (engineers and admins; the job must be completed). Answers 202
    with the pending run; GET shows the report once it has finished."""

    @extend_schema(responses={200: dict})
    def get(self, request, pk):
        from validation import selectors

        job = self.get_job(pk)
        report = selectors.validation_report(job=job)
        runs = selectors.validation_runs_brief(job=job)
        if report is None:
            pending = [r for r in runs if r["status"] in ("pending", "running")]
            raise Http404("this job has no validation report yet" + ("; a run is in progress" if pending else
                                                                    "; POST here to run one"))
        return Response({"report": report, "runs": [{**r, "id": str(r["id"])} for r in runs]})

    @extend_schema(request=ValidationRunRequestSerializer, responses={
        202: dict, 200: dict, 409: OpenApiResponse(ERROR_BODY, description=(
            "validation_not_ready (the job is not completed), no_benchmark, benchmark_trained_on or "
            "benchmark_not_evaluated (validation_data=benchmark)"))})
    def post(self, request, pk):
        from validation import services, tasks

        job = self.get_job(pk)
        form = ValidationRunRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # One live on-demand run per job and validation data: a repeated request returns it (200)
        # and queues nothing.
        run, created = services.validation_run_request_once(job_id=job.pk, requested_by=request.user,
                                                            validation_data=form.validated_data["validation_data"])
        if not created:
            return Response(_run_brief(run), status=status.HTTP_200_OK)
        tasks.validation_run_execute.delay_on_commit(str(run.pk))
        return Response(_run_brief(run), status=status.HTTP_202_ACCEPTED)


class ValidationCompareApi(OrganizationScopedMixin, APIView):
    """Two jobs' latest reports side by side: `?a=<job id>&b=<job id>`."""

    @extend_schema(parameters=[OpenApiParameter("a", str, required=True), OpenApiParameter("b", str, required=True)],
                   responses={200: dict, 409: OpenApiResponse(ERROR_BODY, description=(
                       "validation_data_differs: the two reports were measured on different validation data "
                       "(detail.validation_data: each side's dataset and validation-split fingerprint)"))})
    def get(self, request):
        from validation import selectors

        ids = []
        for name in ("a", "b"):
            try:
                ids.append(uuid.UUID(str(request.query_params.get(name, ""))))
            except ValueError:
                raise ValidationError({name: ["a job id (UUID) is required"]}) from None
        comparison = selectors.reports_compare(organization=self.get_organization(), job_ids=ids)
        if comparison is None:
            raise Http404("no such job")
        if comparison["validation_data_differs"]:
            error = DomainError(
                "the two reports were measured on different validation data; their figures cannot be compared "
                "(validate both jobs on the same dataset's validation split)", code="validation_data_differs",
                detail={"validation_data": [side["validation_data"] for side in comparison["reports"]]})
            error.http_status = 409
            raise error
        return Response(comparison)
