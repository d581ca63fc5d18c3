"""Writes of saved configuration templates (`JobTemplate`).

These belong with the other services (training/services/templates.py); they live here until
the services package is free to edit. A template is checked the way a job would be (the preset
and overrides are resolved), so a template that cannot start a job cannot be saved.
"""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from core.errors import DomainError
from training.models import JobTemplate
from core.job_config import job_config_resolve

FIELDS = ("name", "description", "base_model", "preset", "overrides", "gpu_type", "cloud_type", "spot")


class TemplateNameTaken(DomainError):
    code = "template_name_taken"
    http_status = 409


def _check(values: dict) -> None:
    job_config_resolve(preset=values.get("preset") or "balanced", overrides=values.get("overrides") or {},
                       base_model=values.get("base_model") or settings.DEFAULT_BASE_MODEL)


def job_template_create(*, organization, created_by=None, **values) -> JobTemplate:
    _check(values)
    try:
        with transaction.atomic():
            return JobTemplate.objects.create(organization=organization, created_by=created_by,
                                              **{k: v for k, v in values.items() if k in FIELDS})
    except IntegrityError as exc:
        raise TemplateNameTaken(f"a template named {values.get('name')!r} already exists; pick another name",
                                detail={"field": "name"}) from exc


def job_template_update(*, template: JobTemplate, **changes) -> JobTemplate:
    for name, value in changes.items():
        if name in FIELDS:
            setattr(template, name, value)
    _check({f: getattr(template, f) for f in FIELDS})
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError as exc:
        raise TemplateNameTaken(f"a template named {template.name!r} already exists; pick another name",
                                detail={"field": "name"}) from exc
    return template


def job_template_delete(*, template: JobTemplate) -> None:
    template.delete()
