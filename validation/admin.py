from django.contrib import admin

from validation.models import ValidationRun


@admin.register(ValidationRun)
class ValidationRunAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "organization", "status", "verdict", "trigger", "created_at", "finished_at")
    list_filter = ("status", "verdict", "trigger")
    search_fields = ("job__name", "job__id")
    readonly_fields = ("created_at", "started_at", "finished_at")
    raw_id_fields = ("job", "requested_by")
