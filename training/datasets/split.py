"""Train/validation split by conversation: no conversation on both sides, decided per conversation.

A conversation goes to validation when a number drawn from its content hash and the seed is below
`val_fraction`. The side of a conversation therefore depends only on its content and the seed,
not on which other conversations the file holds: a conversation in both a 24- and a 72-conversation
file lands on the same side in both, so one dataset's validation conversations are never another's
training conversations when both use the same seed. The share of validation conversations is
`val_fraction` on average, not exactly.

Minimum validation evidence. A 10% draw of a 72-conversation file holds out about 7 conversations
and, by chance, as few as 4 (15 replies): fewer than the validation gates' minimum evidence
(VALIDATION_MIN_CONVERSATIONS = 5 conversations and VALIDATION_MIN_ITEMS = 20 rated replies at
VALIDATION_MIN_RATED_SHARE = 80% rated, so at least ceil(20 / 0.8) = 25 replies), which makes every
gate inconclusive. `split_with_minimum` therefore tops the validation side up, conversation by
conversation in increasing order of their draws (still a rule of content and seed alone), until it
holds that many conversations and replies, as long as training keeps at least 1 - `max_val_share`
of the conversations. A file too small for that keeps its drawn split and the caller says why.
Only the default split is topped up: a val_fraction the caller chose is kept as asked (with a warning
when it is short), so two files split with the same val_fraction and seed still put a shared
conversation on the same side. The top-up has one cost, stated in docs/validation.md: a
conversation topped up into the validation side of a small file can be on the training side of a
larger file that contains it (the dataset's stats.shared_with counts such conversations).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from training.errors import DatasetImportError


@dataclass(frozen=True)
class SplitMinimum:
    """What the validation side must hold for the gates to be able to conclude (see the module
    docstring for where the defaults come from)."""

    conversations: int = 5
    replies: int = 25
    max_val_share: float = 1 / 3

    @classmethod
    def from_gate_evidence(cls, *, min_conversations: int, min_items: int, min_rated_share: float,
                           max_val_share: float) -> "SplitMinimum":
        share = min_rated_share if min_rated_share > 0 else 1.0
        return cls(conversations=min_conversations, replies=math.ceil(min_items / share),
                   max_val_share=max_val_share)


@dataclass(frozen=True)
class SplitOutcome:
    train_ids: list[str]
    val_ids: list[str]
    topped_up: int  # conversations moved to validation to reach the minimum
    shortfall: str  # "" or why the validation side stays below the minimum


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


def split_with_minimum(hashes: dict[str, str], replies: dict[str, int], *, val_fraction: float, seed: int,
                       minimum: SplitMinimum | None, top_up: bool = True) -> SplitOutcome:
    """split_conversations, then the validation side topped up to `minimum` (module docstring).
    `replies` maps conversation id -> its trainable assistant turns (the reply items the gates
    judge). With `minimum` None the drawn split is returned unchanged; with `top_up` False (a
    val_fraction the caller chose) it is kept too, and `shortfall` says when it is below the
    minimum."""
    train_ids, val_ids = split_conversations(hashes, val_fraction=val_fraction, seed=seed)
    if minimum is None:
        return SplitOutcome(train_ids, val_ids, 0, "")
    val = set(val_ids)

    def short() -> bool:
        return (len(val) < minimum.conversations
                or sum(replies.get(c, 0) for c in val) < minimum.replies)

    if not short():
        return SplitOutcome(train_ids, val_ids, 0, "")
    held = sum(replies.get(c, 0) for c in val)
    if not top_up:
        return SplitOutcome(train_ids, val_ids, 0, (
            f"the validation split holds {len(val)} conversations ({held} replies to judge), fewer than the "
            f"{minimum.conversations} conversations and {minimum.replies} replies the validation gates need to reach "
            f"a verdict: its reports' gates will be inconclusive. Import with a larger val_fraction, or without one "
            f"(the default split is topped up to the minimum)"))
    cap = math.floor(len(hashes) * minimum.max_val_share)
    order = sorted((c for c in hashes if c not in val), key=lambda c: (_draw(hashes[c], seed), hashes[c]))
    grown = set(val)
    for cid in order:
        if len(grown) >= cap:
            break
        grown.add(cid)
        if not (len(grown) < minimum.conversations or sum(replies.get(c, 0) for c in grown) < minimum.replies):
            break
    reached = not (len(grown) < minimum.conversations or sum(replies.get(c, 0) for c in grown) < minimum.replies)
    if not reached:
        return SplitOutcome(train_ids, val_ids, 0, (
            f"the validation split holds {len(val)} conversations ({held} replies to judge); the validation gates "
            f"need at least {minimum.conversations} conversations and {minimum.replies} replies to reach a "
            f"verdict, which this file of {len(hashes)} conversations cannot give while training keeps "
            f"{1 - minimum.max_val_share:.0%} of them: every gate of its reports will be inconclusive. Import a "
            f"larger file, or validate on the organization's benchmark dataset"))
    return SplitOutcome([c for c in hashes if c not in grown], [c for c in hashes if c in grown],
                        len(grown) - len(val), "")
