"""Request parsing and OpenAI's object shapes (file, fine_tuning.job, fine_tuning.job.event,
fine_tuning.job.checkpoint, list). Output objects may carry extra fields (the client keeps them)."""
from __future__ import annotations

import math
import re
from pathlib import Path, PurePath
from typing import Any

from django.conf import settings
from rest_framework import serializers

from finetuning.errors import ApiError
from finetuning.models import FineTuningFile, FineTuningJob
from finetuning.selectors import (
    RESULTS_PURPOSE,
    RESULTS_STATUSES,
    fine_tuning_job_error,
    fine_tuning_job_status,
    results_file_id,
)
from finetuning.services import OPENAI_HYPERPARAMETERS, JobRequest
from gpu_worker.presets import DEFAULT_PRESET, PRESETS
from training.models import Checkpoint, JobEvent
from training.services.job_inputs import JobInputError, base_model_check

SUFFIX_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
METADATA_MAX_KEYS = 16


def ts(value) -> int | None:
    return int(value.timestamp()) if value else None


# --------------------------------------------------------------------------- input

def model_is_known(model: str) -> bool:
    """A base model a job may name: DEFAULT_BASE_MODEL, a hub id matching FINETUNING_MODEL_PATTERNS,
    or a model folder under MODELS_DIR (the same folder rule as the jobs API, job_inputs.base_model_check);
    nothing is downloaded or looked up."""
    if model == settings.DEFAULT_BASE_MODEL:
        return True
    if any(re.fullmatch(pattern, model) for pattern in settings.FINETUNING_MODEL_PATTERNS):
        return True
    try:
        resolved = base_model_check(model)
    except JobInputError:
        return False
    return Path(resolved).is_dir()


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if value is None:
        return "null"
    return {list: "an array", dict: "an object"}.get(type(value), "a value")


class AutoOrNumber(serializers.Field):
    """"auto", or a number within bounds (an integer where `integer`)."""

    def __init__(self, *, integer: bool, minimum: float, maximum: float, exclusive_minimum: bool = False, **kwargs):
        self.integer, self.minimum, self.maximum, self.exclusive_minimum = integer, minimum, maximum, exclusive_minimum
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if data == "auto":
            return "auto"
        kind = "an integer" if self.integer else "a number"
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(float(data)):
            raise serializers.ValidationError(f'must be "auto" or {kind} (got {data!r})')
        if self.integer and float(data) != int(data):
            raise serializers.ValidationError(f'must be "auto" or {kind} (got {data!r})')
        low_ok = data > self.minimum if self.exclusive_minimum else data >= self.minimum
        if not low_ok or data > self.maximum:
            low = f"> {self.minimum:g}" if self.exclusive_minimum else f">= {self.minimum:g}"
            raise serializers.ValidationError(f"must be {low} and <= {self.maximum:g} (got {data!r})")
        return int(data) if self.integer else float(data)

    def to_representation(self, value):
        return value


class HyperparametersSerializer(serializers.Serializer):
    n_epochs = AutoOrNumber(integer=True, minimum=1, maximum=50, required=False)
    batch_size = AutoOrNumber(integer=True, minimum=1, maximum=256, required=False)
    learning_rate_multiplier = AutoOrNumber(integer=False, minimum=0, maximum=10, exclusive_minimum=True, required=False)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        known = super().to_internal_value({k: v for k, v in data.items() if k in OPENAI_HYPERPARAMETERS})
        # Extension: any other key is one of our own hyperparameters (lora_r, max_seq_len...),
        # validated by job_create against the preset and the model.
        extra = {k: v for k, v in data.items() if k not in OPENAI_HYPERPARAMETERS}
        return {**known, **extra}


class MethodSerializer(serializers.Serializer):
    type = serializers.CharField()
    supervised = serializers.DictField(required=False, allow_null=True)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        value = super().to_internal_value(data)
        if value["type"] != "supervised":
            raise serializers.ValidationError({"type": [
                f"method {value['type']!r} is not supported here; only 'supervised' fine-tuning (LoRA) is"]})
        hyperparameters = (value.get("supervised") or {}).get("hyperparameters")
        if hyperparameters is not None:
            field = HyperparametersSerializer()
            try:
                value["hyperparameters"] = field.run_validation(hyperparameters)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"supervised": {"hyperparameters": exc.detail}}) from exc
        return value


class JobCreateSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=500)
    training_file = serializers.CharField(max_length=40)
    validation_file = serializers.CharField(max_length=40, required=False, allow_null=True, allow_blank=True)
    hyperparameters = HyperparametersSerializer(required=False, allow_null=True)
    method = MethodSerializer(required=False, allow_null=True)
    suffix = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    seed = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1)
    metadata = serializers.DictField(child=serializers.JSONField(), required=False, allow_null=True)
    integrations = serializers.ListField(required=False, allow_null=True)
    # Extensions (send with the client's extra_body): our preset, and worker test hooks (refused
    # unless the server allows them).
    preset = serializers.ChoiceField(choices=list(PRESETS), required=False, default=DEFAULT_PRESET)
    test_hooks = serializers.DictField(required=False, allow_null=True)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: [
                    f"unrecognized request argument; known ones are {', '.join(sorted(self.fields))}"]})
        return super().to_internal_value(data)

    def validate_suffix(self, value):
        if value and not SUFFIX_RE.match(value):
            raise serializers.ValidationError("use up to 64 letters, digits, '.', '_' or '-' (it becomes part of the "
                                              "model name ft:<model>:<suffix>:<id>)")
        return value or ""

    def validate_model(self, value):
        if not model_is_known(value):
            raise ApiError(f"The model `{value}` does not exist or is not available for fine-tuning here. Use a "
                           "Llama-3 hub id (e.g. meta-llama/Meta-Llama-3-8B-Instruct) or a model folder on the "
                           "server.", param="model", code="model_not_available")
        return value

    def validate_metadata(self, value):
        for key, item in (value or {}).items():
            if not isinstance(item, str):
                raise ApiError(f"Invalid type for 'metadata.{key}': expected a string, but got "
                               f"{_json_type(item)} instead.", param=f"metadata.{key}", code="invalid_type")
            if len(item) > 512:
                raise ApiError(f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                               f"512, but got a string with length {len(item)} instead.", param=f"metadata.{key}",
                               code="string_above_max_length")
        if value and len(value) > METADATA_MAX_KEYS:
            raise serializers.ValidationError(f"at most {METADATA_MAX_KEYS} keys (got {len(value)})")
        if value and any(len(k) > 64 for k in value):
            raise serializers.ValidationError("keys are at most 64 characters")
        return value

    def validate_integrations(self, value):
        if value:
            raise serializers.ValidationError("integrations (Weights & Biases) are not supported here; leave it out")
        return value

    def validate(self, attrs):
        top = attrs.get("hyperparameters")
        method = attrs.get("method") or {"type": "supervised"}
        nested = method.get("hyperparameters")
        if top and nested and top != nested:
            raise serializers.ValidationError({"hyperparameters": [
                "given both at the top level and in method.supervised.hyperparameters; give them in one place"]})
        attrs["resolved_hyperparameters"] = dict(nested or top or {})
        attrs["method"] = {"type": "supervised"}
        return attrs

    def to_request(self) -> JobRequest:
        data = self.validated_data
        return JobRequest(
            model=data["model"], training_file=data["training_file"], validation_file=data.get("validation_file") or None,
            hyperparameters=data["resolved_hyperparameters"], method=data["method"], suffix=data.get("suffix") or "",
            seed=data.get("seed"), metadata=data.get("metadata"), preset=data["preset"],
            test_hooks=data.get("test_hooks") or None,
        )


class FileUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    purpose = serializers.CharField()


class PageQuerySerializer(serializers.Serializer):
    after = serializers.CharField(required=False, max_length=60)
    limit = serializers.IntegerField(required=False, min_value=1, default=20)


class FileListQuerySerializer(PageQuerySerializer):
    limit = serializers.IntegerField(required=False, min_value=1, default=10000)
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="desc")
    purpose = serializers.CharField(required=False)


# --------------------------------------------------------------------------- output

def list_object(data: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def file_object(f: FineTuningFile) -> dict:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": ts(f.created_at), "filename": f.filename,
            "purpose": f.purpose, "status": "processed", "status_details": None, "expires_at": None,
            # extension: what the content was imported as
            "dataset_id": str(f.dataset_id)}


RESULTS_FILENAME = "step_metrics.csv"


def results_file_object(job: FineTuningJob, size: int) -> dict:
    """A job's results file (OpenAI's purpose "fine-tune-results"): made from its metrics when read."""
    return {"id": results_file_id(job), "object": "file", "bytes": size, "created_at": ts(job.created_at),
            "filename": RESULTS_FILENAME, "purpose": RESULTS_PURPOSE, "status": "processed", "status_details": None,
            "expires_at": None, "fine_tuning_job_id": job.id}


