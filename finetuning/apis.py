"""The /v1/ views: parse the request, call one service or selector, render OpenAI's object."""
from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpResponse
from django.utils.functional import cached_property
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import organization_for_user
from config.parsers import LimitedJSONParser
from finetuning import selectors, services
from finetuning.authentication import ApiKeyAuthentication
from finetuning.errors import ApiError, PermissionDenied, exception_handler
from finetuning.serializers import (
    FileListQuerySerializer,
    FileUploadSerializer,
    JobCreateSerializer,
    RESULTS_FILENAME,
    PageQuerySerializer,
    checkpoint_object,
    event_object,
    file_object,
    job_object,
    list_object,
    results_file_object,
)

METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")


class OpenAIApiView(APIView):
    """Bearer API keys only, JSON in and out, OpenAI's error body."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [LimitedJSONParser]
    renderer_classes = [JSONRenderer]
    throttle_classes: list = []
    schema = None  # documented in docs/openai-api.md, not in the DRF schema

    def get_exception_handler(self):
        return exception_handler

    @cached_property
    def organization(self):
        organization = organization_for_user(self.request.user)
        if organization is None:
            raise PermissionDenied("the user of this API key belongs to no organization; ask an admin to add them "
                                   "to one")
        return organization

    def page_query(self, serializer_class=PageQuerySerializer) -> dict:
        form = serializer_class(data=self.request.query_params)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        data["limit"] = min(data["limit"], settings.FINETUNING_MAX_PAGE_SIZE)
        return data

    def job(self, job_id: str):
        return selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)


# --------------------------------------------------------------------------- files

class FileListCreateApi(OpenAIApiView):
    parser_classes = [MultiPartParser, FormParser]

    def get(self, request):
        query = self.page_query(FileListQuerySerializer)
        page = selectors.api_files_page(organization=self.organization, after=query.get("after"),
                                        limit=query["limit"], order=query["order"], purpose=query.get("purpose"))
        return Response(list_object([file_object(f) for f in page.items], page.has_more))

    def post(self, request):
        form = FileUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        api_file = services.file_upload(organization=self.organization, user=request.user, api_key=request.auth,
                                        upload=form.validated_data["file"], purpose=form.validated_data["purpose"])
        return Response(file_object(api_file))


class FileDetailApi(OpenAIApiView):
    def get(self, request, file_id: str):
        job = selectors.results_file_job(organization=self.organization, file_id=file_id)
        if job is not None:
            return Response(results_file_object(job, len(selectors.results_csv(job).encode())))
        return Response(file_object(selectors.api_file_get(organization=self.organization, file_id=file_id)))

    def delete(self, request, file_id: str):
        deleted = services.file_delete(organization=self.organization, user=request.user, file_id=file_id)
        return Response({"id": deleted, "object": "file", "deleted": True})


class FileContentApi(OpenAIApiView):
    """files.content: a results file's CSV, or an upload's bytes as they were imported."""

    def perform_content_negotiation(self, request, force=False):
        # The client asks for application/binary; the content is returned as it is, and an error
        # still as OpenAI's JSON body.
        return super().perform_content_negotiation(request, force=True)

    def get(self, request, file_id: str):
        job = selectors.results_file_job(organization=self.organization, file_id=file_id)
        if job is not None:
            response = HttpResponse(selectors.results_csv(job).encode(), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{RESULTS_FILENAME}"'
            return response
        api_file = selectors.api_file_get(organization=self.organization, file_id=file_id)
        response = HttpResponse(services.file_content(api_file=api_file), content_type="application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="{api_file.filename}"'
        return response


# --------------------------------------------------------------------------- jobs

class JobListCreateApi(OpenAIApiView):
    def get(self, request):
        query = self.page_query()
        metadata, metadata_null = {}, False
        for key, value in request.query_params.items():
            match = METADATA_PARAM.match(key)
            if match:
                metadata[match.group(1)] = value
            elif key == "metadata":
                if value != "null":
                    raise ApiError("metadata: filter with metadata[key]=value, or metadata=null for jobs without "
                                   "metadata", param="metadata")
                metadata_null = True
        if metadata and metadata_null:
            raise ApiError("metadata: use either metadata[key]=value or metadata=null, not both", param="metadata")
        page = selectors.fine_tuning_jobs_page(organization=self.organization, after=query.get("after"),
                                               limit=query["limit"], metadata=metadata, metadata_null=metadata_null)
        costs = selectors.fine_tuning_job_costs(page.items)
        return Response(list_object([job_object(j, costs) for j in page.items], page.has_more))

    def post(self, request):
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job, created = services.fine_tuning_job_create(
            organization=self.organization, user=request.user, api_key=request.auth, request=form.to_request(),
            body_sha256=services.request_fingerprint(request.data),
            idempotency_key=request.headers.get("Idempotency-Key") or None,
        )
        response = Response(job_object(job, selectors.fine_tuning_job_costs([job])))
        if not created:
            response["x-idempotent-replay"] = "true"
        return response


class JobDetailApi(OpenAIApiView):
    def get(self, request, job_id: str):
        job = self.job(job_id)
        return Response(job_object(job, selectors.fine_tuning_job_costs([job])))


class JobCancelApi(OpenAIApiView):
    def post(self, request, job_id: str):
        job = services.fine_tuning_job_cancel(job=self.job(job_id), user=request.user)
        return Response(job_object(self.job(job.id)))


class JobPauseApi(OpenAIApiView):
    def post(self, request, job_id: str):
        job = services.fine_tuning_job_pause(job=self.job(job_id), user=request.user)
        return Response(job_object(self.job(job.id)))


class JobResumeApi(OpenAIApiView):
    def post(self, request, job_id: str):
        job = services.fine_tuning_job_resume(job=self.job(job_id), user=request.user)
        return Response(job_object(self.job(job.id)))


class JobEventListApi(OpenAIApiView):
    def get(self, request, job_id: str):
        job = self.job(job_id)
        query = self.page_query()
        page = selectors.fine_tuning_job_events_page(job=job, after=query.get("after"), limit=query["limit"])
        indexes = selectors.run_indexes(job)
        return Response(list_object([event_object(kind, row, indexes) for kind, row in page.items], page.has_more))


class JobCheckpointListApi(OpenAIApiView):
    def get(self, request, job_id: str):
        job = self.job(job_id)
        query = self.page_query()
        page = selectors.fine_tuning_job_checkpoints_page(job=job, after=query.get("after"), limit=query["limit"])
        metrics = selectors.metrics_at(page.items)
        return Response(list_object([checkpoint_object(job, c, metrics) for c in page.items], page.has_more))
