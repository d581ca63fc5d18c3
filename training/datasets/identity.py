"""Stable identity of conversations and datasets, deduplication, and merging several files.

A conversation's identity is the hash of its content: the system prompt and every message (role,
text, whether it is a training target), in order. Ids, metadata, quality scores and emotion labels
are not part of it, so the same conversation from two files, re-serialized or re-indented, is one
conversation. (The app's training.jsonl leaves out client turns after the last reply that its JSON
export keeps; a conversation ending with such a turn therefore has another identity in each.)
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from training.datasets.normalize import MIXED_FORMAT, NormalizedDataset
from training.errors import DatasetImportError


def conversation_hash(conversation: dict[str, Any]) -> str:
    payload = [[m["role"], m["content"], bool(m.get("train"))] for m in conversation["messages"]]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def dedupe(normalized: NormalizedDataset) -> NormalizedDataset:
    """Stamp every conversation with its `conversation_hash` and keep the first of each content."""
    seen: set[str] = set()
    kept = []
    dropped = []
    for conv in normalized.conversations:
        digest = conv.get("conversation_hash") or conversation_hash(conv)
        conv["conversation_hash"] = digest
        if digest in seen:
            dropped.append(conv["conversation_id"])
            continue
        seen.add(digest)
        kept.append(conv)
    if dropped:
        normalized.duplicates_removed += len(dropped)
        shown = ", ".join(dropped[:10]) + (f" and {len(dropped) - 10} more" if len(dropped) > 10 else "")
        normalized.warnings.append(f"{len(dropped)} conversations have the same content as an earlier one and are "
                                   f"imported once: {shown}")
    normalized.conversations = kept
    return normalized


def merge(parts: list[tuple[str, NormalizedDataset]]) -> NormalizedDataset:
    """Several files as one dataset: conversations deduplicated by content, ids kept unique
    (a different conversation under an id already used gets `<file>:<id>`), counts added up."""
    if len(parts) == 1:
        return dedupe(parts[0][1])
    formats = {p.format for _name, p in parts}
    out = NormalizedDataset(format=formats.pop() if len(formats) == 1 else MIXED_FORMAT, conversations=[], pairs=0,
                            trainable_turns=0, skipped={})
    skipped: Counter[str] = Counter()
    fixes: Counter[str] = Counter()
    seen_hashes: set[str] = set()
    ids: set[str] = set()
    profiles = []
    for name, part in parts:
        dedupe(part)
        out.duplicates_removed += part.duplicates_removed
        out.warnings.extend(f"{name}: {w}" for w in part.warnings)
        out.skipped_conversations.extend({**s, "file": name} for s in part.skipped_conversations)
        skipped.update(part.skipped)
        fixes.update(part.fixes)
        out.pairs += part.pairs
        if part.consultant_profile is not None and part.consultant_profile not in profiles:
            profiles.append(part.consultant_profile)
        for conv in part.conversations:
            if conv["conversation_hash"] in seen_hashes:
                out.duplicates_removed += 1
                continue
            seen_hashes.add(conv["conversation_hash"])
            if conv["conversation_id"] in ids:
                conv = {**conv, "conversation_id": f"{name}:{conv['conversation_id']}"}
                if conv["conversation_id"] in ids:
                    raise DatasetImportError(f"conversation id {conv['conversation_id']} appears twice with different "
                                             "content; give each conversation its own id", location=name,
                                             code="duplicate_conversation")
            ids.add(conv["conversation_id"])
            out.conversations.append(conv)
    if out.duplicates_removed:
        out.warnings.append(f"{out.duplicates_removed} conversations appear in more than one file (same content) "
                            "and are imported once")
    out.trainable_turns = sum(1 for c in out.conversations for m in c["messages"]
                              if m["role"] == "assistant" and m.get("train"))
    out.skipped = dict(skipped)
    out.fixes = dict(fixes)
    out.consultant_profile = profiles[0] if profiles else None
    if len(profiles) > 1:
        out.warnings.append(f"the files carry {len(profiles)} different consultant profiles; the first one "
                            f"({parts[0][0] if parts[0][1].consultant_profile else 'of the first file that has one'}) "
                            "is kept")
    out.file_metadata = {"files": [{"name": name, "format": p.format, **p.file_metadata} for name, p in parts]}
    return out


def dataset_digest(normalized: NormalizedDataset) -> str:
    """Identity of a dataset: the set of its conversations (by content, in any order, from any
    number of files) and its consultant profile. Re-serialized copies of a file, its JSON and
    JSONL exports, and a file split in two and uploaded together hash the same."""
    digest = hashlib.sha256()
    digest.update(json.dumps(normalized.consultant_profile, sort_keys=True).encode())
    for value in sorted(c["conversation_hash"] for c in normalized.conversations):
        digest.update(value.encode())
    return digest.hexdigest()


def fingerprint(hashes: list[str]) -> str:
    """One hash for a set of conversations (the validation side's): equal sets, equal fingerprints."""
    digest = hashlib.sha256()
    for value in sorted(set(hashes)):
        digest.update(value.encode())
    return digest.hexdigest()
