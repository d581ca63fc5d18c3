from django.conf import settings
from django.db import models

from .jobs import CloudType, Preset


class JobTemplate(models.Model):
    """A saved job configuration (preset, overrides, GPU) that an organization reuses.

    A template holds no dataset: the same configuration is applied to whichever dataset the
    engineer picks when starting a job from it.
    """

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="job_templates")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    base_model = models.CharField(max_length=500, blank=True, help_text="blank: the server's default base model")
    preset = models.CharField(max_length=20, choices=Preset.choices, default=Preset.BALANCED)
    overrides = models.JSONField(default=dict, blank=True)
    gpu_type = models.CharField(max_length=100, blank=True)
    cloud_type = models.CharField(max_length=10, choices=CloudType.choices, default=CloudType.SECURE)
    spot = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="one_template_name_per_org")]

    def __str__(self):
        return self.name
