"""Every write and every rule of the training app. Views, tasks and commands call these."""
from .datasets import DatasetImportResult, dataset_import

__all__ = ["DatasetImportResult", "dataset_import"]
