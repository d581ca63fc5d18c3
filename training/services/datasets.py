from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from artifacts.storage import get_storage
from training.datasets.identity import conversation_hash, dataset_digest, fingerprint, merge
from training.datasets.normalize import parse, to_jsonl
from training.datasets.split import SplitMinimum, split_with_minimum
from training.datasets.stats import TokenCounter, dataset_stats, token_fields
from training.errors import DatasetImportError, DatasetTooLarge
from training.models import Dataset, DatasetConversation, StatsStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetImportResult:
    dataset: Dataset
    created: bool
    message: str


def dataset_store(*, organization, digest: str, objects: dict[str, tuple[str, bytes, str | None]], what: str,
                  conversations: dict[str, list[tuple[str, str]]] | None = None, **fields) -> tuple[Dataset, bool]:
    """Write a dataset's objects to storage, then its row: all or nothing. `objects` maps "source",
    "train" and "val" (and any further source files) to (key, bytes, content type);
    `conversations` maps "train" and "val" to (conversation id, conversation hash) pairs, written
    as DatasetConversation rows in the row's transaction. Returns (dataset, True), or (theirs,
    False) when a concurrent import or compose of the same content created the row first. On any
    other failure the objects written are removed, unless a row (a concurrent one) owns them."""
    storage = get_storage()
    try:
        for key, data, content_type in objects.values():
            storage.put_bytes(key, data, content_type)
        with transaction.atomic():
            dataset = Dataset.objects.create(
                organization=organization, content_sha256=digest, source_key=objects["source"][0],
                train_key=objects["train"][0], val_key=objects["val"][0], **fields)
            if conversations:
                dataset_conversations_record(dataset=dataset, conversations=conversations)
            return dataset, True
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


def dataset_conversations_record(*, dataset: Dataset, conversations: dict[str, list[tuple[str, str]]]) -> None:
    """The dataset's DatasetConversation rows, and in its stats the conversations it shares with
    the organization's other datasets (`shared_with`, selectors.dataset_shared_conversations)."""
    rows = [DatasetConversation(dataset=dataset, organization_id=dataset.organization_id, conversation_hash=h,
                                conversation_id=str(cid)[:255], side=side)
            for side in ("train", "val") for cid, h in conversations.get(side, [])]
    DatasetConversation.objects.bulk_create(rows, batch_size=5000, ignore_conflicts=True)
    from training.selectors import dataset_shared_conversations

    shared = dataset_shared_conversations(dataset=dataset)
    if shared:
        dataset.stats = {**(dataset.stats or {}), "shared_with": shared}
        if any(s["their_val_in_our_train"] or s["our_val_in_their_train"] for s in shared):
            dataset.stats["warnings"] = list(dataset.stats.get("warnings", [])) + [
                f"dataset {s['name']} ({s['dataset_id']}) shares {s['conversations']} conversations with this one, "
                f"on other sides: {s['our_val_in_their_train']} of this dataset's validation conversations are "
                f"training conversations there and {s['their_val_in_our_train']} of its validation conversations "
                "are training conversations here; do not compare their validation figures"
                for s in shared if s["their_val_in_our_train"] or s["our_val_in_their_train"]]
        Dataset.objects.filter(pk=dataset.pk).update(stats=dataset.stats)
        # The other side of each overlap learns of this dataset too (its shared_with, refreshed).
        others = Dataset.objects.filter(pk__in=[s["dataset_id"] for s in shared[:20]]).order_by("pk")  # one lock order
        for other in others.select_for_update():
            other.stats = {**(other.stats or {}), "shared_with": dataset_shared_conversations(dataset=other)}
            Dataset.objects.filter(pk=other.pk).update(stats=other.stats)


def _read_limited(source: BinaryIO | bytes, limit: int, size_hint: int | None, where: str = "file") -> bytes:
    if size_hint is not None and size_hint > limit:
        raise DatasetTooLarge(_too_large(size_hint, limit), location=where)
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise DatasetTooLarge(_too_large(len(data), limit, at_least=not isinstance(source, (bytes, bytearray))),
                              location=where)
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


def _in_file(exc: DatasetImportError, name: str) -> DatasetImportError:
    """The same error, its location prefixed with the file it is in (several files at once)."""
    bare = exc.message[len(exc.location) + 2:] if exc.location else exc.message
    located = type(exc)(bare, location=f"{name}: {exc.location}" if exc.location else name, code=exc.code)
    return located


UploadFile = tuple[str, "BinaryIO | bytes", "int | None"]  # (file name, content, size if known)


