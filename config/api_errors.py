"""One error format for every API response: {"error": {"code", "message", "detail"}}.

Used by DRF (the EXCEPTION_HANDLER setting) and, for what never reaches a DRF view, by the
fallback routes and the 404/500 handlers in config/urls.py: an unknown /api/ path, a malformed id
(a non-UUID where a UUID goes: no route matches), an Http404 or an unhandled error in a plain
Django view under /api/. /v1/ (the OpenAI-compatible API) answers OpenAI's error body instead
(finetuning/errors.py). Codes are specific: not_found, validation_error, method_not_allowed,
not_authenticated, authentication_failed, permission_denied, parse_error, unsupported_media_type,
throttled, server_error, or the domain error's own code (invalid_job_config, budget_exceeded, ...).
"""
from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import DomainError

logger = logging.getLogger(__name__)

# Older codes kept meaning the same thing under one name.
_CODE_ALIASES = {"invalid": "validation_error", "invalid_input": "validation_error"}
_STATUS_CODES = {400: "validation_error", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
                 415: "unsupported_media_type", 429: "throttled", 500: "server_error"}


def error_body(code: str, message: str, detail=None) -> dict:
    return {"error": {"code": code, "message": message, "detail": detail}}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        code = _CODE_ALIASES.get(exc.code, exc.code)
        return Response(error_body(code, exc.message, exc.detail), status=exc.http_status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(detail, dict) and "detail" in detail and len(detail) == 1:
        message = str(detail["detail"])
        detail = None
    elif isinstance(detail, dict):
        fields = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in detail.items())
        message = f"invalid input: {fields}"
    else:
        message = str(detail)
    # Http404 and Django's PermissionDenied carry no DRF code: the status names it.
    code = getattr(exc, "default_code", None) or _STATUS_CODES.get(response.status_code, "error")
    code = _CODE_ALIASES.get(code, code)
    if isinstance(exc, Http404):
        code, message = "not_found", (message if message not in ("Not found.", "") else "not found")
    if code == "error" and response.status_code in _STATUS_CODES:
        code = _STATUS_CODES[response.status_code]
    response.data = error_body(code, message, detail)
    return response


def _not_found(request) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"no API route for {request.method} {request.path}: check the "
                                                "path and that ids are UUIDs (see /api/docs/)"), status=404)


def _call(match, request):
    view = match.func
    if asyncio.iscoroutinefunction(view):
        return async_to_sync(view)(request, *match.args, **match.kwargs)
    return view(request, *match.args, **match.kwargs)


@csrf_exempt
def api_fallback(request):
    """Every /api/ path no route matched. Without its trailing slash, the route with it answers
    (no redirect: a browser `fetch` turns a 301 on a POST into a GET); otherwise a JSON 404."""
    path = request.path_info
    if not path.endswith("/"):
        try:
            match = resolve(path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_fallback:
            if not getattr(match.func, "csrf_exempt", False):
                from django.middleware.csrf import CsrfViewMiddleware

                rejected = CsrfViewMiddleware(lambda r: None).process_view(request, match.func, match.args,
                                                                            match.kwargs)
                if rejected is not None:
                    return rejected
            request.resolver_match = match
            return _call(match, request)
    return _not_found(request)


def _api_kind(request) -> str | None:
    path = request.path_info
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/v1/"):
        return "v1"
    return None


def page_not_found(request, exception=None):
    """handler404: an Http404 raised outside DRF (a plain view, a failed lookup) under /api/ or /v1/."""
    kind = _api_kind(request)
    if kind == "api":
        return _not_found(request)
    if kind == "v1":
        from finetuning.errors import not_found_view

        return not_found_view(request)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: JSON under /api/ and /v1/ (the error was logged by Django)."""
    kind = _api_kind(request)
    message = "the server had an error while processing the request; it was logged"
    if kind == "api":
        return JsonResponse(error_body("server_error", message), status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if kind == "v1":
        from finetuning.errors import error_body as openai_error_body

        return JsonResponse(openai_error_body(message, type="server_error", code="server_error"), status=500)
    return defaults.server_error(request)
