"""Every write of the OpenAI-compatible API, mapped onto the training services.

No training rule is repeated here: datasets are imported by `dataset_import` (and a training file
with a validation file composed by `dataset_compose`), jobs are created,
cancelled, stopped and retried by `training.services.jobs`, which validate, ask billing, and move
the job. This module only translates OpenAI's request shapes and keeps the ids the client sees.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Role
from accounts.selectors import role_for_user
from core.job_config import JobConfigError, job_config_resolve
from finetuning.errors import ApiError, Conflict, PermissionDenied
from finetuning.models import ApiKey, FineTuningFile, FineTuningJob, FineTuningRun, JobCreateRequest
from finetuning.selectors import fine_tuning_job_status
from gpu_worker.presets import DEFAULT_PRESET, PRESETS
from training.errors import DatasetImportError, DatasetTooLarge
from training.models import Dataset
from training.services import job_inputs
from training.services import jobs as job_services
from training.services.dataset_compose import dataset_compose
from training.services.datasets import _too_large, dataset_import

KEY_PREFIX = "sk-br-"
WRITE_ROLES = frozenset({Role.ADMIN, Role.ENGINEER})
OPENAI_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
# Our own hyperparameters that an OpenAI one already sets (giving both is ambiguous).
_COVERED_BY = {"num_epochs": "n_epochs", "micro_batch_size": "batch_size",
               "gradient_accumulation_steps": "batch_size", "learning_rate": "learning_rate_multiplier"}


# --------------------------------------------------------------------------- API keys

def _key_hash(raw_key: str) -> str:
    # Keys are 256-bit random strings, so a fast unsalted hash is enough (nothing to brute-force)
    # and lets a request find its key by an indexed lookup.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_issue(*, user, name: str = "", created_by=None) -> tuple[ApiKey, str]:
    """A new key for `user`. Returns the row and the key itself, which is shown once and never
    stored."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(user=user, name=name[:100], prefix=raw[:12], key_hash=_key_hash(raw),
                                    created_by=created_by)
    return api_key, raw


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Stops the key at once (the next request with it gets 401). Revoking twice keeps the first time."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, with last_used_at refreshed (at most once per
    FINETUNING_KEY_TOUCH_INTERVAL_S, so that reads do not each write)."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    api_key = (ApiKey.objects.select_related("user").filter(key_hash=_key_hash(raw_key), revoked_at__isnull=True)
               .first())
    if api_key is None:
        return None
    now = timezone.now()
    stale = now - timedelta(seconds=settings.FINETUNING_KEY_TOUCH_INTERVAL_S)
    if api_key.last_used_at is None or api_key.last_used_at < stale:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def _require_write(*, user, organization) -> None:
    if getattr(user, "is_superuser", False):
        return
    role = role_for_user(user, organization)
    if role not in WRITE_ROLES:
        raise PermissionDenied(
            f"your role in {organization.name} is {role or 'none'}; starting, stopping and uploading need the "
            "engineer or admin role. Ask an admin of the organization to change it.")


# --------------------------------------------------------------------------- files

def file_upload(*, organization, user, api_key: ApiKey | None, upload, purpose: str) -> FineTuningFile:
    """Import an uploaded file (Bright Run JSON or chat JSONL) as a dataset and record it as an
    OpenAI file. Invalid content raises DatasetImportError naming the place in the file."""
    _require_write(user=user, organization=organization)
    if purpose != FineTuningFile.PURPOSE_FINE_TUNE:
        raise ApiError(f"purpose {purpose!r} is not supported here; upload training data with purpose 'fine-tune'",
                       param="purpose", code="invalid_purpose")
    if upload.size > settings.DATASET_MAX_BYTES:
        raise DatasetTooLarge(_too_large(upload.size, settings.DATASET_MAX_BYTES), location="file")
    result = dataset_import(organization=organization, source=upload, filename=upload.name or "",
                            created_by=user, size_hint=upload.size)
    return FineTuningFile.objects.create(
        organization=organization, dataset=result.dataset, filename=(upload.name or "upload")[:255],
        bytes=upload.size, purpose=purpose, created_by=user, api_key=api_key,
    )


