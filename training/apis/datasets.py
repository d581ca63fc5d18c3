from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from training import selectors
from core.apis import OrganizationScopedMixin
from training.errors import DatasetTooLarge
from training.models import Dataset
from training.serializers import DatasetDetailSerializer, DatasetSerializer, DatasetUploadSerializer
from training.services.datasets import _too_large, dataset_import


class DatasetListCreateApi(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return selectors.dataset_list(organization=self.get_organization())

    @extend_schema(request=DatasetUploadSerializer, responses={201: DatasetDetailSerializer, 200: DatasetDetailSerializer})
    def post(self, request):
        organization = self.get_organization()
        uploads = request.FILES.getlist("file")
        for upload in uploads:
            if upload.size > settings.DATASET_MAX_BYTES:
                raise DatasetTooLarge(_too_large(upload.size, settings.DATASET_MAX_BYTES),
                                      location=upload.name if len(uploads) > 1 else "file")
        form = DatasetUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # Several `file` parts make one dataset, conversations deduplicated by content.
        result = dataset_import(
            organization=organization,
            files=[(upload.name, upload, upload.size) for upload in uploads] or [(form.validated_data["file"].name,
                                                                                  form.validated_data["file"], None)],
            name=form.validated_data.get("name"),
            val_fraction=form.validated_data.get("val_fraction"),
            seed=form.validated_data.get("seed"),
            created_by=request.user,
            on_error=form.validated_data.get("on_error") or "fail",
        )
        body = DatasetDetailSerializer(result.dataset).data
        body["created"] = result.created
        body["message"] = result.message
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class DatasetDetailApi(OrganizationScopedMixin, generics.RetrieveAPIView):
    serializer_class = DatasetDetailSerializer

    def get_queryset(self):
        return Dataset.objects.filter(organization=self.get_organization())


class DatasetBenchmarkApi(OrganizationScopedMixin, generics.GenericAPIView):
    """POST: mark the dataset as the organization's benchmark (the previous one is unmarked);
    DELETE: unmark it. Admins only: the benchmark is the fixed test set every job's report can be
    compared on, so engineers cannot move it under a comparison."""

    serializer_class = DatasetDetailSerializer

    def get_queryset(self):
        return Dataset.objects.filter(organization=self.get_organization())

    def _set(self, pk, on: bool):
        from rest_framework.exceptions import PermissionDenied

        from accounts.models import Role
        from training.services.datasets import dataset_benchmark_set

        dataset = self.get_object()
        if self.actor.role != Role.ADMIN:
            raise PermissionDenied("only an admin of the organization can mark or unmark its benchmark dataset")
        return Response(DatasetDetailSerializer(dataset_benchmark_set(dataset=dataset, on=on)).data)

    @extend_schema(request=None, responses={200: DatasetDetailSerializer})
    def post(self, request, pk):
        return self._set(pk, True)

    @extend_schema(request=None, responses={200: DatasetDetailSerializer})
    def delete(self, request, pk):
        return self._set(pk, False)
