"""Dataset import logic that needs neither Django nor torch: parsing, normalization, split, stats.

`training.services.datasets` wraps it with storage and the database.
"""