def dataset_import(
    *,
    organization,
    source: BinaryIO | bytes | None = None,
    filename: str = "",
    files: list[UploadFile] | None = None,
    name: str | None = None,
    val_fraction: float | None = None,
    seed: int | None = None,
    created_by=None,
    size_hint: int | None = None,
    tokenizer_path: str | None = None,
    on_error: str = "fail",
) -> DatasetImportResult:
    """Import one training file (`source`) or several (`files`) as one dataset, conversations
    deduplicated by content. Validates everything before writing anything; on any error nothing
    is stored and no row is created. The same content imported again returns the existing dataset
    (its split is kept). `on_error="skip"` leaves out conversations that cannot be read and lists
    them in stats["skipped_conversations"].

    Fast: token counts here are estimates; exact counts (a tokenizer) are filled in by the
    background task `dataset_stats_compute` (stats_status "pending" until then)."""
    # The default split is topped up to the gates' minimum evidence; a chosen val_fraction is kept.
    top_up = val_fraction is None
    val_fraction = settings.DATASET_DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
    seed = settings.DATASET_DEFAULT_SPLIT_SEED if seed is None else int(seed)
    if files is None:
        if source is None:
            raise DatasetImportError("no file given; upload a training file", location="file", code="no_file")
        files = [(filename, source, size_hint)]
    if not files:
        raise DatasetImportError("no file given; upload a training file", location="file", code="no_file")
    if len(files) > settings.DATASET_MAX_FILES:
        raise DatasetImportError(f"{len(files)} files were given; one import takes at most {settings.DATASET_MAX_FILES} "
                                 "(DATASET_MAX_FILES): import them in several datasets or raise the limit",
                                 location="file", code="too_many_files")
    several = len(files) > 1
    raws: list[tuple[str, bytes]] = []
    parts = []
    total = 0
    for i, (fname, src, hint) in enumerate(files):
        label = fname or f"file {i + 1}"
        raw = _read_limited(src, settings.DATASET_MAX_BYTES, hint, where=label if several else "file")
        total += len(raw)
        if total > settings.DATASET_MAX_BYTES:
            mb = 1024 * 1024
            raise DatasetTooLarge(f"the files together are more than {settings.DATASET_MAX_BYTES / mb:.0f} MB, the limit "
                                  "of one import (DATASET_MAX_BYTES); import them in several datasets or raise the limit",
                                  location=label)
        try:
            parts.append((label, parse(raw, on_error=on_error)))
        except DatasetImportError as exc:
            raise (_in_file(exc, label) if several else exc) from exc
        raws.append((fname, raw))
    normalized = merge(parts)
    digest = dataset_digest(normalized)

    existing = Dataset.objects.filter(organization=organization, content_sha256=digest).first()
    if existing is not None:
        return DatasetImportResult(existing, False, _already_imported(existing, val_fraction, seed))

    hashes = {c["conversation_id"]: c["conversation_hash"] for c in normalized.conversations}
    split = split_with_minimum(hashes, _reply_counts(normalized.conversations), val_fraction=val_fraction, seed=seed,
                               minimum=split_minimum(), top_up=top_up)
    train_ids, val_ids = split.train_ids, split.val_ids
    exact_path = tokenizer_path or _default_tokenizer_path()
    stats = dataset_stats(normalized, train_ids, val_ids, TokenCounter(None))
    stats["val_minimum"] = _val_minimum_stats(split)
    if exact_path:
        stats["tokens_pending_with"] = exact_path  # the tokenizer the background task counts with
    by_id = {c["conversation_id"]: c for c in normalized.conversations}

    prefix = f"datasets/{organization.pk}/{digest[:32]}"
    objects: dict[str, tuple[str, bytes, str | None]] = {}
    if several:
        manifest = [{"name": fname, "key": f"{prefix}/source-{i + 1}{_ext(fname, p.format)}", "bytes": len(raw)}
                    for i, ((fname, raw), (_l, p)) in enumerate(zip(raws, parts))]
        objects["source"] = (f"{prefix}/sources.json", json.dumps(manifest, indent=2).encode(), "application/json")
        for i, (fname, raw) in enumerate(raws):
            objects[f"source-{i + 1}"] = (manifest[i]["key"], raw, None)
    else:
        objects["source"] = (f"{prefix}/source{_ext(filename or files[0][0], normalized.format)}", raws[0][1], None)
    objects["train"] = (f"{prefix}/train.jsonl", to_jsonl([by_id[i] for i in train_ids]), "application/jsonl")
    objects["val"] = (f"{prefix}/val.jsonl", to_jsonl([by_id[i] for i in val_ids]), "application/jsonl")
    first_name = files[0][0]
    default_name = (PurePath(first_name).stem if first_name else "") or normalized.file_metadata.get("file_name") or "dataset"
    if several:
        default_name = f"{default_name} + {len(files) - 1} more"
    dataset, created = dataset_store(
        organization=organization, digest=digest, what="import", objects=objects,
        conversations={"train": [(i, hashes[i]) for i in train_ids], "val": [(i, hashes[i]) for i in val_ids]},
        name=(name or default_name)[:200],
        source_format=normalized.format,
        source_filename=(", ".join(f for f, _r in raws) if several else (filename or first_name))[:255],
        source_bytes=sum(len(r) for _f, r in raws),
        conversation_count=len(normalized.conversations),
        pair_count=normalized.pairs,
        trainable_turns=normalized.trainable_turns,
        train_conversations=len(train_ids),
        val_conversations=len(val_ids),
        val_fraction=val_fraction,
        split_seed=seed,
        split={"train": train_ids, "val": val_ids},
        stats=stats,
        stats_status=StatsStatus.PENDING if exact_path else StatsStatus.READY,
        stats_updated_at=None if exact_path else timezone.now(),
        val_fingerprint=fingerprint([hashes[i] for i in val_ids]),
        consultant_profile=normalized.consultant_profile,
        file_metadata=normalized.file_metadata,
        created_by=created_by,
    )
    if not created:
        # Someone imported the same content at the same moment: theirs is the dataset.
        return DatasetImportResult(dataset, False, _already_imported(dataset, val_fraction, seed))
    if exact_path:
        from training.tasks import dataset_stats_compute as task

        transaction.on_commit(lambda: task.delay(str(dataset.pk)))
    logger.info("imported dataset %s (%s conversations)", dataset.pk, dataset.conversation_count)
    message = f"imported {dataset.conversation_count} conversations"
    if several:
        message += f" from {len(files)} files"
    if normalized.duplicates_removed:
        message += f" ({normalized.duplicates_removed} duplicates imported once)"
    if normalized.skipped_conversations:
        message += (f"; {len(normalized.skipped_conversations)} conversations could not be read and were left out "
                    "(stats.skipped_conversations)")
    if split.topped_up:
        message += (f"; {split.topped_up} conversations added to the validation split so it holds the gates' "
                    f"minimum evidence (stats.val_minimum)")
    if split.shortfall:
        message += f"; warning: {split.shortfall}"
    return DatasetImportResult(dataset, True, message)