def _base_name(model: str) -> str:
    # A local model folder is named by its last part; a hub id ("org/name") stays whole.
    return PurePath(model).name if model.startswith(("/", ".", "~")) else model


def fine_tuned_model_name(job: FineTuningJob) -> str:
    return f"ft:{_base_name(job.model)}:{job.suffix}:{job.short_id}"


def _resolved_hyperparameters(job: FineTuningJob) -> dict[str, Any]:
    hp = job.training_job.hyperparameters or {}
    preset = PRESETS.get(job.training_job.preset) or PRESETS[DEFAULT_PRESET]
    epochs = hp.get("num_epochs")
    return {
        "n_epochs": int(epochs) if isinstance(epochs, (int, float)) and float(epochs).is_integer() else epochs,
        "batch_size": int(hp.get("micro_batch_size", 1)) * int(hp.get("gradient_accumulation_steps", 1)),
        "learning_rate_multiplier": round(float(hp.get("learning_rate", preset.hyperparameters.learning_rate))
                                          / preset.hyperparameters.learning_rate, 6),
    }


def job_object(job: FineTuningJob, costs: dict[str, dict] | None = None) -> dict:
    run = job.training_job
    status = fine_tuning_job_status(job)
    hyperparameters = _resolved_hyperparameters(job)
    finished = status in ("succeeded", "failed", "cancelled")
    result = run.result or {}
    body = {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": ts(job.created_at),
        "error": fine_tuning_job_error(job, status),
        # The `openai` client's status type has no "paused": a paused job reads "cancelled" (it does
        # not move by itself, so a client polling for a final status stops), with `paused: true`
        # and `paused_at`; resume (or cancel) still works on it. See docs/openai-api.md.
        "status": "cancelled" if status == "paused" else status,
        "paused": status == "paused",
        "paused_at": ts(job.paused_at or run.finished_at) if status == "paused" else None,
        "fine_tuned_model": fine_tuned_model_name(job) if status == "succeeded" else None,
        "finished_at": ts(job.cancelled_at or run.finished_at) if finished else None,
        "hyperparameters": hyperparameters,
        "model": job.model,
        "organization_id": job.organization.slug,
        "result_files": [results_file_id(job)] if status in RESULTS_STATUSES else [],
        "seed": (run.hyperparameters or {}).get("seed"),
        "trained_tokens": result.get("train_tokens") if status == "succeeded" else None,
        "training_file": job.training_file_id,
        "validation_file": job.validation_file_id,
        "estimated_finish": (ts(run.last_event_at) + int(run.eta_s)
                             if status == "running" and run.eta_s and run.last_event_at else None),
        "integrations": [],
        "metadata": job.metadata,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        "suffix": job.suffix or None,
        # Extensions: our own view of the run.
        "preset": run.preset,
        "progress": round(run.progress, 4),
        "current_step": run.current_step,
        "total_steps": run.total_steps,
        "train_loss": run.last_loss,
        "training_job_id": str(run.pk),
    }
    if costs is not None and job.id in costs:
        body.update(costs[job.id])
    return body


_STATUS_TEXT = {
    "provisioning": "Provisioning a GPU",
    "preprocessing": "Preparing the training data",
    "model_loading": "Loading the base model",
    "training": "Training started",
    "finalizing": "Saving the adapter",
    "evaluating": "Evaluating the adapter",
    "completed": "The job has successfully completed",
    "failed": "The job failed",
    "cancelled": "The job was cancelled",
    "interrupted": "The GPU was interrupted; the job resumes from its last checkpoint",
}


PAUSE_REASON_PREFIX = "paused by "  # finetuning.services.fine_tuning_job_pause's reason
_KEPT_STEP = re.compile(r"kept from the checkpoint at step (\d+)")


