from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat

from artifacts import services
from artifacts.models import ArtifactKind, ModelArtifact


@admin.register(ModelArtifact)
class ModelArtifactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "client", "version", "is_current", "size", "job", "organization",
                    "created_at", "pruned_at"]
    list_filter = ["kind", "is_current", "organization", ("pruned_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["client", "key", "sha256", "job__id", "name"]
    readonly_fields = [f.name for f in ModelArtifact._meta.fields] + ["files"]
    actions = ["make_current", "build_package"]

    @admin.display(description="size", ordering="bytes")
    def size(self, obj):
        return filesizeformat(obj.bytes)

    def has_add_permission(self, request):
        return False  # artifacts come from jobs (registration, packaging, reports)

    @admin.action(description="Make the selected adapter its client's current one")
    def make_current(self, request, queryset):
        adapters = list(queryset.filter(kind=ArtifactKind.ADAPTER))
        if len(adapters) != 1:
            self.message_user(request, "select exactly one adapter", messages.ERROR)
            return
        services.adapter_set_current(artifact_id=adapters[0].pk)
        self.message_user(request, f"{adapters[0]} is now current for {adapters[0].client or 'no client'}")

    @admin.action(description="Build the deployment package of the selected artifacts' jobs")
    def build_package(self, request, queryset):
        for job_id in sorted({a.job_id for a in queryset}, key=str):
            services.job_package_build(job_id=job_id)
        self.message_user(request, "packages built")
