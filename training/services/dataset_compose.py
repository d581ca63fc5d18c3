"""A dataset made of two imports: every conversation of one on the training side, every
conversation of the other on the validation side.

This is how an OpenAI `validation_file` becomes the run's validation split: a job trains on one
`Dataset`, and the worker reads its `train.jsonl` and `val.jsonl`, so the pair (training file,
validation file) is stored as a dataset of its own. Nothing is re-parsed: both sides come from the
normalized JSONL the imports stored.

Rules (docs/openai-api.md, "validation_file"):
- the same conversation (the same messages) in both files is refused: validating on conversations
  the model trained on makes the eval loss and the validation report dishonest;
- a validation conversation whose id is also a training id but whose messages differ is kept,
  renamed `val-<id>` (deterministically), and the rename is listed in `stats["composition"]`;
- the same pair composed again returns the same dataset (identity: a hash over a marker, the
  training side's format and consultant profile, and both sides' conversations);
- nothing half-written: everything is checked before anything is stored, and on any error the
  stored objects are removed unless a row (a concurrent compose of the same pair) owns them.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from artifacts.storage import get_storage
from training.datasets.normalize import NormalizedDataset, to_jsonl
from training.datasets.stats import TokenCounter, dataset_stats
from training.errors import DatasetImportError
from training.models import Dataset
from training.datasets.identity import conversation_hash, fingerprint
from training.services.datasets import _default_tokenizer_path, dataset_store

logger = logging.getLogger(__name__)

COMPOSE_MARKER = b"brightrun.dataset-compose/1\n"
# Dataset.split_seed is not nullable (no migration for this): a composed dataset was not split at
# random, and -1 says so. Its `split` lists both sides; `stats["composition"]` names the files.
COMPOSED_SPLIT_SEED = -1
OVERLAP_SHOWN = 5


@dataclass(frozen=True)
class DatasetComposeResult:
    dataset: Dataset
    created: bool
    message: str


def _stored_conversations(storage, key: str) -> list[dict[str, Any]]:
    raw = storage.get_bytes(key)
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def _all_conversations(storage, dataset: Dataset) -> list[dict[str, Any]]:
    """Every conversation of an import: its training side, then its held-out side."""
    return _stored_conversations(storage, dataset.train_key) + _stored_conversations(storage, dataset.val_key)


def _messages_fingerprint(conversation: dict[str, Any]) -> str:
    # The messages only: the same turns under another id or other metadata are the same conversation.
    return hashlib.sha256(json.dumps(conversation["messages"], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _refuse_overlap(train: Dataset, val: Dataset, train_convs, val_convs) -> None:
    if train.pk == val.pk:
        raise DatasetImportError(
            "the validation file has the same content as the training file; validating on the conversations "
            "the model trains on would make the eval loss and the validation report meaningless. Upload "
            "conversations the training file does not contain as the validation file, or leave validation_file "
            "out to hold out part of the training file", location="validation_file", code="validation_overlap")
    trained = {_messages_fingerprint(c): c["conversation_id"] for c in train_convs}
    shared = [(c["conversation_id"], trained[fp]) for c in val_convs if (fp := _messages_fingerprint(c)) in trained]
    if shared:
        shown = ", ".join(f"{v}" + (f" (= training {t})" if t != v else "") for v, t in shared[:OVERLAP_SHOWN])
        more = f" and {len(shared) - OVERLAP_SHOWN} more" if len(shared) > OVERLAP_SHOWN else ""
        raise DatasetImportError(
            f"{len(shared)} of the validation file's {len(val_convs)} conversations are also in the training file "
            f"(the same messages): {shown}{more}. Validating on conversations the model trained on would make the "
            "eval loss and the validation report dishonest; remove them from one of the files and upload it again",
            location="validation_file", code="validation_overlap")


def _rename_colliding(train_convs, val_convs) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Validation conversations whose id is a training id (with other messages: overlaps are
    refused first) get `val-<id>`, or `val2-<id>`, ... if that is taken too."""
    taken = {c["conversation_id"] for c in train_convs} | {c["conversation_id"] for c in val_convs}
    renamed: dict[str, str] = {}
    out = []
    train_ids = {c["conversation_id"] for c in train_convs}
    for conv in val_convs:
        cid = conv["conversation_id"]
        if cid in train_ids:
            n, new = 1, f"val-{cid}"
            while new in taken:
                n += 1
                new = f"val{n}-{cid}"
            taken.add(new)
            renamed[cid] = new
            conv = {**conv, "conversation_id": new}
        out.append(conv)
    return out, renamed


def _side(dataset: Dataset, count: int) -> dict[str, Any]:
    return {"dataset_id": str(dataset.pk), "name": dataset.name, "source_filename": dataset.source_filename,
            "source_format": dataset.source_format, "content_sha256": dataset.content_sha256, "conversations": count}


def _content_hash(train: Dataset, train_convs, val_convs) -> str:
    digest = hashlib.sha256(COMPOSE_MARKER)
    digest.update(train.source_format.encode() + b"\n")
    digest.update(json.dumps(train.consultant_profile, sort_keys=True).encode() + b"\n")
    digest.update(b"train\n" + to_jsonl(train_convs))
    digest.update(b"val\n" + to_jsonl(val_convs))  # a JSONL line is an object: never the bare word
    return digest.hexdigest()