def file_delete(*, organization, user, file_id: str) -> str:
    """files.delete: the file leaves the API (list, retrieve, content, new jobs). Refused (409,
    naming them) while a job that is not finished trains or validates on it. The dataset it was
    imported as stays: it belongs to training, and finished jobs keep showing their files' ids."""
    from finetuning.selectors import file_jobs_using, results_file_job

    _require_write(user=user, organization=organization)
    if results_file_job(organization=organization, file_id=file_id) is not None:
        raise ApiError(f"{file_id} is a job's results file, made from its metrics when it is read; it cannot be "
                       "deleted", param="file_id", code="file_not_deletable", retryable=False)
    with transaction.atomic():
        api_file = (FineTuningFile.objects.select_for_update()
                    .filter(pk=file_id, organization=organization, deleted_at__isnull=True).first())
        if api_file is None:
            from finetuning.errors import NotFound

            raise NotFound(f"No such File object: {file_id}", param="file_id")
        using = file_jobs_using(api_file=api_file)
        if using:
            raise Conflict(f"file {file_id} is used by fine-tuning job(s) that have not finished: {', '.join(using)}; "
                           "cancel them or wait until they finish, then delete it", param="file_id",
                           code="file_in_use", job_ids=using)
        api_file.deleted_at = timezone.now()
        api_file.save(update_fields=["deleted_at"])
    return file_id


def file_content(*, api_file: FineTuningFile) -> bytes:
    """The content the file was imported from (for a file uploaded twice with the same content, the
    first upload's bytes: the dataset is stored once)."""
    from artifacts.storage import get_storage

    return get_storage().get_bytes(api_file.dataset.source_key)


# --------------------------------------------------------------------------- hyperparameters

def _batch_split(batch_size: int, max_micro: int) -> tuple[int, int]:
    """An effective batch as micro_batch_size × gradient_accumulation_steps: the largest micro
    batch not above the preset's (its memory budget) that divides the batch exactly, so the
    optimizer sees exactly `batch_size` examples per step."""
    micro = max(d for d in range(1, min(batch_size, max_micro) + 1) if batch_size % d == 0)
    return micro, batch_size // micro


def hyperparameters_to_overrides(*, preset: str, hyperparameters: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """OpenAI's hyperparameters as overrides of one of our presets. "auto" (or absent) keeps the
    preset's value; n_epochs → num_epochs; batch_size → micro_batch_size ×
    gradient_accumulation_steps; learning_rate_multiplier scales the preset's learning rate. Any
    other key is one of our own hyperparameters (lora_r, max_seq_len...), passed through for
    `job_create` to validate."""
    base = PRESETS[preset].hyperparameters
    overrides = {k: v for k, v in hyperparameters.items() if k not in OPENAI_HYPERPARAMETERS}
    for ours, theirs in _COVERED_BY.items():
        if ours in overrides and hyperparameters.get(theirs, "auto") != "auto":
            raise ApiError(f"give either {theirs} or {ours}, not both", param=f"hyperparameters.{ours}")
    n_epochs = hyperparameters.get("n_epochs", "auto")
    if n_epochs != "auto":
        overrides["num_epochs"] = n_epochs
    batch_size = hyperparameters.get("batch_size", "auto")
    if batch_size != "auto":
        micro, accumulation = _batch_split(int(batch_size), base.micro_batch_size)
        overrides["micro_batch_size"], overrides["gradient_accumulation_steps"] = micro, accumulation
    multiplier = hyperparameters.get("learning_rate_multiplier", "auto")
    if multiplier != "auto":
        overrides["learning_rate"] = base.learning_rate * float(multiplier)
    if seed is not None:
        overrides["seed"] = seed
    return overrides


def _config_error_param(message: str) -> str | None:
    """The request parameter a training configuration error is about (its first word names our
    hyperparameter: "num_epochs must be > 0", "unknown hyperparameter(s) ...")."""
    first = message.removeprefix("invalid training configuration: ").split(" ", 1)[0]
    ours = {f.name for f in dataclasses.fields(PRESETS[DEFAULT_PRESET].hyperparameters)}
    if first == "seed":
        return "seed"
    if first in _COVERED_BY:
        return f"hyperparameters.{_COVERED_BY[first]}"
    if first in ours:
        return f"hyperparameters.{first}"
    return "hyperparameters" if first == "unknown" else None


# --------------------------------------------------------------------------- jobs

@dataclass(frozen=True)
class JobRequest:
    """A validated create request (see serializers.JobCreateSerializer)."""

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=lambda: {"type": "supervised"})
    suffix: str = ""
    seed: int | None = None
    metadata: dict[str, str] | None = None
    preset: str = DEFAULT_PRESET
    test_hooks: dict[str, Any] | None = None


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _file_for(organization, file_id: str | None, param: str) -> FineTuningFile | None:
    if not file_id:
        return None
    found = (FineTuningFile.objects.select_related("dataset")
             .filter(pk=file_id, organization=organization, deleted_at__isnull=True).first())
    if found is None:
        raise ApiError(f"invalid {param}: no file {file_id!r} in your organization; upload it with "
                       "POST /v1/files (purpose 'fine-tune') first", param=param, code="file_not_found")
    if found.purpose != FineTuningFile.PURPOSE_FINE_TUNE:
        raise ApiError(f"invalid {param}: file {file_id} has purpose {found.purpose!r}, not 'fine-tune'", param=param)
    return found


