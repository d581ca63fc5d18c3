"""Turning an exception into a FailureInfo the user (and the control plane's retry) can act on.

No torch import here: exceptions are recognised by type name and message, so the classifier
also works for errors raised before torch is loaded.
"""
from __future__ import annotations

import errno
import traceback

from .contracts import FailureInfo, Hyperparameters
from .presets import ConfigError


class WorkerError(Exception):
    """Base of the errors the worker raises on purpose, each mapped to one failure class."""

    error_class = "unknown"


class DatasetUnreachable(WorkerError):
    error_class = "dataset_unreachable"


class ModelNotFound(WorkerError):
    error_class = "model_not_found"


class ModelGated(WorkerError):
    error_class = "model_gated"


class NoCudaFor4bit(WorkerError):
    error_class = "no_cuda_for_4bit"


class NonFiniteLoss(WorkerError):
    error_class = "nan_loss"

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class MaxRuntimeExceeded(WorkerError):
    error_class = "max_runtime_exceeded"


class ControlPlaneUnreachable(WorkerError):
    error_class = "control_plane_unreachable"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _tail(exc: BaseException, lines: int = 15) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in str(exc)


def classify(exc: BaseException, hp: Hyperparameters | None = None, *, step: int | None = None) -> FailureInfo:
    hp = hp or Hyperparameters()
    chain = list(_chain(exc))
    at = f" at step {step}" if step else ""
    tail = _tail(exc)

    if any(_is_oom(e) for e in chain):
        if hp.micro_batch_size > 1:
            mb = max(1, hp.micro_batch_size // 2)
            ga = hp.gradient_accumulation_steps * (hp.micro_batch_size // mb)
            fix = {"micro_batch_size": mb, "gradient_accumulation_steps": ga}
            suggestion = (
                f"Out of GPU memory{at}: lower micro_batch_size to {mb} and raise "
                f"gradient_accumulation_steps to {ga} (same effective batch), or shorten max_seq_len."
            )
        else:
            seq = max(256, hp.max_seq_len // 2)
            fix = {"max_seq_len": seq}
            suggestion = (
                f"Out of GPU memory{at} with micro_batch_size 1: lower max_seq_len to {seq} "
                "or choose a GPU with more memory."
            )
        return FailureInfo("cuda_oom", str(exc)[:2000], suggestion, fix, tail)

    if any(_is_disk_full(e) for e in chain):
        return FailureInfo(
            "disk_full", str(exc), "The pod's disk is full: raise the container/volume disk size "
            "(the model, checkpoints and the adapter need room) or keep fewer checkpoints.",
            {}, tail,
        )

    for e in chain:
        if isinstance(e, ConfigError):
            return FailureInfo("invalid_config", str(e), f"Fix the job configuration: {e}", {}, tail)
        if isinstance(e, NonFiniteLoss):
            lr = hp.learning_rate / 4
            return FailureInfo(
                "nan_loss", str(e),
                f"The loss became NaN or exploded at step {e.step}: lower learning_rate to {lr:g} "
                "(a quarter of the current one).",
                {"learning_rate": lr}, tail,
            )
        if isinstance(e, NoCudaFor4bit):
            return FailureInfo(
                "no_cuda_for_4bit", str(e),
                "4-bit quantization needs an NVIDIA GPU: launch on a GPU pod, or set quantization "
                "to 'none' to train in full precision.", {}, tail,
            )
        if isinstance(e, DatasetUnreachable):
            return FailureInfo(
                "dataset_unreachable", str(e),
                "The dataset could not be read: check that it still exists in storage and that the "
                "pod's storage credentials or presigned URL are valid (presigned URLs expire).",
                {}, tail,
            )
        if isinstance(e, MaxRuntimeExceeded):
            return FailureInfo(
                "max_runtime_exceeded", str(e),
                "The job ran past its max_runtime_s; it was stopped after saving a checkpoint. "
                "Resume from the checkpoint with a larger limit, or train fewer epochs.", {}, tail,
            )
        if isinstance(e, ControlPlaneUnreachable):
            return FailureInfo(
                "control_plane_unreachable", str(e),
                "The pod could not reach the control plane for longer than heartbeat_timeout_s and "
                "stopped itself; resume from the last checkpoint once the control plane is back.",
                {}, tail,
            )
        name = type(e).__name__
        text = str(e)
        if isinstance(e, ModelGated) or name == "GatedRepoError" or "gated repo" in text.lower():
            return FailureInfo(
                "model_gated", text,
                "The base model is gated: accept its license on Hugging Face with the account "
                "whose token the job uses, and give the job a valid HF token.", {}, tail,
            )
        if (isinstance(e, ModelNotFound) or name in ("RepositoryNotFoundError", "RevisionNotFoundError")
                or "is not a valid model identifier" in text or "is not a local folder" in text):
            return FailureInfo(
                "model_not_found", text,
                "The base model was not found: check the hub id (organisation/name) or the local "
                "path, and that the HF token can read it.", {}, tail,
            )

    return FailureInfo(
        "unknown", f"{type(exc).__name__}: {exc}"[:2000],
        "An unexpected error stopped the job; the traceback tail shows where. Retrying may help "
        "if it was transient.", {}, tail,
    )
