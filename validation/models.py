"""A validation run: one scoring of one completed job's evaluation, with everything it was computed
from (inputs, judge settings, thresholds, versions) and what came out (metrics, verdict, examples).
The rendered report (JSON, HTML, PDF) is stored as the job's `report` artifacts."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class RunStatus(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"


class RunTrigger(models.TextChoices):
    AUTOMATIC = "automatic", "automatic (after training)"
    ON_DEMAND = "on_demand", "on demand"


class Verdict(models.TextChoices):
    PASS = "pass", "pass"
    FAIL = "fail", "fail"
    INCOMPLETE = "incomplete", "incomplete"
    INCONCLUSIVE = "inconclusive", "inconclusive"
    NOT_VALID = "not_valid", "not valid for this dataset"


class BrandVoicePolicy(models.Model):
    """Brand-voice thresholds of one organization, or of one of its clients (`client` set): the
    gate in validation.gates reads the most specific row, else the VALIDATION_* settings. A
    client-supplied `profile` (the consultant_profile shape) replaces the dataset's own."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE,
                                     related_name="brand_voice_policies")
    client = models.CharField(max_length=120, blank=True, default="",
                              help_text="empty: the organization's default policy")
    on_voice_floor = models.FloatField(default=0.5)
    margin = models.FloatField(default=0.10, help_text="non-inferiority margin vs the reference replies' rate")
    relevance_min = models.FloatField(default=0.5)
    diversity_min = models.FloatField(default=0.8)
    profile = models.JSONField(null=True, blank=True, help_text="client-supplied consultant profile")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "client"], name="one_voice_policy_per_client")]

    def __str__(self):
        return f"brand voice policy of {self.organization_id}{' / ' + self.client if self.client else ''}"


class ValidationRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey("training.TrainingJob", on_delete=models.CASCADE, related_name="validation_runs")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="validation_runs")
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True)
    trigger = models.CharField(max_length=12, choices=RunTrigger.choices, default=RunTrigger.AUTOMATIC)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")

    # What the run was computed from. `validation_dataset`: the dataset whose validation split the
    # run measured (the job's own, or the organization's benchmark); null on runs made before.
    validation_dataset = models.ForeignKey("training.Dataset", null=True, blank=True, on_delete=models.PROTECT,
                                           related_name="+")
    inputs = models.JSONField(default=dict, blank=True,
                              help_text="evaluation file, dataset split, item counts, the pod's evaluation settings")
    judge = models.JSONField(default=dict, blank=True,
                             help_text="kind, label and settings of the judge (endpoint and model; never the API key)")
    thresholds = models.JSONField(default=dict, blank=True)
    versions = models.JSONField(default=dict, blank=True, help_text="code, model, judge and data set versions")

    # What came out.
    metrics = models.JSONField(default=dict, blank=True, help_text="metric key -> Metric/NotComputed .to_dict()")
    verdict = models.CharField(max_length=12, choices=Verdict.choices, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="scoring.summary_verdict()")
    examples = models.JSONField(default=list, blank=True, help_text="side-by-side examples, with the selection rule")
    judge_result = models.JSONField(default=dict, blank=True, help_text="JudgeResult.to_dict() (every score)")
    errors = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # How many times a worker took this run up. A worker killed mid-run leaves it `running`; the
    # run is taken up again once stale (services.validation_runs_recover), at most
    # VALIDATION_RUN_MAX_ATTEMPTS times, so a run that kills its worker every time ends `failed`.
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["job", "-created_at"], name="valrun_job_recent")]
        constraints = [
            # At most one automatic run per job that is not failed: the automatic validation task
            # may be delivered twice (acks late), concurrently; the database settles the race.
            models.UniqueConstraint(fields=["job"], condition=models.Q(trigger="automatic") & ~models.Q(status="failed"),
                                    name="valrun_one_live_automatic_per_job"),
        ]

    def __str__(self):
        return f"validation of {self.job_id} ({self.status}{', ' + self.verdict if self.verdict else ''})"
