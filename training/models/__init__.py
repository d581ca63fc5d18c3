from .datasets import Dataset, DatasetConversation, DatasetFormat, StatsStatus
from .jobs import Checkpoint, CloudType, JobEvent, MetricPoint, MetricRollup, NotificationPreference, Preset, TrainingJob
from .outbox import OutboxMessage
from .templates import JobTemplate

__all__ = ["Checkpoint", "CloudType", "Dataset", "DatasetConversation", "DatasetFormat", "StatsStatus", "JobEvent", "JobTemplate", "MetricPoint", "MetricRollup", "NotificationPreference",
           "OutboxMessage", "Preset", "TrainingJob"]
