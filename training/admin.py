from django.contrib import admin

from training.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "source_format", "conversation_count", "trainable_turns",
                    "train_conversations", "val_conversations", "is_benchmark", "token_count", "stats_status", "created_by", "created_at"]
    list_filter = ["is_benchmark", "source_format", "stats_status", "organization", "created_at"]
    search_fields = ["name", "source_filename", "content_sha256"]
    # is_benchmark too: marking goes through training.services.datasets.dataset_benchmark_set
    # (one per organization, the action below), like the API.
    readonly_fields = [f.name for f in Dataset._meta.fields] + ["stats_table"]
    exclude = ["stats", "split"]

    actions = ["stats_recompute", "benchmark_mark", "benchmark_unmark"]

    @admin.action(description="Mark as the organization's benchmark (one dataset)")
    def benchmark_mark(self, request, queryset):
        from training.services.datasets import dataset_benchmark_set

        if queryset.count() != 1:
            self.message_user(request, "select exactly one dataset: an organization has one benchmark", level="error")
            return
        dataset = dataset_benchmark_set(dataset=queryset.get(), on=True)
        self.message_user(request, f"{dataset.name} is now the benchmark of {dataset.organization}")

    @admin.action(description="Unmark as benchmark")
    def benchmark_unmark(self, request, queryset):
        from training.services.datasets import dataset_benchmark_set

        for dataset in queryset.filter(is_benchmark=True):
            dataset_benchmark_set(dataset=dataset, on=False)
        self.message_user(request, "benchmark mark removed")

    @admin.action(description="Count tokens again (background task)")
    def stats_recompute(self, request, queryset):
        from training.tasks import dataset_stats_compute

        ids = [str(pk) for pk in queryset.values_list("pk", flat=True)]
        from django.utils import timezone

        queryset.update(stats_status="pending", stats_updated_at=timezone.now())
        for pk in ids:
            dataset_stats_compute.delay(pk)
        self.message_user(request, f"{len(ids)} datasets: statistics are being counted again")

    @admin.display(description="tokens/epoch")
    def token_count(self, obj):
        tokens = (obj.stats or {}).get("tokens", {})
        return f"{tokens.get('per_epoch', 0):,} ({tokens.get('method', '?')})"

    @admin.display(description="statistics")
    def stats_table(self, obj):
        import json

        from django.utils.html import format_html

        return format_html("<pre>{}</pre>", json.dumps(obj.stats, indent=2))

    def has_add_permission(self, request):
        # Datasets come in through the importer (command, API, dashboard) so they are validated.
        return False


# --------------------------------------------------------------------------- jobs

from django.contrib import messages  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils.html import format_html  # noqa: E402

from core.errors import DomainError  # noqa: E402
from training.models import Checkpoint, JobEvent, JobTemplate, MetricPoint, NotificationPreference, TrainingJob  # noqa: E402


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class CheckpointInline(ReadOnlyInline):
    model = Checkpoint
    fields = ["step", "attempt", "uri", "bytes", "complete", "created_at"]
    readonly_fields = fields


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "stage", "progress_display", "last_loss", "cost_display", "client", "preset",
                    "gpu_type", "spot", "attempt", "created_by", "organization", "created_at"]
    list_filter = ["status", "preset", "spot", "provider", "gpu_type", "organization", "created_at"]
    search_fields = ["id", "name", "client", "notes", "pod_name", "created_by__username", "dataset__name"]
    list_select_related = ["created_by", "organization", "cost"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    actions = ["cancel_jobs", "retry_jobs"]
    inlines = [CheckpointInline]
    exclude = ["webhook_secret", "test_hooks"]
    readonly_fields = [f.name for f in TrainingJob._meta.fields if f.name not in ("notes", "webhook_secret", "test_hooks")] + [
        "dashboard_link", "recent_events", "metrics_summary"]

    def has_add_permission(self, request):
        # Jobs start through job_create (dashboard, API, CLI): budget admission and validation.
        return False

    @admin.display(description="progress")
    def progress_display(self, obj):
        return f"{obj.current_step}/{obj.total_steps}" if obj.total_steps else "–"

    @admin.display(description="cost", ordering="cost__cost")
    def cost_display(self, obj):
        cost = getattr(obj, "cost", None)
        return f"${cost.cost}" if cost is not None else "–"

    @admin.display(description="dashboard")
    def dashboard_link(self, obj):
        return format_html('<a href="{}">open the live page</a>', reverse("dashboard:job", args=[obj.pk]))

    @admin.display(description="recent events")
    def recent_events(self, obj):
        from training.selectors import job_recent_events

        rows = "".join(
            format_html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", e.created_at.strftime("%H:%M:%S"),
                        e.type, f"{e.from_status} → {e.to_status}" if e.to_status else "", e.message[:200])
            for e in job_recent_events(obj, limit=30))
        return format_html("<table>{}</table>", format_html(rows)) if rows else "–"

    @admin.display(description="metrics")
    def metrics_summary(self, obj):
        count = obj.metrics.count()
        if not count:
            return "–"
        return format_html('{} points · <a href="{}">CSV</a> · <a href="{}">JSON</a> · <a href="{}?job__id__exact={}">rows</a>',
                           count, reverse("job-metric-export", args=[obj.pk, "csv"]),
                           reverse("job-metric-export", args=[obj.pk, "json"]),
                           reverse("admin:training_metricpoint_changelist"), obj.pk)

    def save_model(self, request, obj, form, change):
        # Only the notes are editable here; they go through the service like every other write.
        from training.services.jobs import job_notes_set

        job_notes_set(job_id=obj.pk, notes=obj.notes)

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request, queryset):
        from training.services.jobs import job_cancel

        done, skipped = 0, []
        for job in queryset:
            try:
                job_cancel(job_id=job.pk, reason=f"cancelled by {request.user} in the admin")
                done += 1
            except DomainError as exc:
                skipped.append(f"{job.name}: {exc}")
        self.message_user(request, f"Cancelled {done} job(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, "Not cancelled: " + "; ".join(skipped), messages.WARNING)

    @admin.action(description="Retry the selected jobs (same configuration)")
    def retry_jobs(self, request, queryset):
        from training.services.jobs import job_retry

        done, skipped = 0, []
        for job in queryset:
            try:
                job_retry(job_id=job.pk, created_by=request.user)
                done += 1
            except DomainError as exc:
                skipped.append(f"{job.name}: {exc}")
        self.message_user(request, f"Started {done} retry job(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, "Not retried: " + "; ".join(skipped), messages.WARNING)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(JobEvent)
class JobEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "job", "type", "source", "attempt", "seq", "step", "from_status", "to_status"]
    list_filter = ["type", "source"]
    search_fields = ["job__id", "job__name", "event_id", "message"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]


@admin.register(MetricPoint)
class MetricPointAdmin(ReadOnlyAdmin):
    list_display = ["job", "step", "attempt", "values", "created_at"]
    search_fields = ["job__id", "job__name"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]
    show_full_result_count = False  # a long job has many points: no COUNT(*) over all of them


@admin.register(JobTemplate)
class JobTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "preset", "gpu_type", "spot", "created_by", "updated_at"]
    list_filter = ["preset", "spot", "organization"]
    search_fields = ["name", "description"]
    raw_id_fields = ["created_by"]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "email", "slack", "on_completed", "on_failed", "on_interrupted", "on_resumed"]
    list_filter = ["email", "slack"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]