def split_minimum() -> SplitMinimum | None:
    """The validation split's minimum, from the validation gates' minimum evidence (None when
    DATASET_VAL_MINIMUM is off: the plain hash draw)."""
    if not settings.DATASET_VAL_MINIMUM:
        return None
    return SplitMinimum.from_gate_evidence(min_conversations=int(settings.VALIDATION_MIN_CONVERSATIONS),
                                           min_items=int(settings.VALIDATION_MIN_ITEMS),
                                           min_rated_share=float(settings.VALIDATION_MIN_RATED_SHARE),
                                           max_val_share=float(settings.DATASET_MAX_VAL_SHARE))


def _reply_counts(conversations) -> dict[str, int]:
    # The replies the brand-voice gate judges: the pod's reply items (one per trainable
    # assistant turn answering a client message), counted with the pod's own rule.
    from gpu_worker.evaluation.pod_eval import reply_items

    return {c["conversation_id"]: len(reply_items([c])) for c in conversations}


def _val_minimum_stats(split) -> dict:
    minimum = split_minimum()
    if minimum is None:
        return {"applied": False}
    return {"applied": True, "conversations": minimum.conversations, "replies": minimum.replies,
            "max_val_share": round(minimum.max_val_share, 4), "topped_up": split.topped_up,
            "shortfall": split.shortfall or None}


def _ext(filename: str, fmt: str) -> str:
    ext = PurePath(filename).suffix.lower() if filename else ""
    return ext if ext in {".json", ".jsonl"} else (".jsonl" if fmt.endswith("jsonl") else ".json")


