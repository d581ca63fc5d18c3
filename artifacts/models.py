"""What a job leaves behind, one row per stored thing: adapter, tokenizer, checkpoints, metrics,
reports, deployment packages, merged models. Adapters are numbered per client (1, 2, ...) and
one of them is the client's current adapter."""
import uuid

from django.db import models
from django.db.models import Q


class ArtifactKind(models.TextChoices):
    ADAPTER = "adapter", "LoRA adapter"
    TOKENIZER = "tokenizer", "Tokenizer"
    CHECKPOINT = "checkpoint", "Checkpoint"
    METRICS = "metrics", "Metrics"
    REPORT = "report", "Validation report"
    PACKAGE = "package", "Deployment package"
    MERGED = "merged", "Merged model"


# Kinds stored as a folder (a key prefix with several files) rather than one object.
FOLDER_KINDS = {ArtifactKind.ADAPTER, ArtifactKind.TOKENIZER, ArtifactKind.CHECKPOINT, ArtifactKind.MERGED}


class ModelArtifact(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="artifacts")
    job = models.ForeignKey("training.TrainingJob", on_delete=models.CASCADE, related_name="artifacts")
    client = models.CharField(max_length=120, blank=True, help_text="copied from the job: adapters are numbered per client")
    kind = models.CharField(max_length=20, choices=ArtifactKind.choices, db_index=True)
    name = models.CharField(max_length=200, blank=True, help_text="e.g. metrics.csv, report.html")
    key = models.CharField(max_length=1000, help_text="storage key (a prefix for folder kinds)")
    uri = models.CharField(max_length=1000)
    bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True,
                              help_text="of the object; for folders, of the main file (the adapter weights)")
    files = models.JSONField(default=list, blank=True, help_text="folder kinds: [{path, bytes, sha256}]")
    metadata = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="adapters: 1, 2, ... per client")
    is_current = models.BooleanField(default=False, help_text="the client's current adapter")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    pruned_at = models.DateTimeField(null=True, blank=True, help_text="set when retention deleted the stored files")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "kind", "key"], name="one_artifact_per_job_kind_key"),
            models.UniqueConstraint(fields=["organization", "client", "version"], condition=Q(kind="adapter"),
                                    name="one_adapter_version_per_client"),
            models.UniqueConstraint(fields=["organization", "client"], condition=Q(kind="adapter", is_current=True),
                                    name="one_current_adapter_per_client"),
        ]
        indexes = [
            models.Index(fields=["job", "kind"], name="artifact_job_kind"),
            models.Index(fields=["organization", "client", "kind"], name="artifact_org_client_kind"),
        ]

    def __str__(self):
        label = f"v{self.version}" if self.version else self.name or self.key.rsplit("/", 1)[-1]
        return f"{self.get_kind_display()} {label} ({self.client or 'no client'})"

    @property
    def is_folder(self) -> bool:
        return self.kind in FOLDER_KINDS

