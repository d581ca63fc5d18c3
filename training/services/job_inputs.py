"""Checks on what a client sends to create a job, before anything is written or rented.

`base_model` is a Hugging Face hub id (`owner/name`, optionally `@revision`) or a model folder
under `MODELS_DIR`, nothing else: no other server path, URL or shell text reaches a pod, and the
answer is the same whether a path outside the folder exists or not (no oracle)."""
from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from core.errors import DomainError

NOTES_MAX_CHARS = 10_000
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
HUB_ID = re.compile(rf"^{_PART}/{_PART}(?:@[A-Za-z0-9][A-Za-z0-9._/-]{{0,99}})?$")


class JobInputError(DomainError):
    code = "invalid_job_config"


def base_model_check(value: str) -> str:
    """The accepted form of `value` (a hub id as given, a folder as its resolved path)."""
    text = (value or "").strip()
    if HUB_ID.match(text) and ".." not in text:
        return text
    models_dir = Path(settings.MODELS_DIR).resolve()
    if text and "\x00" not in text and len(text) <= 500:
        candidate = Path(text)
        resolved = (candidate if candidate.is_absolute() else models_dir / candidate).resolve()
        if models_dir in resolved.parents and resolved.is_dir():
            return str(resolved)
    raise JobInputError(
        "base_model must be a Hugging Face hub id (owner/name, optionally @revision, e.g. "
        "meta-llama/Meta-Llama-3-8B-Instruct) or the name of a model folder under the server's models "
        "folder (MODELS_DIR)", detail={"field": "base_model"})


def gpu_type_check(value: str) -> str:
    from billing.services.catalog import gpu_type_get

    if gpu_type_get(value) is None:
        raise JobInputError(f"unknown gpu_type {value[:100]!r}: choose one from GET /api/v1/billing/gpu-types/ (the price "
                            "catalog)", detail={"field": "gpu_type"})
    return value


def notes_check(value: str) -> str:
    if len(value or "") > NOTES_MAX_CHARS:
        raise JobInputError(f"notes must be at most {NOTES_MAX_CHARS} characters (got {len(value)})",
                            detail={"field": "notes"})
    return value