def dataset_stats_compute(*, dataset_id, tokenizer_path: str | None = None) -> Dataset | None:
    """Exact token counts of a dataset from its stored normalized files, with the tokenizer of
    TOKENIZER_PATH (or the default base model's); stats_status becomes ready, or failed with
    stats["stats_error"] (the estimates stay). Idempotent: counting again gives the same figures."""
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        return None
    try:
        storage = get_storage()
        conversations = {}
        for key in (dataset.train_key, dataset.val_key):
            for line in storage.get_bytes(key).decode("utf-8").splitlines():
                if line.strip():
                    conv = json.loads(line)
                    conversations[conv["conversation_id"]] = conv
        split = dataset.split or {}
        if not dataset.val_fingerprint:
            _identity_backfill(dataset, conversations, split)
        counter = TokenCounter(tokenizer_path or (dataset.stats or {}).get("tokens_pending_with")
                               or _default_tokenizer_path())
        fields = token_fields(list(conversations.values()), split.get("train", []), split.get("val", []), counter)
    except Exception as exc:  # noqa: BLE001 - recorded on the row; the estimates stay usable
        logger.exception("statistics of dataset %s failed", dataset_id)
        stats = {**(dataset.stats or {}), "stats_error": f"{type(exc).__name__}: {exc}"}
        Dataset.objects.filter(pk=dataset.pk).update(stats=stats, stats_status=StatsStatus.FAILED,
                                                     stats_updated_at=timezone.now())
        dataset.refresh_from_db()
        return dataset
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        stats = {**(dataset.stats or {}), **fields}
        stats.pop("stats_error", None)
        stats.pop("tokens_pending_with", None)
        dataset.stats = stats
        dataset.stats_status = StatsStatus.READY
        dataset.stats_updated_at = timezone.now()
        dataset.save(update_fields=["stats", "stats_status", "stats_updated_at"])
    return dataset


def _identity_backfill(dataset: Dataset, conversations: dict[str, dict], split: dict[str, list[str]]) -> None:
    """A dataset imported before conversations had hashes: its DatasetConversation rows and
    val_fingerprint from its stored files (the split is kept as it was)."""
    hashes = {cid: conv.get("conversation_hash") or conversation_hash(conv) for cid, conv in conversations.items()}
    with transaction.atomic():
        DatasetConversation.objects.filter(dataset=dataset).delete()
        dataset_conversations_record(dataset=dataset, conversations={
            side: [(cid, hashes[cid]) for cid in split.get(side, []) if cid in hashes] for side in ("train", "val")})
        dataset.val_fingerprint = fingerprint([hashes[c] for c in split.get("val", []) if c in hashes])
        Dataset.objects.filter(pk=dataset.pk).update(val_fingerprint=dataset.val_fingerprint)


def dataset_stats_redrive() -> list[str]:
    """Datasets whose statistics are pending for longer than DATASET_STATS_REDRIVE_S (their task
    lost or its worker gone): the task is sent again, at most once per DATASET_STATS_REDRIVE_S
    (stats_updated_at records the send). Returns their ids."""
    from datetime import timedelta

    from django.db.models import Q

    from training.tasks import dataset_stats_compute as task

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.DATASET_STATS_REDRIVE_S)
    stuck = Dataset.objects.filter(Q(stats_updated_at__lt=cutoff) | Q(stats_updated_at__isnull=True, created_at__lt=cutoff),
                                   stats_status=StatsStatus.PENDING)
    ids = [str(pk) for pk in stuck.values_list("pk", flat=True)[:100]]
    if ids:
        Dataset.objects.filter(pk__in=ids).update(stats_updated_at=now)
        logger.warning("dataset statistics pending for more than %s s: task sent again for %s",
                       settings.DATASET_STATS_REDRIVE_S, ", ".join(ids))
    for pk in ids:
        task.delay(pk)
    return ids


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


__all__ = ["DatasetImportResult", "dataset_import", "dataset_stats_compute", "dataset_stats_redrive", "dataset_uris",
           "DatasetImportError"]


def dataset_benchmark_set(*, dataset: Dataset, on: bool) -> Dataset:
    """Mark `dataset` as its organization's benchmark (unmarking the previous one), or unmark it.
    A dataset without a validation split cannot be a benchmark (there is nothing to measure on)."""
    from accounts.models import Organization
    from training.errors import DomainError

    if on and not dataset.val_conversations:
        raise DomainError("this dataset has no validation split to measure on; a benchmark needs one",
                          code="benchmark_without_validation")
    with transaction.atomic():
        # Two admins marking two datasets at once: the organization row orders them, so the
        # one-benchmark constraint is never the one to say no.
        Organization.objects.select_for_update().filter(pk=dataset.organization_id).first()
        if on:
            Dataset.objects.filter(organization_id=dataset.organization_id, is_benchmark=True).exclude(
                pk=dataset.pk).update(is_benchmark=False)
        Dataset.objects.filter(pk=dataset.pk).update(is_benchmark=on)
    dataset.refresh_from_db()
    return dataset
