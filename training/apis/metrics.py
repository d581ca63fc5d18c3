"""Metrics of a job: every point (paginated), chart series (downsampled), export (CSV, JSON)."""
from __future__ import annotations

import csv
import io
import json

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from training import selectors
from core.apis import MetricPagination, query_params
from training.apis.jobs import JobScopedMixin
from training.serializers import (
    MetricPointSerializer,
    MetricQuerySerializer,
    MetricSeriesQuerySerializer,
    MetricSeriesSerializer,
)


class JobMetricListApi(JobScopedMixin, generics.ListAPIView):
    """Every metric point in step order, 500 a page (`page_size` up to 5000, `after_step` to
    fetch only what is new)."""

    serializer_class = MetricPointSerializer
    pagination_class = MetricPagination

    def get_queryset(self):
        params = query_params(MetricQuerySerializer, self.request)
        return selectors.metric_points(job=self.get_job(self.kwargs["pk"]), after_step=params.get("after_step"))

    @extend_schema(parameters=[MetricQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class JobMetricSeriesApi(JobScopedMixin, APIView):
    """Chart series: at most `max_points` points per series for a job of any length."""

    @extend_schema(parameters=[MetricSeriesQuerySerializer], responses=MetricSeriesSerializer)
    def get(self, request, pk):
        params = query_params(MetricSeriesQuerySerializer, request)
        job = self.get_job(pk)
        return Response(selectors.metric_series(job=job, keys=params.get("keys") or selectors.SERIES_KEYS,
                                                max_points=params.get("max_points"),
                                                after_step=params.get("after_step")))


class JobMetricExportApi(JobScopedMixin, APIView):
    """Every metric point as a file: `csv` (one column per metric) or `json` (with the job's
    configuration and its evaluation)."""

    @extend_schema(responses={(200, "text/csv"): bytes, (200, "application/json"): dict})
    def get(self, request, pk, fmt):
        if fmt not in ("csv", "json"):
            raise Http404("export as csv or json")
        job = self.get_job(pk)
        rows = selectors.metric_export_rows(job=job)
        filename = f"metrics-{job.pk}.{fmt}"
        if fmt == "csv":
            body = _csv_lines(rows)
            content_type = "text/csv"
        else:
            body = _json_chunks(job, rows)
            content_type = "application/json"
        response = StreamingHttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _csv_lines(rows):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["step", "attempt", *selectors.EXPORT_KEYS, "recorded_at"])
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        if out.tell() > 64 * 1024:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _json_chunks(job, rows):
    head = {"job": {"id": str(job.pk), "name": job.name, "status": job.status, "preset": job.preset,
                    "base_model": job.base_model, "hyperparameters": job.hyperparameters},
            "evaluation": selectors.job_evaluation(job)}
    yield json.dumps(head)[:-1] + ', "metrics": ['
    for i, row in enumerate(rows):
        yield ("," if i else "") + json.dumps(row)
    yield "]}"
