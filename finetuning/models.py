"""The OpenAI-compatible API's own rows. Everything about training lives in `training`; these
tables only map OpenAI's objects (keys, files, jobs) onto it."""
from __future__ import annotations

import secrets
import string

from django.conf import settings
from django.db import models

_ALPHABET = string.ascii_letters + string.digits


def _public_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def new_file_id() -> str:
    return _public_id("file-")


def new_job_id() -> str:
    return _public_id("ftjob-")


class ApiKey(models.Model):
    """A bearer key for the /v1/ API. Only its SHA-256 is stored; the key itself is shown once, when
    it is issued (`finetuning.services.api_key_issue`). The key acts as its user."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, help_text="what the key is for, e.g. 'CI pipeline'")
    prefix = models.CharField(max_length=16, help_text="the key's first characters, to recognise it")
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="who issued it")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.prefix}… ({self.user}{', revoked' if self.revoked_at else ''})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class FineTuningFile(models.Model):
    """An uploaded file (OpenAI's `file` object). Its content is imported as a `training.Dataset`;
    the same content uploaded twice is two files over one dataset, each keeping its own name."""

    PURPOSE_FINE_TUNE = "fine-tune"

    id = models.CharField(primary_key=True, max_length=40, default=new_file_id, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="api_files")
    dataset = models.ForeignKey("training.Dataset", on_delete=models.PROTECT, related_name="api_files")
    filename = models.CharField(max_length=255)
    bytes = models.BigIntegerField()
    purpose = models.CharField(max_length=32, default=PURPOSE_FINE_TUNE)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text=(
        "set by files.delete: the file is gone from the API, while the jobs that trained on it keep naming it "
        "(their dataset is training's, not the file's)"))

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="apifile_org_recent")]

    def __str__(self):
        return f"{self.id} ({self.filename})"


class FineTuningJob(models.Model):
    """OpenAI's `fine_tuning.job`: one id for the client over one or more `TrainingJob` runs. A
    pause stops the current run at a checkpoint; a resume starts a new run (a retry with resume,
    linked by `parent`) from it. `training_job` is the current run, `runs` all of them in order."""

    id = models.CharField(primary_key=True, max_length=40, default=new_job_id, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="api_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    training_job = models.ForeignKey("training.TrainingJob", on_delete=models.PROTECT, related_name="+",
                                     help_text="the current run")

    model = models.CharField(max_length=500, help_text="the base model as the client named it")
    training_file = models.ForeignKey(FineTuningFile, on_delete=models.PROTECT, related_name="+")
    validation_file = models.ForeignKey(FineTuningFile, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    suffix = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    requested_hyperparameters = models.JSONField(default=dict, blank=True,
                                                 help_text="as sent, 'auto' included")
    method = models.JSONField(default=dict, blank=True)

    paused_at = models.DateTimeField(null=True, blank=True, help_text="set by pause, cleared by resume")
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="apijob_org_recent")]
        verbose_name = "fine-tuning job (OpenAI API)"

    def __str__(self):
        return self.id

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("ftjob-")[:8]


class FineTuningRun(models.Model):
    """One `TrainingJob` of a `FineTuningJob`, in order (0: the run created with the job)."""

    fine_tuning_job = models.ForeignKey(FineTuningJob, on_delete=models.CASCADE, related_name="runs")
    training_job = models.OneToOneField("training.TrainingJob", on_delete=models.PROTECT,
                                        related_name="fine_tuning_run")
    index = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["fine_tuning_job", "index"], name="one_run_per_index")]


class JobCreateRequest(models.Model):
    """A job creation, remembered so that the same request sent again (the client retries after a
    dropped response, with no idempotency key) returns the same job instead of starting another.
    `key` is the Idempotency-Key header when the client sent one, else the body's hash."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=300)
    body_sha256 = models.CharField(max_length=64)
    fine_tuning_job = models.ForeignKey(FineTuningJob, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["api_key", "key", "-created_at"], name="jobrequest_key_recent")]
