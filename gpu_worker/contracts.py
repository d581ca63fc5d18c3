"""The contract between the control plane and the pod: plain dataclasses, no framework imports.

Both sides import this module; it must stay importable without torch or Django.
A job spec travels to the pod as base64 JSON in one environment variable (RunPod's API breaks
on quotes and newlines inside env values), events travel back as signed JSON webhooks.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

SPEC_ENV_VAR = "BRIGHTRUN_JOB_SPEC"
SPEC_VERSION = 1

# Job stages as the pod reports them, in order. The control plane's job states add
# queued/provisioning before and completed/failed/cancelled/interrupted around these.
STAGE_PREPROCESSING = "preprocessing"
STAGE_MODEL_LOADING = "model_loading"
STAGE_TRAINING = "training"
STAGE_FINALIZING = "finalizing"
STAGE_EVALUATING = "evaluating"
STAGES = (STAGE_PREPROCESSING, STAGE_MODEL_LOADING, STAGE_TRAINING, STAGE_FINALIZING, STAGE_EVALUATING)

# Event types a pod sends.
EVENT_STAGE_CHANGED = "stage_changed"
EVENT_METRICS = "metrics"
EVENT_CHECKPOINT_SAVED = "checkpoint_saved"
EVENT_LOG = "log"
EVENT_COMPLETED = "completed"
EVENT_FAILED = "failed"
EVENT_INTERRUPTED = "interrupted"
EVENT_HEARTBEAT = "heartbeat"
EVENT_TYPES = (
    EVENT_STAGE_CHANGED,
    EVENT_METRICS,
    EVENT_CHECKPOINT_SAVED,
    EVENT_LOG,
    EVENT_COMPLETED,
    EVENT_FAILED,
    EVENT_INTERRUPTED,
    EVENT_HEARTBEAT,
)

# Exit codes of `python -m gpu_worker run`, so a provider can tell outcomes apart
# without parsing logs.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped on SIGTERM after saving state; resume later.


@dataclass(frozen=True)
class Hyperparameters:
    """Resolved training hyperparameters (a preset plus overrides)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    num_epochs: float = 3.0
    micro_batch_size: int = 2
    gradient_accumulation_steps: int = 4
    max_seq_len: int = 4096
    seed: int = 42
    # Validation loss during training (on the validation split, token-weighted over assistant
    # tokens): every `eval_every_steps` optimizer steps; 0 = at every checkpoint and at the end.
    eval_every_steps: int = 0
    # Early stopping on the validation loss: stop after `early_stopping_patience` evaluations
    # without an improvement of at least `early_stopping_min_delta`, keeping the best adapter.
    # 0 = off.
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Hyperparameters":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(unknown)}; "
                f"known ones are: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass(frozen=True)
