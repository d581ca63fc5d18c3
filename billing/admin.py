from django.contrib import admin, messages

from billing.models import Budget, BudgetAlert, GpuType, JobCost, ThroughputCalibration, ThroughputSample


@admin.register(GpuType)
class GpuTypeAdmin(admin.ModelAdmin):
    list_display = ["display_name", "gpu_id", "memory_gb", "secure_price", "community_price", "secure_spot_price",
                    "community_spot_price", "relative_speed", "active", "source", "prices_updated_at"]
    list_editable = ["secure_price", "community_price", "secure_spot_price", "community_spot_price", "relative_speed",
                     "active"]
    list_filter = ["active", "source"]
    search_fields = ["gpu_id", "display_name"]
    actions = ["refresh_from_runpod"]

    def save_model(self, request, obj, form, change):
        if change and form.changed_data:
            obj.source = GpuType.SOURCE_ADMIN
        super().save_model(request, obj, form, change)

    @admin.action(description="Refresh prices from RunPod (needs RUNPOD_API_KEY)")
    def refresh_from_runpod(self, request, queryset):
        from billing.services.catalog import catalog_refresh

        result = catalog_refresh(gpu_ids=list(queryset.values_list("gpu_id", flat=True)))
        if result.skipped:
            self.message_user(request, result.skipped, messages.WARNING)
            return
        self.message_user(request, f"updated {len(result.updated) + len(result.created)} GPU type(s); "
                                   f"{len(result.failed)} failed", messages.SUCCESS if not result.failed else messages.WARNING)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["organization", "client", "limit", "thresholds", "hard_cap", "active", "updated_at"]
    list_filter = ["hard_cap", "active", "organization"]
    search_fields = ["client", "organization__name"]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "budget", "month", "kind", "threshold", "spent", "limit", "forecast", "read"]
    list_filter = ["kind", "month", "read"]
    readonly_fields = [f.name for f in BudgetAlert._meta.fields]


@admin.register(JobCost)
class JobCostAdmin(admin.ModelAdmin):
    list_display = ["job", "organization", "client", "month", "est_cost", "est_cost_high", "reserved", "cost",
                    "billable_s", "rate_per_hour", "final_status", "actual_cost"]
    list_filter = ["month", "final_status", "organization"]
    search_fields = ["job__id", "job__name", "client"]
    readonly_fields = [f.name for f in JobCost._meta.fields]


@admin.register(ThroughputSample)
class ThroughputSampleAdmin(admin.ModelAdmin):
    list_display = ["created_at", "gpu_type", "size_class", "quantization", "max_seq_len", "tokens_per_s",
                    "table_tokens_per_s", "overhead_s", "table_overhead_s"]
    list_filter = ["gpu_type", "size_class", "quantization"]


@admin.register(ThroughputCalibration)
class ThroughputCalibrationAdmin(admin.ModelAdmin):
    list_display = ["gpu_type", "size_class", "quantization", "tps_factor", "overhead_factor", "log_sd", "samples",
                    "updated_at"]
    readonly_fields = ["updated_at"]
