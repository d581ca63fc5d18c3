from rest_framework import serializers

from billing.models import Budget, BudgetAlert, GpuType, JobCost


class EstimateRequestSerializer(serializers.Serializer):
    dataset = serializers.UUIDField()
    base_model = serializers.CharField(required=False, allow_blank=True, max_length=500)
    preset = serializers.CharField(required=False, default="balanced", max_length=20)
    overrides = serializers.DictField(required=False, default=dict)
    gpu_type = serializers.CharField(required=False, allow_blank=True, max_length=100)
    cloud_type = serializers.ChoiceField(choices=["SECURE", "COMMUNITY"], required=False, default="SECURE")
    spot = serializers.BooleanField(required=False, default=False)
    bid_per_gpu = serializers.DecimalField(max_digits=8, decimal_places=4, required=False, allow_null=True)
    provider = serializers.CharField(required=False, allow_blank=True, max_length=20)
    quantization = serializers.ChoiceField(choices=["nf4", "none"], required=False, default="nf4")
    gpu_count = serializers.IntegerField(required=False, default=1, min_value=1, max_value=8)


class GpuTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = GpuType
        fields = ["gpu_id", "display_name", "memory_gb", "secure_price", "community_price", "secure_spot_price",
                  "community_spot_price", "relative_speed", "active", "source", "prices_updated_at"]
        read_only_fields = fields


class BudgetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Budget
        fields = ["id", "client", "limit", "thresholds", "hard_cap", "active", "notify_emails", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class BudgetWriteSerializer(serializers.Serializer):
    client = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)
    limit = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)
    thresholds = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=100), required=False)
    hard_cap = serializers.BooleanField(required=False, default=True)
    notify_emails = serializers.CharField(required=False, allow_blank=True, default="")


class BudgetUpdateSerializer(serializers.Serializer):
    limit = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)
    thresholds = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=100), required=False)
    hard_cap = serializers.BooleanField(required=False)
    active = serializers.BooleanField(required=False)
    notify_emails = serializers.CharField(required=False, allow_blank=True)


class BudgetAlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = BudgetAlert
        fields = ["id", "budget", "month", "kind", "threshold", "job", "spent", "limit", "remaining", "forecast",
                  "message", "delivered", "read", "created_at"]
        read_only_fields = fields


class JobCostSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobCost
        fields = ["job", "month", "client", "estimate", "est_duration_low_s", "est_duration_s", "est_duration_high_s",
                  "est_cost_low", "est_cost", "est_cost_high", "reserved", "cost", "billable_s", "rate_per_hour",
                  "segments", "metered_at", "stop_requested_at", "settled_at", "final_status", "actual_duration_s",
                  "actual_cost"]
        read_only_fields = fields
