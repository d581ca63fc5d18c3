from django.contrib import admin

from training.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "source_format", "conversation_count", "trainable_turns",
                    "train_conversations", "val_conversations", "token_count", "created_by", "created_at"]
    list_filter = ["source_format", "organization", "created_at"]
    search_fields = ["name", "source_filename", "content_sha256"]
    readonly_fields = [f.name for f in Dataset._meta.fields] + ["stats_table"]
    exclude = ["stats", "split"]

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
