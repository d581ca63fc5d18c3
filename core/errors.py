"""Domain errors: a message a person can act on, a stable code, and the HTTP status it maps to.

Every app's own errors subclass DomainError; config/api_errors.py renders them in the one error
format (`{"error": {"code", "message", "detail"}}`).
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str, *, detail: Any = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message
