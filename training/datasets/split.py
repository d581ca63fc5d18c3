"""Train/validation split by conversation: no conversation on both sides, deterministic from a seed."""
from __future__ import annotations

import random

from training.errors import DatasetImportError


def split_conversations(conversation_ids: list[str], *, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Return (train_ids, val_ids). At least one conversation on each side.

    The result depends only on the set of ids, the fraction and the seed (ids are sorted
    before shuffling), so re-importing the same content gives the same split.
    """
    if not 0 < val_fraction < 1:
        raise DatasetImportError(f"val_fraction must be between 0 and 1, exclusive (got {val_fraction})",
                                 location="val_fraction", code="invalid_split")
    ids = sorted(set(conversation_ids))
    if len(ids) < 2:
        raise DatasetImportError(
            f"the file has {len(ids)} conversation; at least 2 are needed to hold one out for validation",
            location="$.conversations", code="too_few_conversations")
    rng = random.Random(seed)
    rng.shuffle(ids)
    n_val = min(max(1, round(len(ids) * val_fraction)), len(ids) - 1)
    val = set(ids[:n_val])
    # Keep the file's own order inside each side; it reads better in reports.
    train_ids = [c for c in conversation_ids if c not in val]
    val_ids = [c for c in conversation_ids if c in val]
    return train_ids, val_ids
