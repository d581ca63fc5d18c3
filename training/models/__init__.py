from .datasets import Dataset, DatasetFormat
from .jobs import Checkpoint, CloudType, JobEvent, MetricPoint, NotificationPreference, Preset, TrainingJob
from .templates import JobTemplate

__all__ = ["Checkpoint", "CloudType", "Dataset", "DatasetFormat", "JobEvent", "JobTemplate", "MetricPoint", "NotificationPreference",
           "Preset", "TrainingJob"]
