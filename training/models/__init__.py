from .datasets import Dataset, DatasetFormat
from .jobs import Checkpoint, CloudType, JobEvent, MetricPoint, NotificationPreference, Preset, TrainingJob

__all__ = ["Checkpoint", "CloudType", "Dataset", "DatasetFormat", "JobEvent", "MetricPoint", "NotificationPreference",
           "Preset", "TrainingJob"]
