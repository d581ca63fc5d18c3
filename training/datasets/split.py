"""Train/validation split by conversation: no conversation on both sides, decided per conversation.

A conversation goes to validation when a number drawn from its content hash and the seed is below
`val_fraction`. The side of a conversation therefore depends only on its content and the seed,
not on which other conversations the file holds: a conversation in both a 24- and a 72-conversation
file lands on the same side in both, so one dataset's validation conversations are never another's
training conversations when both use the same seed. The share of validation conversations is
`val_fraction` on average, not exactly.
"""
from __future__ import annotations

import hashlib

from training.errors import DatasetImportError


def _draw(conversation_hash: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{conversation_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def split_conversations(hashes: dict[str, str], *, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """`hashes` maps conversation id → conversation hash, in file order. Returns (train_ids,
    val_ids), each in file order. At least one conversation on each side: when the draw puts none
    on one side, the conversation nearest the threshold moves over (a rule that only depends on
    the draws, so it is also the same for the same content)."""
    if not 0 < val_fraction < 1:
        raise DatasetImportError(f"val_fraction must be between 0 and 1, exclusive (got {val_fraction})",
                                 location="val_fraction", code="invalid_split")
    if len(set(hashes.values())) < 2:
        raise DatasetImportError(
            f"the file has {len(set(hashes.values()))} conversation; at least 2 are needed to hold one out for validation",
            location="$.conversations", code="too_few_conversations")
    draws = {cid: _draw(h, seed) for cid, h in hashes.items()}
    val = {cid for cid, d in draws.items() if d < val_fraction}
    if not val:
        val = {min(draws, key=draws.get)}
    elif len(val) == len(draws):
        val.discard(max(draws, key=draws.get))
    train_ids = [c for c in hashes if c not in val]
    val_ids = [c for c in hashes if c in val]
    return train_ids, val_ids