def _message(event: JobEvent, run_index: int) -> tuple[str, str]:
    """(level, message) of one of our JobEvents."""
    data = event.data or {}
    if event.type == "created":
        return "info", ("Created fine-tuning job" if run_index == 0
                        else f"Resumed from the last checkpoint (run {run_index + 1})")
    if event.type == "transition" and event.to_status in ("completed", "cancelled") and \
            (event.message or "").startswith(PAUSE_REASON_PREFIX):
        # The run a pause stopped: it ends completed (from its last checkpoint) or cancelled (no
        # checkpoint yet), but the job is paused, not done.
        kept = _KEPT_STEP.search(event.message)
        if kept:
            return "info", (f"The job was paused at a step boundary; its checkpoint at step {kept.group(1)} is kept "
                            "and resume continues from it")
        return "warn", ("The job was paused before its first checkpoint; nothing was kept, so resume starts "
                        "training from the beginning")
    if event.type == "transition":
        text = _STATUS_TEXT.get(event.to_status, f"Status: {event.to_status}")
        if event.message and event.to_status in ("failed", "cancelled", "completed", "interrupted"):
            text = f"{text}: {event.message}"
        level = {"failed": "error", "interrupted": "warn"}.get(event.to_status, "info")
        return level, text
    if event.type == "checkpoint_saved":
        return "info", f"Checkpoint saved at step {data.get('step', event.step)}"
    if event.type == "interrupted":
        return "warn", f"Stopped at step {event.step}" + (f"; checkpoint at step {data['checkpoint_step']}"
                                                          if data.get("checkpoint_step") else "")
    if event.type == "log":
        level = {"warning": "warn", "error": "error"}.get(data.get("level"), "info")
        return level, str(data.get("message") or event.message)
    return "info", event.message or event.type.replace("_", " ")


def event_object(kind: str, row, run_indexes: dict) -> dict:
    if kind == "m":
        values: dict = row.values or {}
        data = {"step": row.step, "train_loss": values.get("loss"), "total_steps": values.get("total_steps"),
                "learning_rate": values.get("learning_rate"), "epoch": values.get("epoch"),
                "train_mean_token_accuracy": values.get("train_mean_token_accuracy"),
                "valid_loss": values.get("valid_loss"),
                "valid_mean_token_accuracy": values.get("valid_mean_token_accuracy")}
        loss = f"{values['loss']:.4f}" if isinstance(values.get("loss"), (int, float)) else "n/a"
        total = f"/{values['total_steps']}" if values.get("total_steps") else ""
        message = f"Step {row.step}{total}: training loss={loss}"
        if isinstance(values.get("valid_loss"), (int, float)):
            message += f", validation loss={values['valid_loss']:.4f}"
        return {"id": f"ftevent-m{row.pk}", "object": "fine_tuning.job.event", "created_at": ts(row.created_at),
                "level": "info", "message": message, "type": "metrics",
                "data": {k: v for k, v in data.items() if v is not None}}
    level, message = _message(row, run_indexes.get(row.job_id, 0))
    data = {"type": row.type, "step": row.step}
    if row.type == "transition":
        data.update({"from": row.from_status, "to": row.to_status})
    return {"id": f"ftevent-e{row.pk}", "object": "fine_tuning.job.event", "created_at": ts(row.created_at),
            "level": level, "message": message, "type": "message", "data": data}


def checkpoint_object(job: FineTuningJob, checkpoint: Checkpoint, metrics: dict[tuple, dict]) -> dict:
    values = metrics.get((checkpoint.job_id, checkpoint.step)) or {}
    return {
        "id": f"ftckpt-{checkpoint.pk}",
        "object": "fine_tuning.job.checkpoint",
        "created_at": ts(checkpoint.created_at),
        "fine_tuned_model_checkpoint": f"{fine_tuned_model_name(job)}:ckpt-step-{checkpoint.step}",
        "fine_tuning_job_id": job.id,
        # OpenAI's checkpoint metrics; valid_* from the evaluation at that step (the pod evaluates
        # at each checkpoint by default), absent without a validation split.
        "metrics": {k: v for k, v in {
            "step": checkpoint.step, "train_loss": values.get("loss"),
            "train_mean_token_accuracy": values.get("train_mean_token_accuracy"),
            "valid_loss": values.get("valid_loss"), "valid_mean_token_accuracy": values.get("valid_mean_token_accuracy"),
            "full_valid_loss": values.get("valid_loss"),
            "full_valid_mean_token_accuracy": values.get("valid_mean_token_accuracy"),
        }.items() if v is not None},
        "step_number": checkpoint.step,
    }


__all__ = ["JobCreateSerializer", "FileUploadSerializer", "PageQuerySerializer", "FileListQuerySerializer",
           "list_object", "file_object", "job_object", "event_object", "checkpoint_object"]