class JobSpec:
    """Everything a pod needs to run one attempt of one job.

    URIs are `file://` paths (local provider, embedded default), `s3://bucket/key` (read with
    the credentials in the pod's environment) or `https://` presigned URLs.
    """

    job_id: str
    attempt: int
    base_model: str
    train_uri: str
    val_uri: str | None
    output_uri: str
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    callback_url: str | None = None
    webhook_secret: str = field(default="", repr=False)
    hf_token: str | None = field(default=None, repr=False)
    resume_from: str | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    # "auto": 4-bit NF4 on CUDA, full precision on CPU. "nf4" demands CUDA. "none" never quantizes.
    quantization: str = "auto"
    # Storage access for this attempt when the pod holds no storage credentials (S3 through
    # presigned URLs and an upload policy; see artifacts.services.grants). None: the URIs are
    # read and written directly (file://, or s3:// with credentials in the pod's environment).
    storage_grant: dict[str, Any] | None = field(default=None, repr=False)
    max_runtime_s: int | None = None
    heartbeat_timeout_s: int | None = None
    # Several GPUs on one pod (gpu_worker.distributed): one process per GPU, "ddp" replicates the
    # model, "fsdp" shards it; "auto" picks FSDP for models of 30B parameters and more.
    gpu_count: int = 1
    parallel: str = "auto"
    # How the loss is computed (gpu_worker.loss): "auto" = Liger's fused kernel on CUDA when
    # installed, else the chunked path; "plain" materialises the labelled positions' logits.
    loss_impl: str = "auto"
    loss_chunk_tokens: int = 512
    # The evaluating stage (gpu_worker.evaluate, docs/validation.md). Replies are generated for at
    # most eval_max_replies held-out assistant turns (evenly spread), greedily, up to
    # eval_max_new_tokens each; multiple-choice accuracy is decided by the option's summed
    # log-probability ("sum") or its mean per token ("mean").
    eval_max_replies: int = 48
    eval_max_new_tokens: int = 256
    eval_max_emotion_items: int = 300
    eval_knowledge: bool = True
    eval_choice_score: str = "sum"
    eval_seed: int = 0
    # The organization's benchmark dataset (validation.benchmark.for_pod): {dataset_id, name,
    # val_fingerprint, val_uri}. The pod evaluates the job on its validation split too, into
    # evaluation.json's "benchmark" section. None: no benchmark, or the job's own validation data.
    benchmark: dict[str, Any] | None = None
    # Out-of-domain retention through lm-evaluation-harness (gpu_worker.evaluation.lm_harness):
    # task names or paths of YAML task files, run on the base and the adapted model; empty: none.
    # `eval_lm_limit` caps the examples per task (None: every example).
    eval_lm_tasks: tuple[str, ...] = ()
    eval_lm_limit: int | None = None
    # Test hooks, honoured only when the pod runs with BRIGHTRUN_ALLOW_TEST_HOOKS=1.
    test_hooks: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION

    def __post_init__(self):
        if self.eval_choice_score not in ("sum", "mean"):
            raise ValueError(f"eval_choice_score must be 'sum' or 'mean', not {self.eval_choice_score!r}")
        if not isinstance(self.gpu_count, int) or not 1 <= self.gpu_count <= 8:
            raise ValueError(f"gpu_count must be an integer from 1 to 8 (one pod), not {self.gpu_count!r}")
        if self.parallel not in ("auto", "ddp", "fsdp"):
            raise ValueError(f"parallel must be 'auto', 'ddp' or 'fsdp', not {self.parallel!r}")
        if self.loss_impl not in ("auto", "plain", "chunked", "liger"):
            raise ValueError(f"loss_impl must be 'auto', 'plain', 'chunked' or 'liger', not {self.loss_impl!r}")
        if not isinstance(self.loss_chunk_tokens, int) or self.loss_chunk_tokens < 1:
            raise ValueError(f"loss_chunk_tokens must be a positive integer, not {self.loss_chunk_tokens!r}")
        # JSON gives a list; the spec is frozen and hashable, so a tuple.
        object.__setattr__(self, "eval_lm_tasks", tuple(self.eval_lm_tasks or ()))
        if not all(isinstance(t, str) and t.strip() for t in self.eval_lm_tasks):
            raise ValueError(f"eval_lm_tasks must be task names, not {self.eval_lm_tasks!r}")
        if self.eval_lm_limit is not None and (not isinstance(self.eval_lm_limit, int) or self.eval_lm_limit < 1):
            raise ValueError(f"eval_lm_limit must be a positive integer or None, not {self.eval_lm_limit!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hyperparameters"] = self.hyperparameters.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        values = dict(data)
        version = values.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(f"job spec version {version} is not supported (expected {SPEC_VERSION})")
        values["hyperparameters"] = Hyperparameters.from_dict(values.get("hyperparameters") or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown job spec field(s): {', '.join(unknown)}")
        return cls(**values)

    def to_env_value(self) -> str:
        """One base64 string, safe inside any environment variable or GraphQL literal."""
        raw = json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()
        return base64.b64encode(raw).decode("ascii")

    @classmethod
    def from_env_value(cls, value: str) -> "JobSpec":
        return cls.from_dict(json.loads(base64.b64decode(value.encode("ascii"), validate=True)))


@dataclass(frozen=True)
class PodEvent:
    """One event from the pod. `event_id` is unique per job; `seq` orders events of one attempt."""

    event_id: str
    job_id: str
    attempt: int
    seq: int
    type: str
    timestamp: float
    step: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def payload(self):
        """`data` as its type's dataclass (PAYLOADS), parsed once; raises PayloadError."""
        parsed = self.__dict__.get("_payload")
        if parsed is None:
            parsed = PAYLOADS[self.type].parse(self.data, self.step)
            object.__setattr__(self, "_payload", parsed)
        return parsed

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PodEvent":
        if not isinstance(data, dict):
            raise ValueError("event body must be a JSON object")
        missing = [n for n in ("event_id", "job_id", "attempt", "seq", "type", "timestamp") if n not in data]
        if missing:
            raise ValueError(f"event is missing field(s): {', '.join(missing)}")
        if data["type"] not in EVENT_TYPES:
            raise ValueError(f"unknown event type {data['type']!r}")
        if data.get("data") is not None and not isinstance(data["data"], dict):
            raise ValueError("event data must be a JSON object")
        event = cls(
            event_id=str(data["event_id"]),
            job_id=str(data["job_id"]),
            attempt=int(data["attempt"]),
            seq=int(data["seq"]),
            type=str(data["type"]),
            timestamp=float(data["timestamp"]),
            step=int(data.get("step") or 0),
            data=dict(data.get("data") or {}),
        )
        return event


# --------------------------------------------------------------------------- event payloads
# Every event type's `data`, as a dataclass. The control plane parses an event once, at the
# webhook (`event.payload` after `PodEvent.from_dict`, training.webhooks); a payload that does not
# fit is refused there (400, the message says which field). Unknown extra keys are kept in `data` (the audit row) and
# ignored. The pod still sends plain dicts (the wire format is unchanged).

# What one metrics point may carry besides its step.
METRIC_KEYS = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch", "gpu_memory_mb", "eta_s", "total_steps",
               "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy")


