"""Billing tables: the GPU price catalog, what the estimator learned, each job's estimate and
metered cost, monthly budgets and the alerts they raised. Money is `Decimal` everywhere: prices
to 1/10000 of a dollar per hour, amounts to the cent."""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

PRICE = {"max_digits": 10, "decimal_places": 4}   # $/h
MONEY = {"max_digits": 14, "decimal_places": 2}   # $


class GpuType(models.Model):
    """One GPU type as RunPod names it, with its $/h per GPU on each cloud, on-demand and spot.

    A blank price means unknown for that cloud: the estimator then uses the secure on-demand price
    (an upper bound) and says so. `relative_speed` scales the throughput table (H100 SXM = 1.0).
    """

    SOURCE_SEED = "seed"
    SOURCE_RUNPOD = "runpod"
    SOURCE_ADMIN = "admin"
    SOURCE_CHOICES = [(SOURCE_SEED, "documented seed"), (SOURCE_RUNPOD, "RunPod price query"), (SOURCE_ADMIN, "edited")]

    gpu_id = models.CharField(max_length=100, unique=True, help_text="RunPod's GPU type id, e.g. 'NVIDIA H100 80GB HBM3'")
    display_name = models.CharField(max_length=100)
    memory_gb = models.PositiveIntegerField()
    secure_price = models.DecimalField(**PRICE, null=True, blank=True, help_text="secure cloud, on-demand, $/h per GPU")
    community_price = models.DecimalField(**PRICE, null=True, blank=True, help_text="community cloud, on-demand")
    secure_spot_price = models.DecimalField(**PRICE, null=True, blank=True, help_text="secure cloud, spot (interruptible)")
    community_spot_price = models.DecimalField(**PRICE, null=True, blank=True, help_text="community cloud, spot")
    relative_speed = models.DecimalField(max_digits=5, decimal_places=3, default=Decimal("0.5"),
                                         help_text="training throughput relative to an H100 SXM (1.0)")
    active = models.BooleanField(default=True, help_text="offered in forms and suggestions")
    source = models.CharField(max_length=10, choices=SOURCE_CHOICES, default=SOURCE_SEED)
    prices_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["display_name"]
        verbose_name = "GPU type"

    def __str__(self):
        return f"{self.display_name} ({self.gpu_id})"


class ThroughputSample(models.Model):
    """What one completed job measured, beside what the uncalibrated table predicted for it."""

    job = models.OneToOneField("training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="throughput_sample")
    gpu_type = models.CharField(max_length=100)
    size_class = models.CharField(max_length=10)
    quantization = models.CharField(max_length=10)
    model_params_b = models.FloatField()
    max_seq_len = models.PositiveIntegerField()
    tokens_per_s = models.FloatField(help_text="measured training tokens/s")
    table_tokens_per_s = models.FloatField(help_text="the uncalibrated table's prediction")
    overhead_s = models.FloatField(help_text="measured billable seconds outside training")
    table_overhead_s = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["gpu_type", "size_class", "quantization"], name="sample_key")]


class ThroughputCalibration(models.Model):
    """The table's correction for one (GPU type, model size class, quantization), recomputed from
    the samples; gpu_type '*' is the correction learned over every sample."""

    gpu_type = models.CharField(max_length=100)
    size_class = models.CharField(max_length=10)
    quantization = models.CharField(max_length=10)
    tps_factor = models.FloatField(default=1.0)
    overhead_factor = models.FloatField(default=1.0)
    log_sd = models.FloatField(null=True, blank=True, help_text="spread of log(measured/table), for the range")
    samples = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["gpu_type", "size_class", "quantization"], name="one_calibration_per_key")]

    def __str__(self):
        return f"{self.gpu_type}/{self.size_class}/{self.quantization}: ×{self.tps_factor:.2f} ({self.samples} samples)"


