from django.contrib import admin, messages
from django.utils import timezone

from finetuning import services
from finetuning.models import ApiKey, FineTuningFile, FineTuningJob, FineTuningRun
from finetuning.selectors import fine_tuning_job_status


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Issue a key with "Add": pick the user and a name; the key is shown once, on save."""

    list_display = ["prefix_shown", "name", "user", "created_at", "last_used_at", "revoked_at", "created_by"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["name", "prefix", "user__username", "user__email"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name"]
        return ["user", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["user", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]

    @admin.display(description="key")
    def prefix_shown(self, obj):
        return f"{obj.prefix}…"

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        api_key, raw = services.api_key_issue(user=obj.user, name=obj.name, created_by=request.user)
        # The admin goes on with `obj` (change-log entry, redirect): make it the issued row.
        for name in ("id", "prefix", "key_hash", "created_by_id", "created_at"):
            setattr(obj, name, getattr(api_key, name))
        obj._state.adding, obj._state.db = False, api_key._state.db
        messages.warning(request, f"API key for {obj.user}: {raw} — copy it now, it is not shown again.")

    @admin.action(description="Revoke the selected keys (they stop working at once)")
    def revoke(self, request, queryset):
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key)
            count += 1
        self.message_user(request, f"revoked {count} key(s) at {timezone.now():%H:%M:%S} UTC")


@admin.register(FineTuningFile)
class FineTuningFileAdmin(admin.ModelAdmin):
    list_display = ["id", "filename", "bytes", "purpose", "organization", "dataset", "created_by", "created_at"]
    list_filter = ["purpose", "organization"]
    search_fields = ["id", "filename"]
    readonly_fields = [f.name for f in FineTuningFile._meta.fields]

    def has_add_permission(self, request):
        return False  # files come in through POST /v1/files so they are imported and validated


class FineTuningRunInline(admin.TabularInline):
    model = FineTuningRun
    extra = 0
    readonly_fields = ["index", "training_job", "created_at"]
    can_delete = False


@admin.register(FineTuningJob)
class FineTuningJobAdmin(admin.ModelAdmin):
    list_display = ["id", "openai_status", "model", "suffix", "training_file", "organization", "created_by",
                    "created_at"]
    list_filter = ["organization", "created_at"]
    search_fields = ["id", "suffix", "model"]
    readonly_fields = [f.name for f in FineTuningJob._meta.fields]
    inlines = [FineTuningRunInline]

    @admin.display(description="status")
    def openai_status(self, obj):
        return fine_tuning_job_status(obj)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("training_job", "organization", "created_by")

    def has_add_permission(self, request):
        return False
