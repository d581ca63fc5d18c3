from django.apps import AppConfig


class FinetuningConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "finetuning"
    verbose_name = "OpenAI-compatible fine-tuning API"
