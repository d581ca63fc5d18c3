"""API shapes of the training app: what goes out (model serializers) and what comes in
(plain serializers that only parse; the rules live in services)."""
import dataclasses
import typing

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gpu_worker.contracts import Hyperparameters
from gpu_worker.presets import PRESETS
from training import states
from training.models import Checkpoint, CloudType, Dataset, JobEvent, JobTemplate, MetricPoint, Preset, TrainingJob
from training.selectors import EXPORT_KEYS, JOB_ORDERINGS, SERIES_KEYS
from training.services.job_inputs import NOTES_MAX_CHARS, base_model_check, gpu_type_check

# --------------------------------------------------------------------------- typed JSON (for the schema)

def _hyperparameter_field(field: dataclasses.Field) -> serializers.Field:
    kind = typing.get_type_hints(Hyperparameters)[field.name]
    if kind is int:
        return serializers.IntegerField(required=False)
    if kind is float:
        return serializers.FloatField(required=False)
    if kind is bool:
        return serializers.BooleanField(required=False)
    if typing.get_origin(kind) in (tuple, list):
        return serializers.ListField(child=serializers.CharField(), required=False)
    return serializers.CharField(required=False)


# The resolved hyperparameters (gpu_worker.contracts.Hyperparameters), one typed field each; a
# job stored before a field existed lacks it, so none is required.
HyperparametersSchema = type("Hyperparameters", (serializers.Serializer,), {
    f.name: _hyperparameter_field(f) for f in dataclasses.fields(Hyperparameters)})


@extend_schema_field(HyperparametersSchema)
class HyperparametersField(serializers.JSONField):
    pass


# A metric point's values: the pod's figures (numbers, or null when not measured at that step).
MetricValuesSchema = type("MetricValues", (serializers.Serializer,), {
    **{key: serializers.FloatField(required=False, allow_null=True)
       for key in (*EXPORT_KEYS, "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy")},
})


@extend_schema_field(MetricValuesSchema)
class MetricValuesField(serializers.JSONField):
    pass


@extend_schema_field(OpenApiTypes.OBJECT)
class ObjectField(serializers.JSONField):
    """A JSON object whose keys depend on the row (an event's data by its type, a result...)."""


# The models' choices (same values and labels everywhere, so the schema has one enum of each).
PRESET_CHOICES = [(name, label) for name, label in Preset.choices if name in PRESETS]
CLOUD_CHOICES = CloudType.choices


# --------------------------------------------------------------------------- datasets

class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = [
            "id", "name", "source_format", "source_filename", "source_bytes", "content_sha256", "stats_status",
            "conversation_count", "pair_count", "trainable_turns", "train_conversations", "val_conversations",
            "val_fraction", "split_seed", "is_benchmark", "created_at",
        ]
        read_only_fields = fields


class DatasetDetailSerializer(DatasetSerializer):
    stats = ObjectField(read_only=True)
    split = ObjectField(read_only=True)
    file_metadata = ObjectField(read_only=True)
    consultant_profile = ObjectField(read_only=True, allow_null=True)

    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["stats", "stats_updated_at", "val_fingerprint", "consultant_profile",
                                                  "file_metadata", "split"]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.CharField(required=False, max_length=200)
    val_fraction = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2 ** 31 - 1)
    on_error = serializers.ChoiceField(choices=["fail", "skip"], required=False,
                                       help_text="skip: leave out conversations that cannot be read and list them "
                                                 "in stats.skipped_conversations; fail (default): refuse the file")


# --------------------------------------------------------------------------- jobs

