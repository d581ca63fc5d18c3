"""DRF views of the artifacts app: parse input, call one service, render output."""
from __future__ import annotations

import logging
import mimetypes

from django.http import FileResponse, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from accounts.selectors import organization_for_user, role_for_user
from artifacts import selectors, services
from artifacts.models import ModelArtifact
from artifacts.storage import StorageError, get_storage
from artifacts.storage.tokens import TokenInvalid, token_read

logger = logging.getLogger(__name__)

# Building a package writes a stored artifact: engineers and admins, like starting a job.
BUILD_ROLES = {Role.ADMIN, Role.ENGINEER}


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelArtifact
        fields = ["id", "job", "client", "kind", "name", "uri", "bytes", "sha256", "files", "metadata", "version",
                  "is_current", "created_at", "pruned_at"]


class DownloadSerializer(serializers.Serializer):
    artifact = serializers.UUIDField()
    kind = serializers.CharField()
    url = serializers.CharField(allow_null=True)
    files = serializers.ListField(child=serializers.DictField())
    expires_in = serializers.IntegerField()
    expires_at = serializers.CharField()


class PackageRequestSerializer(serializers.Serializer):
    report = serializers.DictField(required=False, help_text="a validation report to include in the model card")


def _organization(request):
    org = organization_for_user(request.user)
    if org is None:
        raise PermissionDenied("your account belongs to no organization; ask an admin to add you to one")
    return org


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if url and url.startswith("/") else url


class ArtifactListApi(generics.ListAPIView):
    """GET /api/v1/artifacts/?job=<id>&kind=<kind>&client=<name>"""

    serializer_class = ArtifactSerializer

    def get_queryset(self):
        params = self.request.query_params
        job = params.get("job")
        if job:
            try:
                serializers.UUIDField().to_internal_value(job)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"job": ["not a job id"]}) from exc
        return selectors.artifact_list(organization=_organization(self.request), job_id=job or None,
                                       kind=params.get("kind") or None, client=params.get("client"))


class ArtifactDetailApi(generics.RetrieveAPIView):
    serializer_class = ArtifactSerializer

    def get_queryset(self):
        return selectors.artifact_list(organization=_organization(self.request), include_pruned=True)


class ArtifactDownloadApi(APIView):
    """GET /api/v1/artifacts/{id}/download/: short-lived link(s) to the artifact's bytes."""

    @extend_schema(responses=DownloadSerializer)
    def get(self, request, pk):
        body = services.artifact_download_links(artifact_id=pk, user=request.user)
        body["url"] = _absolute(request, body["url"]) if body["url"] else None
        for entry in body["files"]:
            entry["url"] = _absolute(request, entry["url"])
        return Response(body)


class JobPackageApi(APIView):
    """POST /api/v1/jobs/{id}/package/: build (or rebuild) the job's deployment package."""

    @extend_schema(request=PackageRequestSerializer, responses={201: ArtifactSerializer})
    def post(self, request, pk):
        from training.models import TrainingJob

        organization = _organization(request)
        job = get_object_or_404(TrainingJob, pk=pk, organization=organization)
        if role_for_user(request.user, organization) not in BUILD_ROLES:
            raise PermissionDenied("building a package needs the engineer or admin role")
        form = PackageRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        artifact = services.job_package_build(job_id=job.pk, report=form.validated_data.get("report"))
        return Response(ArtifactSerializer(artifact).data, status=status.HTTP_201_CREATED)


@csrf_exempt
def storage_file(request, token: str):
    """The disk backend's link target: GET serves, PUT stores, the object a signed token names,
    until the token expires. The token is the credential (like an S3 presigned URL); it was
    issued after the permission check."""
    if request.method not in ("GET", "HEAD", "PUT"):
        return JsonResponse({"error": {"code": "method_not_allowed", "message": "use GET or PUT"}}, status=405)
    op = "put" if request.method == "PUT" else "get"
    try:
        tok = token_read(token, op=op)
    except TokenInvalid as exc:
        return JsonResponse({"error": {"code": "link_invalid", "message": str(exc)}}, status=403)
    storage = get_storage()
    if op == "put":
        storage.put_bytes(tok.key, request.body)
        return HttpResponse(status=200)
    if storage.name != "disk":  # a disk token presented to an S3-configured site
        return JsonResponse({"error": {"code": "not_found", "message": "no such file"}}, status=404)
    try:
        path = storage.local_path(tok.key)
        fh = open(path, "rb")
    except (StorageError, FileNotFoundError, IsADirectoryError):
        return JsonResponse({"error": {"code": "not_found", "message": "no such file (deleted?)"}}, status=404)
    logger.info("download of %s by user %s", tok.key, tok.user_id)
    filename = tok.filename or tok.key.rsplit("/", 1)[-1]
    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return FileResponse(fh, as_attachment=True, filename=filename, content_type=ctype)
