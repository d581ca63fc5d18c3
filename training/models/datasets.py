import uuid

from django.conf import settings
from django.db import models


class DatasetFormat(models.TextChoices):
    BRIGHTRUN = "brightrun-lora-v4", "Bright Run training file (brightrun-lora-v4)"
    BRIGHTRUN_JSONL = "brightrun-jsonl", "Bright Run training.jsonl (one training pair per line)"
    BRIGHTRUN_CONVERSATION = "brightrun-conversation", "Bright Run single-conversation file (brightrun-lora-v4)"
    CHAT_JSONL = "chat-jsonl", "Chat JSONL (OpenAI messages)"
    MIXED = "mixed", "Several files of different formats"


class StatsStatus(models.TextChoices):
    """Exact token counts need a tokenizer and take seconds on a large file: they are computed after
    the import by `training.tasks.dataset_stats_compute`; until then the stats hold estimates."""

    PENDING = "pending", "Pending (estimates until the background task has counted)"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed (estimates kept; see stats.stats_error)"


class Dataset(models.Model):
    """An imported training file, normalized and split by conversation.

    One row per distinct content per organization (content_sha256): importing the same file
    again returns this row.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=200)
    source_format = models.CharField(max_length=32, choices=DatasetFormat.choices)
    source_filename = models.CharField(max_length=255, blank=True)
    source_bytes = models.BigIntegerField()
    content_sha256 = models.CharField(max_length=64)

    conversation_count = models.PositiveIntegerField()
    pair_count = models.PositiveIntegerField()
    trainable_turns = models.PositiveIntegerField()
    train_conversations = models.PositiveIntegerField()
    val_conversations = models.PositiveIntegerField()
    val_fraction = models.FloatField()
    split_seed = models.IntegerField()
    # Which conversation ids are on each side: {"train": [...], "val": [...]}
    split = models.JSONField()
    stats = models.JSONField()
    stats_status = models.CharField(max_length=8, choices=StatsStatus.choices, default=StatsStatus.READY)
    stats_updated_at = models.DateTimeField(null=True, blank=True)
    # Hash of the set of validation conversations (training.datasets.identity.fingerprint): two
    # datasets validate on the same conversations exactly when their fingerprints are equal.
    val_fingerprint = models.CharField(max_length=64, blank=True, default="")
    consultant_profile = models.JSONField(null=True, blank=True)
    # The organization's fixed test set (at most one per organization): validation runs of any of
    # its jobs can be measured on this dataset's validation split, so reports of jobs trained on
    # different data stay comparable (validation.services, docs/validation.md).
    is_benchmark = models.BooleanField(default=False)
    file_metadata = models.JSONField(default=dict, blank=True)

    source_key = models.CharField(max_length=500)
    train_key = models.CharField(max_length=500)
    val_key = models.CharField(max_length=500)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="datasets")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "content_sha256"], name="one_dataset_per_content_per_org"),
            models.UniqueConstraint(fields=["organization"], condition=models.Q(is_benchmark=True),
                                    name="one_benchmark_per_org"),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="dataset_org_recent")]

    def __str__(self):
        return f"{self.name} ({self.conversation_count} conversations)"

    @property
    def token_method(self) -> str:
        return (self.stats or {}).get("tokens", {}).get("method", "estimate")

    @property
    def composition(self) -> dict | None:
        """Both files of a dataset composed of a training file and a validation file
        (training.services.dataset_compose); None for an import, split from one file."""
        return (self.stats or {}).get("composition")


class DatasetConversation(models.Model):
    """One conversation of a dataset, by content hash (training.datasets.identity), and its side.
    Finds the conversations two datasets of an organization share, and on which sides."""

    SIDE_TRAIN = "train"
    SIDE_VAL = "val"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="conversation_rows")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    conversation_hash = models.CharField(max_length=64)
    conversation_id = models.CharField(max_length=255)
    side = models.CharField(max_length=5, choices=[(SIDE_TRAIN, "training"), (SIDE_VAL, "validation")])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "conversation_hash"], name="one_row_per_conversation")]
        indexes = [models.Index(fields=["organization", "conversation_hash"], name="dsconv_org_hash")]

    def __str__(self):
        return f"{self.conversation_id} ({self.side})"
