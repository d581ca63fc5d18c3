from rest_framework import serializers

from training.models import Dataset


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = [
            "id", "name", "source_format", "source_filename", "source_bytes", "content_sha256",
            "conversation_count", "pair_count", "trainable_turns", "train_conversations", "val_conversations",
            "val_fraction", "split_seed", "created_at",
        ]
        read_only_fields = fields


class DatasetDetailSerializer(DatasetSerializer):
    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["stats", "consultant_profile", "file_metadata", "split"]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.CharField(required=False, max_length=200)
    val_fraction = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    seed = serializers.IntegerField(required=False)


from training.models import Checkpoint, JobEvent, MetricPoint, TrainingJob  # noqa: E402


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = TrainingJob
        fields = [
            "id", "name", "client", "dataset", "dataset_name", "base_model", "preset", "status", "stage", "attempt",
            "progress", "current_step", "total_steps", "epoch", "last_loss", "tokens_per_s", "eta_s",
            "provider", "gpu_type", "cloud_type", "spot", "created_by", "created_at", "launched_at", "finished_at",
            "error_class", "error_message", "error_suggestion", "interruptions", "lost_steps", "parent",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + [
            "overrides", "hyperparameters", "bid_per_gpu", "pod_id", "pod_name", "stage_times", "notes", "error_fix",
            "error_traceback", "resume_from", "stop_requested", "cancel_requested", "result", "adapter_uri",
        ]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    dataset = serializers.UUIDField()
    preset = serializers.ChoiceField(choices=["conservative", "balanced", "aggressive"], default="balanced")
    overrides = serializers.DictField(required=False, default=dict)
    base_model = serializers.CharField(required=False, max_length=500)
    gpu_type = serializers.CharField(required=False, max_length=100)
    cloud_type = serializers.ChoiceField(choices=["SECURE", "COMMUNITY"], default="SECURE")
    spot = serializers.BooleanField(default=False)
    bid_per_gpu = serializers.DecimalField(required=False, max_digits=8, decimal_places=4, allow_null=True)
    client = serializers.CharField(required=False, allow_blank=True, max_length=120, default="")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    notes = serializers.CharField(required=False, allow_blank=True, default="")


class JobNotesSerializer(serializers.Serializer):
    notes = serializers.CharField(allow_blank=True)


class JobRetrySerializer(serializers.Serializer):
    apply_fix = serializers.BooleanField(default=False)
    resume = serializers.BooleanField(default=False)


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["event_id", "source", "type", "attempt", "seq", "step", "from_status", "to_status", "message", "data",
                  "created_at"]


class MetricPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetricPoint
        fields = ["step", "attempt", "values", "created_at"]


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["step", "attempt", "uri", "bytes", "complete", "epoch", "created_at"]
