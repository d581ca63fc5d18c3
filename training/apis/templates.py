"""Presets (read-only) and the organization's saved configuration templates."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from gpu_worker.presets import PRESETS
from training import selectors
from training.services import templates as job_templates
from core.apis import OrganizationScopedMixin
from training.models import JobTemplate
from training.serializers import JobTemplateSerializer, PresetSerializer


class PresetListApi(OrganizationScopedMixin, APIView):
    """The presets with when to choose each and their hyperparameters."""

    @extend_schema(responses=PresetSerializer(many=True))
    def get(self, request):
        return Response([{"name": p.name, "when_to_choose": p.when_to_choose,
                          "hyperparameters": p.hyperparameters.to_dict()} for p in PRESETS.values()])


class JobTemplateListCreateApi(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = JobTemplateSerializer

    def get_queryset(self):
        return selectors.job_template_list(organization=self.get_organization())

    @extend_schema(request=JobTemplateSerializer, responses={201: JobTemplateSerializer})
    def post(self, request):
        form = JobTemplateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        template = job_templates.job_template_create(organization=self.get_organization(), created_by=request.user,
                                                     **form.validated_data)
        return Response(JobTemplateSerializer(template).data, status=status.HTTP_201_CREATED)


class JobTemplateDetailApi(OrganizationScopedMixin, APIView):
    serializer_class = JobTemplateSerializer

    def get_template(self, pk) -> JobTemplate:
        return get_object_or_404(JobTemplate.objects.select_related("created_by"), pk=pk,
                                 organization=self.get_organization())

    @extend_schema(responses=JobTemplateSerializer)
    def get(self, request, pk):
        return Response(JobTemplateSerializer(self.get_template(pk)).data)

    @extend_schema(request=JobTemplateSerializer, responses=JobTemplateSerializer)
    def patch(self, request, pk):
        template = self.get_template(pk)
        form = JobTemplateSerializer(template, data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        return Response(JobTemplateSerializer(job_templates.job_template_update(template=template,
                                                                               **form.validated_data)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        job_templates.job_template_delete(template=self.get_template(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
