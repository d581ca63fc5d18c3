"""Jobs: list (filters, ordering), create (with a template), detail, notes, cancel, stop, retry,
events, checkpoints, compare. (A job's files and their download links are the artifacts app's:
`GET /api/v1/artifacts/?job=<id>`.)"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from training import selectors
from core.apis import OrganizationScopedMixin, query_params
from training.models import Dataset, JobTemplate, TrainingJob
from training.serializers import (
    CheckpointSerializer,
    JobCompareQuerySerializer,
    JobCompareSerializer,
    JobCreateSerializer,
    JobDetailSerializer,
    JobEventSerializer,
    JobFilterSerializer,
    JobNotesSerializer,
    JobRetrySerializer,
    JobSerializer,
)
from training.services import jobs as job_services


class JobScopedMixin(OrganizationScopedMixin):
    def get_job(self, pk) -> TrainingJob:
        job = selectors.job_get(organization=self.get_organization(), job_id=pk)
        if job is None:
            from django.http import Http404

            raise Http404("no such job")
        return job

    def render_job(self, pk, status_code=status.HTTP_200_OK) -> Response:
        return Response(JobDetailSerializer(self.get_job(pk)).data, status=status_code)


class JobListCreateApi(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        filters = query_params(JobFilterSerializer, self.request)
        return selectors.job_list(organization=self.get_organization(), **filters)

    @extend_schema(parameters=[JobFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=JobCreateSerializer, responses={201: JobDetailSerializer})
    def post(self, request):
        organization = self.get_organization()
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        dataset = get_object_or_404(Dataset, pk=data.pop("dataset"), organization=organization)
        template_id = data.pop("template", None)
        config = {"preset": "balanced", "overrides": {}, "cloud_type": "SECURE", "spot": False}
        if template_id is not None:
            template = get_object_or_404(JobTemplate, pk=template_id, organization=organization)
            config.update({"preset": template.preset, "overrides": dict(template.overrides or {}),
                           "cloud_type": template.cloud_type, "spot": template.spot,
                           "base_model": template.base_model or None, "gpu_type": template.gpu_type or None})
        config.update({k: v for k, v in data.items() if v is not None or k == "bid_per_gpu"})
        job = job_services.job_create(organization=organization, dataset=dataset, created_by=request.user, **config)
        return self.render_created(job)

    def render_created(self, job):
        job = selectors.job_get(organization=self.get_organization(), job_id=job.pk)
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(JobScopedMixin, APIView):
    @extend_schema(responses=JobDetailSerializer)
    def get(self, request, pk):
        return self.render_job(pk)

    @extend_schema(request=JobNotesSerializer, responses=JobDetailSerializer)
    def patch(self, request, pk):
        job = self.get_job(pk)
        form = JobNotesSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job_services.job_notes_set(job_id=job.pk, notes=form.validated_data["notes"])
        return self.render_job(pk)


class JobCancelApi(JobScopedMixin, APIView):
    @extend_schema(request=None, responses=JobDetailSerializer)
    def post(self, request, pk):
        job_services.job_cancel(job_id=self.get_job(pk).pk, reason=f"cancelled by {request.user}")
        return self.render_job(pk)


class JobStopApi(JobScopedMixin, APIView):
    """Stop early: the pod saves a checkpoint and the job completes with it (202: it happens
    at the pod's next step boundary)."""

    @extend_schema(request=None, responses={202: JobDetailSerializer})
    def post(self, request, pk):
        job_services.job_stop_early(job_id=self.get_job(pk).pk, reason=f"stopped early by {request.user}")
        return self.render_job(pk, status.HTTP_202_ACCEPTED)


class JobRetryApi(JobScopedMixin, APIView):
    @extend_schema(request=JobRetrySerializer, responses={201: JobDetailSerializer})
    def post(self, request, pk):
        form = JobRetrySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = job_services.job_retry(job_id=self.get_job(pk).pk, created_by=request.user, **form.validated_data)
        return self.render_job(job.pk, status.HTTP_201_CREATED)


class JobEventListApi(JobScopedMixin, generics.ListAPIView):
    serializer_class = JobEventSerializer

    def get_queryset(self):
        return self.get_job(self.kwargs["pk"]).events.order_by("created_at", "id")


class JobCheckpointListApi(JobScopedMixin, generics.ListAPIView):
    serializer_class = CheckpointSerializer
    pagination_class = None

    def get_queryset(self):
        return self.get_job(self.kwargs["pk"]).checkpoints.order_by("step")


class JobCompareApi(OrganizationScopedMixin, APIView):
    """Configuration, final metrics, duration, cost and loss curves of several jobs."""

    @extend_schema(parameters=[JobCompareQuerySerializer], responses=JobCompareSerializer)
    def get(self, request):
        ids = query_params(JobCompareQuerySerializer, request)["ids"]
        return Response({"jobs": selectors.jobs_compare(organization=self.get_organization(), job_ids=ids)})
