"""The OpenAPI schema as the API really answers (drf-spectacular's AutoSchema, adjusted):

- a list is a page ({count, next, previous, results}) only where the view really paginates (a
  generic list view); an APIView answering a bare array is documented as an array;
- every operation documents its 4xx answers with the one error component
  ({"error": {"code", "message", "detail"}}, config/api_errors.py): 400 where it takes a body or
  query parameters, 401 and 403 where it needs a user, 404 where the path names an object, 409 on
  writes, 402 on job creation and retry (the budget), 415 (and 413 for uploads) where it takes a
  body; 405 never (the schema lists the methods), 429 not (no throttling on /api/).
"""
from __future__ import annotations

import re

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import AllowAny

ErrorBody = inline_serializer("ErrorBody", fields={
    "code": serializers.CharField(help_text="what went wrong, e.g. not_found, validation_error, invalid_job_config"),
    "message": serializers.CharField(help_text="what to do"),
    "detail": serializers.JSONField(allow_null=True, help_text="field errors, budget figures..., or null"),
})
Error = inline_serializer("Error", fields={"error": ErrorBody})

_DESCRIPTIONS = {
    "400": "invalid input (code validation_error, parse_error, or a domain code such as invalid_job_config)",
    "401": "no or an invalid token (not_authenticated, authentication_failed)",
    "403": "the role may not do this (permission_denied)",
    "404": "no such object in the caller's organization, or a malformed id (not_found)",
    "402": "the budget refuses the job (budget_exceeded; figures and cheaper alternatives in detail)",
    "409": "the object's state does not allow this (invalid_job_state, template_name_taken, ...)",
    "413": "the upload is over the size limit (too_large)",
    "415": "the body's content type is not accepted (unsupported_media_type)",
}


class ApiAutoSchema(AutoSchema):
    def _get_paginator(self):
        if not isinstance(self.view, ListModelMixin):
            return None
        return super()._get_paginator()

    def _error_codes(self) -> list[str]:
        method = self.method.upper()
        codes = []
        takes_input = method in ("POST", "PUT", "PATCH") or bool(self._get_filter_parameters()) or any(
            p.get("in") == "query" for p in self._get_format_parameters() + self.get_override_parameters_as_dicts())
        if takes_input or method == "GET" and self._is_list_view():
            codes.append("400")
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes += ["401", "403"]
        if "{" in self.path:
            codes.append("404")
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            codes.append("409")
        if method == "POST" and re.search(r"/jobs/$|/retry/$", self.path):
            codes.append("402")
        if method in ("POST", "PUT", "PATCH"):
            if any(getattr(parser, "media_type", "").startswith("multipart/") for parser in self.view.get_parsers()):
                codes.append("413")
            codes.append("415")
        return codes

    def get_override_parameters_as_dicts(self) -> list[dict]:
        out = []
        for parameter in self.get_override_parameters():
            location = getattr(parameter, "location", None)
            if location:
                out.append({"in": location})
            elif isinstance(parameter, type) or hasattr(parameter, "fields"):
                out.append({"in": "query"})
        return out

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                component = self.resolve_serializer(Error, "response")
                responses[code] = {"description": _DESCRIPTIONS[code],
                                   "content": {"application/json": {"schema": component.ref}}}
        return responses


def optional_request_defaults(result, generator, request, public):
    """Postprocessing hook: an optional request field with a default is shown as optional by
    generated clients. openapi-typescript (and others) type a property with a `default` as always
    present, which is right for a response and wrong for a request: a client would have to send
    `client`, `name` and `notes` on job create. In request components the default moves into the
    description."""
    for name, component in (result.get("components", {}).get("schemas") or {}).items():
        if not name.endswith("Request") and not name.startswith("Patched"):
            continue
        required = set(component.get("required") or ())
        for field, prop in (component.get("properties") or {}).items():
            if field not in required and "default" in prop:
                default = prop.pop("default")
                shown = repr(default) if default != "" else "empty"
                prop["description"] = (prop.get("description", "") + f" (default: {shown})").strip()
    return result
