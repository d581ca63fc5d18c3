"""The dataset importer's errors (core.errors.DomainError subclasses)."""
from __future__ import annotations

from core.errors import DomainError


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