def fine_tuning_job_create(*, organization, user, api_key: ApiKey, request: JobRequest, body_sha256: str,
                           idempotency_key: str | None = None) -> tuple[FineTuningJob, bool]:
    """Create the job, or return the one an identical request from the same key created within
    FINETUNING_IDEMPOTENCY_WINDOW_S (the client's retry after a lost response). Returns
    (job, created). Refused, with nothing written, when the files, configuration or budget say no;
    the one exception is the dataset composed for a validation file (see `_job_dataset`), which is
    kept when the budget (or another check of job_create) then refuses: like an uploaded file it
    is identified by its content, and the same pair sent again reuses it.

    Creations are serialized per API key (its row is locked) so that a retry arriving while the
    first request is still being processed waits for it and then finds its job.
    """
    _require_write(user=user, organization=organization)
    if idempotency_key and len(idempotency_key) > 255:
        raise ApiError("Idempotency-Key is at most 255 characters", param="Idempotency-Key")
    key = f"header:{idempotency_key}" if idempotency_key else f"body:{body_sha256}"
    since = timezone.now() - timedelta(seconds=settings.FINETUNING_IDEMPOTENCY_WINDOW_S)
    # Files and hyperparameters are checked before anything is written. The dataset is chosen (a
    # composed one is committed on its own, like an upload) before the job's transaction: its
    # stored objects could not be taken back by a rollback of that transaction.
    if request.model:
        try:
            job_inputs.base_model_check(request.model)
        except job_inputs.JobInputError as exc:
            raise ApiError(exc.message.replace("base_model", "model", 1), param="model", code=exc.code) from exc
    training_file = _file_for(organization, request.training_file, "training_file")
    validation_file = _file_for(organization, request.validation_file, "validation_file")
    overrides = hyperparameters_to_overrides(preset=request.preset, hyperparameters=request.hyperparameters,
                                             seed=request.seed)
    if validation_file is not None:
        # A configuration that job_create would refuse is refused before the pair is composed.
        try:
            job_config_resolve(preset=request.preset, overrides=overrides,
                                            base_model=request.model or settings.DEFAULT_BASE_MODEL)
        except JobConfigError as exc:
            raise ApiError(exc.message, param=_config_error_param(exc.message), code=exc.code) from exc
    dataset = _job_dataset(organization=organization, user=user, training_file=training_file,
                           validation_file=validation_file)
    with transaction.atomic():
        ApiKey.objects.select_for_update().filter(pk=api_key.pk).first()
        JobCreateRequest.objects.filter(api_key=api_key, created_at__lt=since).delete()  # past the window: useless
        earlier = (JobCreateRequest.objects.filter(api_key=api_key, key=key, created_at__gte=since)
                   .select_related("fine_tuning_job").order_by("-created_at").first())
        if earlier is not None:
            if earlier.body_sha256 != body_sha256:
                raise ApiError("this Idempotency-Key was already used with a different request body; use a new key "
                               "for a different job", param="Idempotency-Key", code="idempotency_key_reused")
            return earlier.fine_tuning_job, False

        try:
            training_job = job_services.job_create(
                organization=organization, dataset=dataset, created_by=user, preset=request.preset,
                overrides=overrides, base_model=request.model, client="",
                name=f"{training_file.filename} · {request.suffix or request.preset} (OpenAI API)",
                notes=_validation_note(training_file, validation_file, dataset), test_hooks=request.test_hooks,
            )
        except JobConfigError as exc:
            raise ApiError(exc.message, param=_config_error_param(exc.message), code=exc.code) from exc
        job = FineTuningJob.objects.create(
            organization=organization, created_by=user, api_key=api_key, training_job=training_job,
            model=request.model, training_file=training_file, validation_file=validation_file,
            suffix=request.suffix, metadata=request.metadata, requested_hyperparameters=request.hyperparameters,
            method=request.method,
        )
        FineTuningRun.objects.create(fine_tuning_job=job, training_job=training_job, index=0)
        JobCreateRequest.objects.create(api_key=api_key, key=key, body_sha256=body_sha256, fine_tuning_job=job)
    return job, True


