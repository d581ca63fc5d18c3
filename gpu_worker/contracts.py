"""The contract between the control plane and the pod: plain dataclasses, no framework imports.

Both sides import this module; it must stay importable without torch or Django.
A job spec travels to the pod as base64 JSON in one environment variable (RunPod's API breaks
on quotes and newlines inside env values), events travel back as signed JSON webhooks.
"""
from __future__ import annotations

import base64
import dataclasses
import json
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
        return cls(
            event_id=str(data["event_id"]),
            job_id=str(data["job_id"]),
            attempt=int(data["attempt"]),
            seq=int(data["seq"]),
            type=str(data["type"]),
            timestamp=float(data["timestamp"]),
            step=int(data.get("step") or 0),
            data=dict(data.get("data") or {}),
        )


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
