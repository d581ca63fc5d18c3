from .datasets import Dataset, DatasetFormat
from .jobs import Checkpoint, CloudType, JobEvent, MetricPoint, MetricRollup, NotificationPreference, Preset, TrainingJob
from .templates import JobTemplate

__all__ = ["Checkpoint", "CloudType", "Dataset", "DatasetFormat", "JobEvent", "JobTemplate", "MetricPoint", "MetricRollup", "NotificationPreference",
           "Preset", "TrainingJob"]