class JobCost(models.Model):
    """A job's estimate, its budget reservation and its metered cost (one row per job).

    `segments` holds one entry per billable stretch (one per attempt's pod) with the rate of that
    pod, so a later change of GPU or a fall-back from spot never re-prices time already spent.
    `cost` is the job's total rounded once to the cent; reports add these, so totals equal the sum
    of their parts. A job is charged to the month it was admitted in.
    """

    job = models.OneToOneField("training.TrainingJob", primary_key=True, on_delete=models.CASCADE, related_name="cost")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="job_costs")
    client = models.CharField(max_length=120, blank=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    month = models.DateField(help_text="first day of the month the job is charged to")

    estimate = models.JSONField(default=dict, blank=True)
    est_duration_low_s = models.PositiveIntegerField(default=0)
    est_duration_s = models.PositiveIntegerField(default=0)
    est_duration_high_s = models.PositiveIntegerField(default=0)
    est_cost_low = models.DecimalField(**MONEY, default=Decimal("0"))
    est_cost = models.DecimalField(**MONEY, default=Decimal("0"))
    est_cost_high = models.DecimalField(**MONEY, default=Decimal("0"))

    reserved = models.DecimalField(**MONEY, default=Decimal("0"), help_text="held against budgets until the job ends")
    cost = models.DecimalField(**MONEY, default=Decimal("0"))
    billable_s = models.PositiveIntegerField(default=0)
    rate_per_hour = models.DecimalField(**PRICE, default=Decimal("0"), help_text="rate of the pod running now (0: none)")
    segments = models.JSONField(default=list, blank=True)
    metered_at = models.DateTimeField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True, help_text="when the budget enforcer stopped it")

    settled_at = models.DateTimeField(null=True, blank=True)
    final_status = models.CharField(max_length=20, blank=True)
    actual_duration_s = models.PositiveIntegerField(null=True, blank=True)
    actual_cost = models.DecimalField(**MONEY, null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "month"], name="jobcost_org_month"),
            models.Index(fields=["organization", "month", "settled_at"], name="jobcost_org_month_open"),
        ]

    def __str__(self):
        return f"{self.job_id}: ${self.cost}"

    @property
    def running(self) -> bool:
        return self.rate_per_hour > 0

    @property
    def duration_error(self) -> float | None:
        """(estimate − actual) / actual, for completed jobs."""
        if not self.actual_duration_s or not self.est_duration_s:
            return None
        return (self.est_duration_s - self.actual_duration_s) / self.actual_duration_s

    @property
    def cost_error(self) -> float | None:
        if not self.actual_cost:
            return None
        return float((self.est_cost - self.actual_cost) / self.actual_cost)


class Budget(models.Model):
    """A monthly limit for an organization, or for one of its clients (client set)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="budgets")
    client = models.CharField(max_length=120, blank=True, help_text="blank: every job of the organization")
    limit = models.DecimalField(**MONEY, help_text="$ per calendar month (UTC)")
    thresholds = models.JSONField(default=list, blank=True, help_text="alert at these percentages of the limit")
    hard_cap = models.BooleanField(default=True, help_text="refuse starts and stop running jobs at the limit")
    active = models.BooleanField(default=True)
    notify_emails = models.TextField(blank=True, help_text="extra recipients, comma separated (budget managers "
                                                            "and admins of the organization always get alerts)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "client"]
        constraints = [models.UniqueConstraint(fields=["organization", "client"], name="one_budget_per_scope")]

    def __str__(self):
        return f"{self.organization} / {self.client or 'all clients'}: ${self.limit}/month"

    @property
    def scope(self) -> str:
        return f"client {self.client}" if self.client else "organization"

    def threshold_list(self) -> list[int]:
        return sorted({int(t) for t in (self.thresholds or [80, 95]) if 0 < int(t) <= 100})


class BudgetAlert(models.Model):
    """The in-app record of every budget notice: a threshold crossed (once per threshold per month
    per budget, enforced by a constraint) or a job the enforcer stopped."""

    KIND_THRESHOLD = "threshold"
    KIND_STOPPED = "stopped"
    KIND_CHOICES = [(KIND_THRESHOLD, "threshold crossed"), (KIND_STOPPED, "job stopped at the cap")]

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    month = models.DateField()
    kind = models.CharField(max_length=10, choices=KIND_CHOICES)
    threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    job = models.ForeignKey("training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    spent = models.DecimalField(**MONEY)
    limit = models.DecimalField(**MONEY)
    remaining = models.DecimalField(**MONEY)
    forecast = models.DecimalField(**MONEY)
    message = models.TextField()
    delivered = models.JSONField(default=dict, blank=True, help_text="channel → ok / error text")
    read = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "month", "threshold"], condition=models.Q(kind="threshold"),
                                    name="one_alert_per_threshold_per_month"),
            models.UniqueConstraint(fields=["budget", "job"], condition=models.Q(kind="stopped"),
                                    name="one_stop_notice_per_job"),
        ]

    def __str__(self):
        return self.message[:80]
