"""Domain errors: a message a person can act on, a stable code, and the HTTP status it maps to."""
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


class DatasetImportError(DomainError):
    """The file cannot be imported. `location` names the place (JSON path, line, conversation)."""

    code = "invalid_dataset"

    def __init__(self, message: str, *, location: str | None = None, code: str | None = None):
        full = f"{location}: {message}" if location else message
        super().__init__(full, detail={"location": location} if location else None, code=code)
        self.location = location


class DatasetTooLarge(DatasetImportError):
    code = "dataset_too_large"
    http_status = 413