class JobSerializer(serializers.ModelSerializer):
    """A row of the jobs list. Cost fields come from billing (null when it has no row)."""

    progress = serializers.FloatField(read_only=True)
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    cost = serializers.DecimalField(source="cost_spent", max_digits=12, decimal_places=2, read_only=True,
                                    default=None, allow_null=True)
    cost_estimate = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True, default=None,
                                             allow_null=True)

    class Meta:
        model = TrainingJob
        fields = [
            "id", "name", "client", "dataset", "dataset_name", "base_model", "preset", "status", "stage", "attempt",
            "progress", "current_step", "total_steps", "epoch", "last_loss", "tokens_per_s", "eta_s",
            "provider", "gpu_type", "gpu_count", "cloud_type", "spot", "created_by", "created_at", "launched_at",
            "finished_at", "error_class", "error_message", "error_suggestion", "interruptions", "lost_steps", "parent",
            "cost", "cost_estimate",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    hyperparameters = HyperparametersField(read_only=True)
    result = ObjectField(read_only=True, allow_null=True)
    stage_times = ObjectField(read_only=True)
    overrides = ObjectField(read_only=True)
    error_fix = ObjectField(read_only=True, allow_null=True)

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + [
            "overrides", "hyperparameters", "bid_per_gpu", "capacity_fallback", "pod_id", "pod_name", "stage_times", "notes", "error_fix",
            "error_traceback", "resume_from", "stop_requested", "cancel_requested", "result", "adapter_uri",
        ]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    """Fields left out are taken from `template` when one is given, else from the defaults."""

    dataset = serializers.UUIDField()
    template = serializers.IntegerField(required=False, min_value=1, max_value=2 ** 63 - 1,
                                        help_text="a saved configuration template of your organization")
    preset = serializers.ChoiceField(choices=PRESET_CHOICES, required=False)
    overrides = serializers.DictField(required=False)
    base_model = serializers.CharField(required=False, max_length=500)
    gpu_type = serializers.CharField(required=False, max_length=100)
    cloud_type = serializers.ChoiceField(choices=CLOUD_CHOICES, required=False)
    spot = serializers.BooleanField(required=False)
    bid_per_gpu = serializers.DecimalField(required=False, max_digits=8, decimal_places=4, allow_null=True)
    gpu_count = serializers.IntegerField(required=False, min_value=1, max_value=8,
                                         help_text="GPUs on the pod (1-8); more than one trains with DDP or FSDP")
    capacity_fallback = serializers.DictField(
        required=False, help_text='{"alternatives": [{"gpu_type": ..., "cloud_type": ..., "spot": ...}], '
                                  '"on_demand_after_spot_failures": N}: what launch may take when there is no capacity')
    client = serializers.CharField(required=False, allow_blank=True, max_length=120, default="")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTES_MAX_CHARS)

    def validate_base_model(self, value):
        return base_model_check(value)

    def validate_gpu_type(self, value):
        return gpu_type_check(value)


