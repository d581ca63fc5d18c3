"""Artifact errors, in the project's one error format (core.errors.DomainError)."""
from core.errors import DomainError


class ArtifactNotFound(DomainError):
    # Another organization's artifact reads as missing, so ids reveal nothing.
    code = "not_found"
    http_status = 404


class ArtifactPermissionDenied(DomainError):
    code = "permission_denied"
    http_status = 403


class ArtifactNotReady(DomainError):
    code = "artifact_not_ready"
    http_status = 409


class ArtifactGone(DomainError):
    code = "artifact_gone"
    http_status = 410


class MergeNotPossible(DomainError):
    code = "merge_not_possible"
    http_status = 400