def _job_dataset(*, organization, user, training_file: FineTuningFile,
                 validation_file: FineTuningFile | None) -> Dataset:
    """The dataset the job trains on: the training file's own (validated on the part it holds
    out), or, with a validation file, one that trains on every conversation of the training file
    and validates on every conversation of the validation file (`dataset_compose`)."""
    if validation_file is None:
        return training_file.dataset
    try:
        return dataset_compose(organization=organization, train=training_file.dataset, val=validation_file.dataset,
                               created_by=user).dataset
    except DatasetImportError as exc:
        raise ApiError(exc.message, param="validation_file", code=exc.code) from exc


def _validation_note(training_file: FineTuningFile, validation_file: FineTuningFile | None, dataset: Dataset) -> str:
    if validation_file is None:
        return ""
    return (f"OpenAI training_file {training_file.id} ({training_file.filename}): all {dataset.train_conversations} "
            f"conversations are trained on; validation_file {validation_file.id} ({validation_file.filename}): all "
            f"{dataset.val_conversations} conversations are the validation split (composed dataset {dataset.pk}).")


def _locked(job: FineTuningJob) -> FineTuningJob:
    return FineTuningJob.objects.select_for_update().select_related("training_job").get(pk=job.pk)


def fine_tuning_job_cancel(*, job: FineTuningJob, user) -> FineTuningJob:
    """Cancel: the current run is cancelled (its pod terminated); a paused job, whose run already
    stopped, is marked cancelled so it cannot be resumed. Cancelling a cancelled job is a no-op,
    so the client's retries are harmless."""
    _require_write(user=user, organization=job.organization)
    with transaction.atomic():
        job = _locked(job)
        status = fine_tuning_job_status(job)
        if status == "cancelled":
            return job
        if status in ("succeeded", "failed"):
            raise Conflict(f"the job has already {status}; there is nothing to cancel", param="fine_tuning_job_id")
        if not job.training_job.is_terminal:
            job_services.job_cancel(job_id=job.training_job_id, reason=f"cancelled by {user} (OpenAI API)")
        job.cancelled_at = timezone.now()
        job.save(update_fields=["cancelled_at"])
    job.training_job.refresh_from_db()
    return job


def fine_tuning_job_pause(*, job: FineTuningJob, user) -> FineTuningJob:
    """Pause: the current run stops at the next step boundary and saves a checkpoint
    (`job_stop_early`), and the job reports `paused` from now on; `resume` continues from that
    checkpoint. Pausing a paused job is a no-op.

    The mark is committed before the stop is requested: the stop completes asynchronously, and a
    run that ends by the stop must already be known as paused (not succeeded) when it does.
    """
    _require_write(user=user, organization=job.organization)
    with transaction.atomic():
        job = _locked(job)
        status = fine_tuning_job_status(job)
        if status == "paused":
            return job
        if status not in ("queued", "running"):
            raise Conflict(f"the job is {status}; only a queued or running job can be paused",
                           param="fine_tuning_job_id")
        job.paused_at = timezone.now()
        job.save(update_fields=["paused_at"])
    try:
        job_services.job_stop_early(job_id=job.training_job_id, reason=f"paused by {user} (OpenAI API)")
    except job_services.JobStateError as exc:
        # The run ended on its own meanwhile: it was not paused.
        FineTuningJob.objects.filter(pk=job.pk).update(paused_at=None)
        raise Conflict(f"the job finished before it could be paused ({exc.message})",
                       param="fine_tuning_job_id") from exc
    job.refresh_from_db()
    return job


def fine_tuning_job_resume(*, job: FineTuningJob, user) -> FineTuningJob:
    """Resume a paused job: a new run (`job_retry` with resume) continues from the last
    checkpoint of the stopped one, under the same OpenAI job id. Resuming a job that is already
    running again is a no-op, so the client's retries start nothing twice. The budget is asked
    again (BudgetExceeded refuses the resume)."""
    _require_write(user=user, organization=job.organization)
    with transaction.atomic():
        job = _locked(job)
        status = fine_tuning_job_status(job)
        if status in ("queued", "running") and job.paused_at is None:
            return job
        if status != "paused":
            raise Conflict(f"the job is {status}; only a paused job can be resumed", param="fine_tuning_job_id")
        current = job.training_job
        if not current.is_terminal:
            raise Conflict("the job is still stopping at a checkpoint; resume it in a few seconds",
                           param="fine_tuning_job_id", retryable=True)
        run = job_services.job_retry(job_id=current.pk, created_by=user, resume=True)
        index = job.runs.count()
        FineTuningRun.objects.create(fine_tuning_job=job, training_job=run, index=index)
        job.training_job = run
        job.paused_at = None
        job.save(update_fields=["training_job", "paused_at"])
    return job

