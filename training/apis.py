"""DRF views of the training app: parse input, call one service, render output."""
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from accounts.selectors import organization_for_user
from training.errors import DatasetTooLarge
from training.models import Dataset
from training.serializers import DatasetDetailSerializer, DatasetSerializer, DatasetUploadSerializer
from training.services.datasets import dataset_import, _too_large


class OrganizationScopedMixin:
    """Every queryset is filtered to the caller's organization (lists, not only objects)."""

    def get_organization(self):
        org = organization_for_user(self.request.user)
        if org is None:
            raise PermissionDenied("your account belongs to no organization; ask an admin to add you to one")
        return org


class DatasetListCreateApi(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return Dataset.objects.filter(organization=self.get_organization()).order_by("-created_at")

    @extend_schema(request=DatasetUploadSerializer, responses={201: DatasetDetailSerializer, 200: DatasetDetailSerializer})
    def post(self, request):
        organization = self.get_organization()
        upload = request.FILES.get("file")
        if upload is not None and upload.size > settings.DATASET_MAX_BYTES:
            raise DatasetTooLarge(_too_large(upload.size, settings.DATASET_MAX_BYTES), location="file")
        form = DatasetUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        result = dataset_import(
            organization=organization,
            source=upload,
            filename=upload.name,
            name=form.validated_data.get("name"),
            val_fraction=form.validated_data.get("val_fraction"),
            seed=form.validated_data.get("seed"),
            created_by=request.user,
            size_hint=upload.size,
        )
        body = DatasetDetailSerializer(result.dataset).data
        body["created"] = result.created
        body["message"] = result.message
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class DatasetDetailApi(OrganizationScopedMixin, generics.RetrieveAPIView):
    serializer_class = DatasetDetailSerializer

    def get_queryset(self):
        return Dataset.objects.filter(organization=self.get_organization())


# --------------------------------------------------------------------------- jobs

from rest_framework.views import APIView  # noqa: E402

from gpu_worker.presets import presets_table  # noqa: E402
from training.models import TrainingJob  # noqa: E402
from training.serializers import (  # noqa: E402
    CheckpointSerializer,
    JobCreateSerializer,
    JobDetailSerializer,
    JobEventSerializer,
    JobNotesSerializer,
    JobRetrySerializer,
    JobSerializer,
    MetricPointSerializer,
)
from training.services import jobs as job_services  # noqa: E402


class JobScopedMixin(OrganizationScopedMixin):
    def get_job(self, pk) -> TrainingJob:
        from django.shortcuts import get_object_or_404

        return get_object_or_404(TrainingJob, pk=pk, organization=self.get_organization())


class JobListCreateApi(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        qs = (TrainingJob.objects.filter(organization=self.get_organization())
              .select_related("dataset", "created_by").order_by("-created_at"))
        status_filter = self.request.query_params.get("status")
        return qs.filter(status=status_filter) if status_filter else qs

    @extend_schema(request=JobCreateSerializer, responses={201: JobDetailSerializer})
    def post(self, request):
        organization = self.get_organization()
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        dataset = Dataset.objects.filter(pk=data["dataset"], organization=organization).first()
        if dataset is None:
            return Response({"error": {"code": "not_found", "message": "no such dataset", "detail": {"field": "dataset"}}},
                            status=status.HTTP_404_NOT_FOUND)
        job = job_services.job_create(
            organization=organization, dataset=dataset, created_by=request.user, preset=data["preset"],
            overrides=data["overrides"], base_model=data.get("base_model"), gpu_type=data.get("gpu_type"),
            cloud_type=data["cloud_type"], spot=data["spot"], bid_per_gpu=data.get("bid_per_gpu"),
            client=data["client"], name=data["name"], notes=data["notes"],
        )
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(JobScopedMixin, APIView):
    @extend_schema(responses=JobDetailSerializer)
    def get(self, request, pk):
        return Response(JobDetailSerializer(self.get_job(pk)).data)

    @extend_schema(request=JobNotesSerializer, responses=JobDetailSerializer)
    def patch(self, request, pk):
        job = self.get_job(pk)
        form = JobNotesSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return Response(JobDetailSerializer(job_services.job_notes_set(job_id=job.pk, notes=form.validated_data["notes"])).data)


class JobCancelApi(JobScopedMixin, APIView):
    @extend_schema(request=None, responses=JobDetailSerializer)
    def post(self, request, pk):
        job = job_services.job_cancel(job_id=self.get_job(pk).pk, reason=f"cancelled by {request.user}")
        return Response(JobDetailSerializer(job).data)


class JobStopApi(JobScopedMixin, APIView):
    @extend_schema(request=None, responses=JobDetailSerializer)
    def post(self, request, pk):
        job = job_services.job_stop_early(job_id=self.get_job(pk).pk, reason=f"stopped early by {request.user}")
        return Response(JobDetailSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobRetryApi(JobScopedMixin, APIView):
    @extend_schema(request=JobRetrySerializer, responses={201: JobDetailSerializer})
    def post(self, request, pk):
        form = JobRetrySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = job_services.job_retry(job_id=self.get_job(pk).pk, created_by=request.user, **form.validated_data)
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


class JobEventListApi(JobScopedMixin, generics.ListAPIView):
    serializer_class = JobEventSerializer

    def get_queryset(self):
        return self.get_job(self.kwargs["pk"]).events.order_by("created_at", "id")


class JobMetricListApi(JobScopedMixin, generics.ListAPIView):
    serializer_class = MetricPointSerializer

    def get_queryset(self):
        return self.get_job(self.kwargs["pk"]).metrics.order_by("step")


class JobCheckpointListApi(JobScopedMixin, generics.ListAPIView):
    serializer_class = CheckpointSerializer

    def get_queryset(self):
        return self.get_job(self.kwargs["pk"]).checkpoints.order_by("step")


class PresetListApi(APIView):
    def get(self, request):
        return Response(presets_table())
