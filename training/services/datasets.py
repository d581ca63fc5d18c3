from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction

from artifacts.storage import get_storage
from training.datasets.normalize import content_hash, parse, to_jsonl
from training.datasets.split import split_conversations
from training.datasets.stats import TokenCounter, dataset_stats
from training.errors import DatasetImportError, DatasetTooLarge
from training.models import Dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetImportResult:
    dataset: Dataset
    created: bool
    message: str


def dataset_store(*, organization, digest: str, objects: dict[str, tuple[str, bytes, str | None]], what: str,
                  **fields) -> tuple[Dataset, bool]:
    """Write a dataset's objects to storage, then its row: all or nothing. `objects` maps "source",
    "train" and "val" to (key, bytes, content type). Returns (dataset, True), or (theirs, False)
    when a concurrent import or compose of the same content created the row first. On any other
    failure the objects written are removed, unless a row (a concurrent one) owns them."""
    storage = get_storage()
    try:
        for key, data, content_type in objects.values():
            storage.put_bytes(key, data, content_type)
        with transaction.atomic():
            return Dataset.objects.create(
                organization=organization, content_sha256=digest, source_key=objects["source"][0],
                train_key=objects["train"][0], val_key=objects["val"][0], **fields), True
    except IntegrityError:
        return Dataset.objects.get(organization=organization, content_sha256=digest), False
    except BaseException:
        if not Dataset.objects.filter(organization=organization, content_sha256=digest).exists():
            for key, _data, _content_type in objects.values():
                try:
                    storage.delete(key)
                except Exception:  # noqa: BLE001
                    logger.exception("could not remove %s after a failed %s", key, what)
        raise


def _read_limited(source: BinaryIO | bytes, limit: int, size_hint: int | None) -> bytes:
    if size_hint is not None and size_hint > limit:
        raise DatasetTooLarge(_too_large(size_hint, limit), location="file")
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise DatasetTooLarge(_too_large(len(data), limit, at_least=not isinstance(source, (bytes, bytearray))),
                              location="file")
    return data


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    mb = 1024 * 1024
    size_text = f"more than {limit / mb:.1f} MB" if at_least else f"{size / mb:.1f} MB"
    return (f"the file is {size_text}; the limit is {limit / mb:.0f} MB (DATASET_MAX_BYTES). "
            "Split it into several files or raise the limit")


def _default_tokenizer_path() -> str | None:
    if settings.TOKENIZER_PATH:
        return settings.TOKENIZER_PATH
    from pathlib import Path

    candidate = Path(settings.DEFAULT_BASE_MODEL)
    return str(candidate) if (candidate / "tokenizer.json").exists() else None


def dataset_import(
    *,
    organization,
    source: BinaryIO | bytes,
    filename: str = "",
    name: str | None = None,
    val_fraction: float | None = None,
    seed: int | None = None,
    created_by=None,
    size_hint: int | None = None,
    tokenizer_path: str | None = None,
) -> DatasetImportResult:
    """Import a training file. Validates everything before writing anything; on any error
    nothing is stored and no row is created. The same content imported again returns the
    existing dataset (its split is kept)."""
    val_fraction = settings.DATASET_DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
    seed = settings.DATASET_DEFAULT_SPLIT_SEED if seed is None else int(seed)
    raw = _read_limited(source, settings.DATASET_MAX_BYTES, size_hint)
    normalized = parse(raw)
    digest = content_hash(normalized)

    existing = Dataset.objects.filter(organization=organization, content_sha256=digest).first()
    if existing is not None:
        return DatasetImportResult(existing, False, _already_imported(existing, val_fraction, seed))

    ids = [c["conversation_id"] for c in normalized.conversations]
    train_ids, val_ids = split_conversations(ids, val_fraction=val_fraction, seed=seed)
    counter = TokenCounter(tokenizer_path or _default_tokenizer_path())
    stats = dataset_stats(normalized, train_ids, val_ids, counter)
    by_id = {c["conversation_id"]: c for c in normalized.conversations}

    prefix = f"datasets/{organization.pk}/{digest[:32]}"
    ext = PurePath(filename).suffix.lower() if filename else ""
    ext = ext if ext in {".json", ".jsonl"} else (".json" if normalized.format == "brightrun-lora-v4" else ".jsonl")
    dataset, created = dataset_store(
        organization=organization, digest=digest, what="import",
        objects={
            "source": (f"{prefix}/source{ext}", raw, None),
            "train": (f"{prefix}/train.jsonl", to_jsonl([by_id[i] for i in train_ids]), "application/jsonl"),
            "val": (f"{prefix}/val.jsonl", to_jsonl([by_id[i] for i in val_ids]), "application/jsonl"),
        },
        name=(name or PurePath(filename).stem or normalized.file_metadata.get("file_name") or "dataset")[:200],
        source_format=normalized.format,
        source_filename=filename[:255],
        source_bytes=len(raw),
        conversation_count=len(normalized.conversations),
        pair_count=normalized.pairs,
        trainable_turns=normalized.trainable_turns,
        train_conversations=len(train_ids),
        val_conversations=len(val_ids),
        val_fraction=val_fraction,
        split_seed=seed,
        split={"train": train_ids, "val": val_ids},
        stats=stats,
        consultant_profile=normalized.consultant_profile,
        file_metadata=normalized.file_metadata,
        created_by=created_by,
    )
    if not created:
        # Someone imported the same content at the same moment: theirs is the dataset.
        return DatasetImportResult(dataset, False, _already_imported(dataset, val_fraction, seed))
    logger.info("imported dataset %s (%s conversations)", dataset.pk, dataset.conversation_count)
    return DatasetImportResult(dataset, True, f"imported {dataset.conversation_count} conversations")


def _already_imported(existing: Dataset, val_fraction: float, seed: int) -> str:
    message = f"this content was already imported as dataset {existing.pk} ({existing.name}); the existing dataset is returned"
    if existing.val_fraction != val_fraction or existing.split_seed != seed:
        message += (f"; its split (val_fraction {existing.val_fraction}, seed {existing.split_seed}) is kept, "
                    f"not the requested val_fraction {val_fraction}, seed {seed}")
    return message


def dataset_uris(dataset: Dataset) -> dict[str, str]:
    storage = get_storage()
    return {"train": storage.uri_for(dataset.train_key), "val": storage.uri_for(dataset.val_key),
            "source": storage.uri_for(dataset.source_key)}


__all__ = ["DatasetImportResult", "dataset_import", "dataset_uris", "DatasetImportError"]