class JobFilterSerializer(serializers.Serializer):
    """Query parameters of the jobs list."""

    status = serializers.CharField(required=False, help_text="one status or several, comma-separated")
    dataset = serializers.UUIDField(required=False)
    preset = serializers.ChoiceField(choices=PRESET_CHOICES, required=False)
    client = serializers.CharField(required=False)
    created_by = serializers.CharField(required=False, help_text="username or user id")
    created_after = serializers.DateField(required=False, help_text="YYYY-MM-DD, inclusive")
    created_before = serializers.DateField(required=False, help_text="YYYY-MM-DD, inclusive")
    search = serializers.CharField(required=False, help_text="in name, client and notes")
    ordering = serializers.ChoiceField(choices=list(JOB_ORDERINGS), required=False, default="-created_at")

    def validate_status(self, value):
        wanted = [s.strip() for s in value.split(",") if s.strip()]
        known = {code for code, _ in states.CHOICES}
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise serializers.ValidationError(f"unknown status {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        return wanted


class JobNotesSerializer(serializers.Serializer):
    notes = serializers.CharField(allow_blank=True, max_length=NOTES_MAX_CHARS)


class JobRetrySerializer(serializers.Serializer):
    apply_fix = serializers.BooleanField(default=False)
    resume = serializers.BooleanField(default=False)


class JobEventSerializer(serializers.ModelSerializer):
    data = ObjectField(read_only=True)

    class Meta:
        model = JobEvent
        fields = ["event_id", "source", "type", "attempt", "seq", "step", "from_status", "to_status", "message", "data",
                  "created_at"]
        read_only_fields = fields


class MetricPointSerializer(serializers.ModelSerializer):
    values = MetricValuesField(read_only=True)

    class Meta:
        model = MetricPoint
        fields = ["step", "attempt", "values", "created_at"]
        read_only_fields = fields


class MetricQuerySerializer(serializers.Serializer):
    after_step = serializers.IntegerField(required=False, min_value=0, help_text="only points after this step")


class MetricSeriesQuerySerializer(MetricQuerySerializer):
    max_points = serializers.IntegerField(required=False, min_value=4, max_value=5000,
                                          help_text="at most this many points per series (default 500)")
    keys = serializers.CharField(required=False, help_text=f"comma-separated, default {','.join(SERIES_KEYS)}; "
                                                            f"any of {','.join(EXPORT_KEYS)}")

    def validate_keys(self, value):
        keys = [k.strip() for k in value.split(",") if k.strip()]
        unknown = [k for k in keys if k not in EXPORT_KEYS]
        if unknown:
            raise serializers.ValidationError(f"unknown series {', '.join(unknown)}; choose from {', '.join(EXPORT_KEYS)}")
        return keys


class MetricSeriesSerializer(serializers.Serializer):
    max_points = serializers.IntegerField()
    downsampled = serializers.BooleanField()
    first_step = serializers.IntegerField(allow_null=True)
    last_step = serializers.IntegerField(allow_null=True)
    series = serializers.DictField(child=serializers.ListField(child=serializers.ListField(child=serializers.FloatField())),
                                   help_text="name → [[step, value], ...]")


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["step", "attempt", "uri", "bytes", "complete", "epoch", "valid_loss", "created_at"]
        read_only_fields = fields


# --------------------------------------------------------------------------- templates, presets

class JobTemplateSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    preset = serializers.ChoiceField(choices=PRESET_CHOICES, default="balanced")
    overrides = serializers.DictField(required=False, default=dict)

    class Meta:
        model = JobTemplate
        fields = ["id", "name", "description", "base_model", "preset", "overrides", "gpu_type", "cloud_type", "spot",
                  "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]

    def validate_base_model(self, value):
        return base_model_check(value) if value else value

    def validate_gpu_type(self, value):
        return gpu_type_check(value) if value else value


class PresetSerializer(serializers.Serializer):
    name = serializers.CharField()
    when_to_choose = serializers.CharField()
    hyperparameters = HyperparametersField()


# --------------------------------------------------------------------------- auth helpers

class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    organization = serializers.DictField()
    role = serializers.CharField()
    permissions = serializers.DictField(child=serializers.BooleanField())


class WsTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()
    urls = serializers.DictField(child=serializers.CharField())


class JobCompareQuerySerializer(serializers.Serializer):
    ids = serializers.CharField(help_text="comma-separated job ids (2 to 8)")

    def validate_ids(self, value):
        import uuid

        try:
            ids = [uuid.UUID(v.strip()) for v in value.split(",") if v.strip()]
        except ValueError as exc:
            raise serializers.ValidationError("ids must be job UUIDs, comma-separated") from exc
        if not 1 <= len(ids) <= 8:
            raise serializers.ValidationError("pick between 1 and 8 jobs")
        return ids


class JobCompareRowSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    preset = serializers.CharField()
    base_model = serializers.CharField()
    dataset = serializers.CharField()
    gpu_type = serializers.CharField()
    spot = serializers.BooleanField()
    hyperparameters = HyperparametersField()
    overrides = serializers.DictField()
    final_loss = serializers.FloatField(allow_null=True)
    evaluation = serializers.DictField()
    duration_s = serializers.FloatField(allow_null=True)
    cost = serializers.CharField(allow_null=True)
    loss = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))


class JobCompareSerializer(serializers.Serializer):
    jobs = JobCompareRowSerializer(many=True)
