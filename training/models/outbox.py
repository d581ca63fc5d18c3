"""The transactional outbox: the Celery tasks a job's state move must cause, written in the same
transaction as the move (training.services.outbox)."""
from django.db import models


class OutboxMessage(models.Model):
    id = models.BigAutoField(primary_key=True)
    job_id = models.UUIDField(null=True, blank=True, db_index=True)
    task = models.CharField(max_length=200, help_text="registered Celery task name")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    countdown_s = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="when the broker took it; null: not yet")
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["id"], condition=models.Q(sent_at__isnull=True), name="outbox_unsent")]

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)} {'sent' if self.sent_at else 'pending'}"
