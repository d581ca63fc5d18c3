"""OpenAI's error body for every /v1/ response: {"error": {"message", "type", "param", "code"}}.

The status code picks the `openai` client's exception (400 BadRequestError, 401
AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409 ConflictError, ...).
The client retries 408, 409, 429 and 5xx on its own unless the response carries
`x-should-retry: false`; errors that will not pass by themselves carry it.
"""
from __future__ import annotations

import logging

from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework.response import Response

from billing.errors import BudgetExceeded
from core.errors import DomainError
from training.errors import DatasetImportError

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"


class ApiError(DomainError):
    """An error of the OpenAI API layer, naming the request parameter it is about."""

    http_status = 400
    code = "invalid_request"
    type = INVALID_REQUEST

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 http_status: int | None = None, retryable: bool | None = None):
        super().__init__(message, detail={"param": param} if param else None, code=code)
        self.param = param
        if http_status:
            self.http_status = http_status
        self.retryable = retryable


class NotFound(ApiError):
    http_status = 404
    code = "not_found"


class Conflict(ApiError):
    """The job is not in a state that allows the action. Not retried unless `retryable` (a pause
    still stopping at its checkpoint passes by itself within seconds). `job_ids`, when given, are
    added to the error body (the jobs in the way)."""

    http_status = 409
    code = "invalid_job_state"

    def __init__(self, message: str, *, job_ids: list[str] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.job_ids = job_ids


class PermissionDenied(ApiError):
    http_status = 403
    code = "permission_denied"
    type = "permission_error"


# Our DomainError fields (detail["field"]) → the OpenAI request parameter they come from.
_FIELD_PARAMS = {"dataset": "training_file", "preset": "preset", "bid_per_gpu": None}


def error_body(message: str, *, type: str = INVALID_REQUEST, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _no_retry(response: Response) -> Response:
    response["x-should-retry"] = "false"
    return response


def _domain_error_response(exc: DomainError) -> Response:
    if isinstance(exc, BudgetExceeded):
        # 402, not 429: the client (and generic retry wrappers keyed on RateLimitError) would
        # retry a 429, and waiting a few seconds does not bring a monthly budget back. The
        # header makes it explicit for any client that reads it.
        message = (f"{exc.message}. The budget refused this job; retrying will not help until the "
                   "budget is raised or the month turns.")
        return _no_retry(Response(error_body(message, type="insufficient_quota", code=exc.code), status=402))
    status = exc.http_status
    if isinstance(exc, ApiError):
        param, type_ = exc.param, exc.type
    elif isinstance(exc, DatasetImportError):
        param, type_ = "file", INVALID_REQUEST
    else:
        field = exc.detail.get("field") if isinstance(exc.detail, dict) else None
        param, type_ = _FIELD_PARAMS.get(field, field), INVALID_REQUEST
        if status == 403:
            type_ = "permission_error"
    body = error_body(exc.message, type=type_, param=param, code=exc.code)
    if getattr(exc, "job_ids", None):
        body["error"]["job_ids"] = exc.job_ids
    response = Response(body, status=status)
    retryable = getattr(exc, "retryable", None)
    if retryable is False or (retryable is None and status in (408, 409, 429)):
        _no_retry(response)
    return response


def _validation_param(detail, prefix: str = "") -> tuple[str | None, str]:
    """The first failing field of a DRF ValidationError, as a dotted parameter path."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            return _validation_param(value, name)
    if isinstance(detail, list) and detail:
        if isinstance(detail[0], (dict, list)):
            return _validation_param(detail[0], prefix)
        return (prefix or None), str(detail[0])
    return (prefix or None), str(detail)


def exception_handler(exc, context):
    """DRF exception handler for the /v1/ views (set per view: the rest of the API keeps its own)."""
    if isinstance(exc, DomainError):
        return _domain_error_response(exc)
    if isinstance(exc, Http404):
        return Response(error_body(str(exc) or "not found", code="not_found"), status=404)
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        if isinstance(exc, drf.NotAuthenticated):
            message = ("You didn't provide an API key. Send it in the Authorization header as "
                       "'Bearer YOUR_KEY'; keys are issued in the admin or on the dashboard.")
            code = None
        else:
            message, code = str(exc.detail), getattr(exc, "openai_code", "invalid_api_key")
        response = Response(error_body(message, code=code), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if isinstance(exc, drf.PermissionDenied):
        return Response(error_body(str(exc.detail), type="permission_error", code="permission_denied"), status=403)
    if isinstance(exc, drf.ValidationError):
        param, message = _validation_param(exc.detail)
        return Response(error_body(f"{param}: {message}" if param else message, param=param, code="invalid_value"),
                        status=400)
    if isinstance(exc, drf.Throttled):
        return Response(error_body(str(exc.detail), type="rate_limit_error", code="rate_limited"), status=429)
    if isinstance(exc, drf.APIException):
        response = Response(error_body(str(exc.detail), code=exc.default_code), status=exc.status_code)
        if exc.status_code == 405:
            _no_retry(response)
        return response
    logger.exception("unhandled error in the OpenAI-compatible API", exc_info=exc)
    return Response(error_body("The server had an error while processing your request; it was logged.",
                               type="server_error", code="server_error"), status=500)


@csrf_exempt
def not_found_view(request, *args, **kwargs):
    """Any /v1/ path that is not a route: OpenAI's error body rather than Django's HTML page. The
    routes have no trailing slash (the `openai` client sends none); with one, the route without it
    answers (every /v1/ view is a DRF view, exempt from CSRF and authenticated by API key)."""
    path = request.path_info
    if path.endswith("/") and path.rstrip("/").startswith("/v1/"):
        try:
            match = resolve(path.rstrip("/"))
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found_view:
            request.resolver_match = match
            return match.func(request, *match.args, **match.kwargs)
    return JsonResponse(error_body(f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"),
                        status=404)
