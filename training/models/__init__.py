from .datasets import Dataset, DatasetFormat

__all__ = ["Dataset", "DatasetFormat"]
