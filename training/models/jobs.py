import uuid

from django.conf import settings
from django.db import models

from training import states


class Preset(models.TextChoices):
    CONSERVATIVE = "conservative", "Conservative"
    BALANCED = "balanced", "Balanced"
    AGGRESSIVE = "aggressive", "Aggressive"


class CloudType(models.TextChoices):
    SECURE = "SECURE", "Secure cloud"
    COMMUNITY = "COMMUNITY", "Community cloud"


class TrainingJob(models.Model):
    """One training run (with all its attempts: a spot interruption relaunches the same job)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="jobs")
    client = models.CharField(max_length=120, blank=True, help_text="the client this adapter is for (budgets, reports)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="training_jobs")
    dataset = models.ForeignKey("training.Dataset", on_delete=models.PROTECT, related_name="jobs")
    name = models.CharField(max_length=200, blank=True)

    base_model = models.CharField(max_length=500)
    preset = models.CharField(max_length=20, choices=Preset.choices, default=Preset.BALANCED)
    overrides = models.JSONField(default=dict, blank=True)
    hyperparameters = models.JSONField(help_text="preset plus overrides, resolved and validated")

    provider = models.CharField(max_length=20)
    gpu_type = models.CharField(max_length=100)
    cloud_type = models.CharField(max_length=10, choices=CloudType.choices, default=CloudType.SECURE)
    spot = models.BooleanField(default=False)
    bid_per_gpu = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    gpu_count = models.PositiveSmallIntegerField(
        default=1, help_text="GPUs on the pod (RunPod gpuCount); several run DDP or FSDP, see docs/gpu-worker.md")
    capacity_fallback = models.JSONField(
        default=dict, blank=True,
        help_text='what launch may take when there is no capacity: {"alternatives": [{"gpu_type", "cloud_type", '
                  '"spot", "bid_per_gpu"}...], "on_demand_after_spot_failures": N}')

    status = models.CharField(max_length=20, choices=states.CHOICES, default=states.QUEUED, db_index=True)
    stage = models.CharField(max_length=20, blank=True, help_text="last stage the pod reported")
    attempt = models.PositiveIntegerField(default=0, help_text="launch attempts so far")
    pod_id = models.CharField(max_length=120, blank=True)
    pod_name = models.CharField(max_length=200, blank=True, db_index=True)
    webhook_secret = models.CharField(max_length=128, blank=True, help_text="per-job secret; blank once revoked")
    resume_from = models.CharField(max_length=1000, blank=True, help_text="checkpoint URI the next attempt starts from")

    # Progress, denormalized from the latest metrics for lists and the dashboard.
    current_step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0)
    last_loss = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    eta_s = models.FloatField(null=True, blank=True)

    stage_times = models.JSONField(default=dict, blank=True, help_text="state → ISO time it was entered (last time)")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    notes = models.TextField(blank=True)
    error_class = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)
    error_suggestion = models.TextField(blank=True)
    error_fix = models.JSONField(default=dict, blank=True)
    error_traceback = models.TextField(blank=True)

    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    cancel_requested = models.BooleanField(default=False)
    stop_requested = models.BooleanField(default=False, help_text="stop early and keep the last checkpoint's adapter")
    interruptions = models.PositiveIntegerField(default=0)
    lost_steps = models.PositiveIntegerField(default=0, help_text="steps redone after interruptions, in total")

    # Test hooks for the worker (gpu_worker honours them only when the pod environment sets
    # BRIGHTRUN_ALLOW_TEST_HOOKS=1, which only the local provider does, and only when
    # settings.ALLOW_TEST_HOOKS is on).
    test_hooks = models.JSONField(default=dict, blank=True)

    result = models.JSONField(default=dict, blank=True, help_text="the pod's completion summary")
    adapter_uri = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="job_org_recent"),
            models.Index(fields=["organization", "status"], name="job_org_status"),
        ]

    def __str__(self):
        return f"{self.name or self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return states.is_terminal(self.status)

    @property
    def progress(self) -> float:
        if self.status == states.COMPLETED:
            return 1.0
        return min(1.0, self.current_step / self.total_steps) if self.total_steps else 0.0


class JobEvent(models.Model):
    """Every pod event and every transition of a job, stored once (unique event id per job)."""

    SOURCE_POD = "pod"
    SOURCE_SYSTEM = "system"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=120)
    source = models.CharField(max_length=10, default=SOURCE_POD)
    type = models.CharField(max_length=40)
    attempt = models.PositiveIntegerField(default=0)
    seq = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    pod_timestamp = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "event_id"], name="one_event_per_id_per_job")]
        indexes = [models.Index(fields=["job", "created_at"], name="event_job_time")]

    def __str__(self):
        return f"{self.type} {self.event_id}"


class MetricPoint(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=0)
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step"]
        constraints = [models.UniqueConstraint(fields=["job", "step"], name="one_metric_point_per_step")]


class MetricRollup(models.Model):
    """One chart series over one aligned block of `size` steps (block = step // size): what the
    chart of a long job reads instead of every point. Kept by
    training.services.metric_rollups, never edited by hand."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metric_rollups")
    key = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    block = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    total = models.FloatField()  # for a mean per bucket
    min_value = models.FloatField()
    min_step = models.PositiveIntegerField()
    max_value = models.FloatField()
    max_step = models.PositiveIntegerField()
    first_step = models.PositiveIntegerField()
    first_value = models.FloatField()
    last_step = models.PositiveIntegerField()
    last_value = models.FloatField()

    class Meta:
        # Also the index of the read: one job, one size, a range of blocks.
        constraints = [models.UniqueConstraint(fields=["job", "size", "key", "block"], name="one_rollup_per_block")]

    def __str__(self):
        return f"{self.key} {self.size}x{self.block}"


class Checkpoint(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=0)
    uri = models.CharField(max_length=1000)
    bytes = models.BigIntegerField(default=0)
    complete = models.BooleanField(default=True)
    epoch = models.FloatField(null=True, blank=True)
    valid_loss = models.FloatField(null=True, blank=True, help_text="validation loss measured at this step")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step"]
        constraints = [models.UniqueConstraint(fields=["job", "step"], name="one_checkpoint_per_step")]


class NotificationPreference(models.Model):
    """What a user hears about, and where. A user without a row gets the defaults."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference")
    email = models.BooleanField(default=True)
    slack = models.BooleanField(default=True)
    on_completed = models.BooleanField(default=True)
    on_failed = models.BooleanField(default=True)
    on_interrupted = models.BooleanField(default=True)
    on_resumed = models.BooleanField(default=False)

    def wants(self, kind: str) -> bool:
        return bool(getattr(self, f"on_{kind}", False))