def dataset_compose(*, organization, train: Dataset, val: Dataset, created_by=None,
                    tokenizer_path: str | None = None) -> DatasetComposeResult:
    """A dataset that trains on every conversation of `train` (both its sides) and validates on
    every conversation of `val`. Refuses (DatasetImportError, code `validation_overlap`) when a
    conversation is in both; on any error nothing is stored and no row is created. The same pair
    again returns the existing dataset. The consultant profile (the validation rubric's) is the
    training dataset's."""
    for side, dataset in (("training", train), ("validation", val)):
        if dataset.organization_id != organization.pk:
            raise DatasetImportError(f"the {side} dataset {dataset.pk} belongs to another organization",
                                     location=f"{side}_file", code="wrong_organization")
    storage = get_storage()
    train_convs = _all_conversations(storage, train)
    val_convs = _all_conversations(storage, val)
    _refuse_overlap(train, val, train_convs, val_convs)
    val_convs, renamed = _rename_colliding(train_convs, val_convs)
    digest = _content_hash(train, train_convs, val_convs)

    existing = Dataset.objects.filter(organization=organization, content_sha256=digest).first()
    if existing is not None:
        return DatasetComposeResult(existing, False, _already_composed(existing))

    train_ids = [c["conversation_id"] for c in train_convs]
    val_ids = [c["conversation_id"] for c in val_convs]
    composition = {
        "kind": "training file + validation file",
        "train": _side(train, len(train_convs)),
        "val": _side(val, len(val_convs)),
        "renamed_val_ids": renamed,
    }
    warnings = [f"training file: {w}" for w in (train.stats or {}).get("warnings", [])] + \
        [f"validation file: {w}" for w in (val.stats or {}).get("warnings", [])]
    if renamed:
        warnings.append(f"{len(renamed)} validation conversation id(s) were also training ids (with other messages) "
                        f"and were renamed: " + ", ".join(f"{a} → {b}" for a, b in list(renamed.items())[:OVERLAP_SHOWN]))
    if val.consultant_profile and val.consultant_profile != train.consultant_profile:
        warnings.append("the validation file's consultant profile differs from the training file's; the training "
                        "file's is used (it is the validation rubric's)")
    skipped = Counter((train.stats or {}).get("skipped", {})) + Counter((val.stats or {}).get("skipped", {}))
    normalized = NormalizedDataset(
        format=train.source_format, conversations=train_convs + val_convs,
        pairs=train.pair_count + val.pair_count, trainable_turns=train.trainable_turns + val.trainable_turns,
        skipped=dict(skipped), consultant_profile=train.consultant_profile,
        file_metadata=dict(train.file_metadata or {}), warnings=warnings)
    stats = dataset_stats(normalized, train_ids, val_ids, TokenCounter(tokenizer_path or _default_tokenizer_path()))
    stats["composition"] = composition
    manifest = json.dumps({"schema": COMPOSE_MARKER.decode().strip(), **composition}, indent=2,
                          ensure_ascii=False).encode()

    prefix = f"datasets/{organization.pk}/{digest[:32]}"
    total = len(train_ids) + len(val_ids)
    sides = {side: [(c["conversation_id"], c.get("conversation_hash") or conversation_hash(c)) for c in convs]
             for side, convs in (("train", train_convs), ("val", val_convs))}
    dataset, created = dataset_store(
        organization=organization, digest=digest, what="compose", conversations=sides,
        val_fingerprint=fingerprint([h for _cid, h in sides["val"]]),
        objects={
            "source": (f"{prefix}/composition.json", manifest, "application/json"),
            "train": (f"{prefix}/train.jsonl", to_jsonl(train_convs), "application/jsonl"),
            "val": (f"{prefix}/val.jsonl", to_jsonl(val_convs), "application/jsonl"),
        },
        name=f"{train.name} + {val.name} (validation)"[:200],
        source_format=train.source_format,
        source_filename=f"{train.source_filename or train.name} + {val.source_filename or val.name}"[:255],
        source_bytes=len(manifest),
        conversation_count=total,
        pair_count=normalized.pairs,
        trainable_turns=normalized.trainable_turns,
        train_conversations=len(train_ids),
        val_conversations=len(val_ids),
        # The actual share of the validation side: nothing was drawn at random.
        val_fraction=round(len(val_ids) / total, 4),
        split_seed=COMPOSED_SPLIT_SEED,
        split={"train": train_ids, "val": val_ids},
        stats=stats,
        consultant_profile=train.consultant_profile,
        file_metadata=normalized.file_metadata,
        created_by=created_by,
    )
    if not created:
        # The same pair composed at the same moment by someone else: theirs is the dataset.
        return DatasetComposeResult(dataset, False, _already_composed(dataset))
    logger.info("composed dataset %s (%s train + %s validation conversations)", dataset.pk, len(train_ids),
                len(val_ids))
    return DatasetComposeResult(dataset, True, f"composed {len(train_ids)} training and {len(val_ids)} "
                                               "validation conversations")


def _already_composed(existing: Dataset) -> str:
    return f"this pair was already composed as dataset {existing.pk} ({existing.name}); the existing dataset is returned"


__all__ = ["COMPOSED_SPLIT_SEED", "DatasetComposeResult", "dataset_compose"]