class PayloadError(ValueError):
    pass


def _num(data: dict, key: str, where: str, *, kind=float):
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if kind is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise PayloadError(f"{where}.{key} must be a number, not {value!r}")
    return kind(value)


def _str(data: dict, key: str, where: str, default: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise PayloadError(f"{where}.{key} must be a string, not {type(value).__name__}")
    return str(value)


def _obj(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class StagePayload:
    stage: str  # one of STAGES; another name is stored and ignored

    @classmethod
    def parse(cls, data: dict, step: int) -> "StagePayload":
        return cls(stage=_str(data, "stage", "data"))


@dataclass(frozen=True)
class MetricsPayload:
    """One step's values, or a batch of steps (`data.points`, gpu_worker.events.metrics_batch).
    `points`: (step, {metric: value}) in the order sent; a step twice keeps its last values."""

    points: tuple[tuple[int, dict[str, Any]], ...]
    total_steps: int | None = None

    @classmethod
    def parse(cls, data: dict, step: int) -> "MetricsPayload":
        raw = data.get("points")
        if raw is None:
            points = [(step, _metric_values(data, "data"))]
        elif not isinstance(raw, list) or not raw:
            raise PayloadError("data.points must be a non-empty list of metric points")
        else:
            points = []
            for i, point in enumerate(raw):
                where = f"data.points[{i}]"
                if not isinstance(point, dict):
                    raise PayloadError(f"{where} must be an object")
                point_step = _num(point, "step", where, kind=int)
                if point_step is None:
                    raise PayloadError(f"{where}.step is missing")
                points.append((point_step, _metric_values(point, where)))
        points = list(dict(points).items())  # a step twice in one batch: its last values, everywhere
        return cls(points=tuple(points), total_steps=_num(data, "total_steps", "data", kind=int))


def _metric_values(data: dict, where: str) -> dict[str, Any]:
    out = {}
    for key in METRIC_KEYS:
        if key in data:
            value = data[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise PayloadError(f"{where}.{key} must be a number or null, not {value!r}")
            out[key] = value
    return out


@dataclass(frozen=True)
class CheckpointPayload:
    step: int
    uri: str
    bytes: int = 0
    epoch: float | None = None
    valid_loss: float | None = None  # None when absent or not finite

    @classmethod
    def parse(cls, data: dict, step: int) -> "CheckpointPayload":
        at = _num(data, "step", "data", kind=int)
        return cls(step=step if at is None else at, uri=_str(data, "uri", "data"),
                   bytes=_num(data, "bytes", "data", kind=int) or 0, epoch=_num(data, "epoch", "data"),
                   valid_loss=_finite(_num(data, "valid_loss", "data")))


@dataclass(frozen=True)
class LogPayload:
    level: str = "info"
    message: str = ""

    @classmethod
    def parse(cls, data: dict, step: int) -> "LogPayload":
        return cls(level=_str(data, "level", "data", "info"), message=_str(data, "message", "data"))


@dataclass(frozen=True)
class CompletedPayload:
    """The run's summary (gpu_worker.runner's `_finalize`); `result` is all of it, kept on the job."""

    adapter_uri: str
    total_steps: int | None
    final_step: int | None
    result: dict[str, Any]

    @classmethod
    def parse(cls, data: dict, step: int) -> "CompletedPayload":
        artifacts, final = _obj(data, "artifacts", "data"), _obj(data, "final_metrics", "data")
        # The pod sends artifacts.adapter_uri; `adapter_uri` at the top (and artifacts.adapter) are
        # the older spellings, still accepted.
        adapter = (_str(data, "adapter_uri", "data") or _str(artifacts, "adapter_uri", "data.artifacts")
                   or _str(artifacts, "adapter", "data.artifacts"))
        total = _num(final, "total_steps", "data.final_metrics", kind=int) or _num(data, "total_steps", "data", kind=int)
        return cls(adapter_uri=adapter, total_steps=total or None,
                   final_step=_num(final, "step", "data.final_metrics", kind=int), result=dict(data))


@dataclass(frozen=True)
class FailedPayload:
    error_class: str = "unknown"
    message: str = ""
    suggestion: str = ""
    fix: dict[str, Any] = field(default_factory=dict)
    traceback_tail: str = ""

    @classmethod
    def parse(cls, data: dict, step: int) -> "FailedPayload":
        return cls(error_class=_str(data, "error_class", "data", "unknown"), message=_str(data, "message", "data"),
                   suggestion=_str(data, "suggestion", "data"), fix=dict(_obj(data, "fix", "data")),
                   traceback_tail=_str(data, "traceback_tail", "data"))


@dataclass(frozen=True)
class InterruptedPayload:
    checkpoint_uri: str | None = None
    checkpoint_step: int = 0
    reason: str = ""

    @classmethod
    def parse(cls, data: dict, step: int) -> "InterruptedPayload":
        return cls(checkpoint_uri=_str(data, "checkpoint_uri", "data") or None,
                   checkpoint_step=_num(data, "checkpoint_step", "data", kind=int) or 0,
                   reason=_str(data, "reason", "data"))


@dataclass(frozen=True)
class HeartbeatPayload:
    @classmethod
    def parse(cls, data: dict, step: int) -> "HeartbeatPayload":
        return cls()


PAYLOADS: dict[str, type] = {
    EVENT_STAGE_CHANGED: StagePayload,
    EVENT_METRICS: MetricsPayload,
    EVENT_CHECKPOINT_SAVED: CheckpointPayload,
    EVENT_LOG: LogPayload,
    EVENT_COMPLETED: CompletedPayload,
    EVENT_FAILED: FailedPayload,
    EVENT_INTERRUPTED: InterruptedPayload,
    EVENT_HEARTBEAT: HeartbeatPayload,
}


@dataclass(frozen=True)
class FailureInfo:
    """A classified failure with a fix the control plane can apply on retry.

    `fix` holds hyperparameter overrides (e.g. {"micro_batch_size": 1,
    "gradient_accumulation_steps": 8}); `suggestion` says the same in words.
    """

    error_class: str
    message: str
    suggestion: str
    fix: dict[str, Any] = field(default_factory=dict)
    traceback_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
