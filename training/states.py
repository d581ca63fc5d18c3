"""The job state machine: every allowed move, in one table.

    queued → provisioning → preprocessing → model_loading → training → finalizing → evaluating → completed
    failed, cancelled: terminal, reachable from any non-terminal state
    interrupted (spot pod lost) → provisioning again, with resume_from set to the last checkpoint

Pod events can be lost or arrive late, so a running job may skip forward over stages it never
heard about, but never move backwards. Terminal states never change.
`training.services.jobs.job_transition` is the only code that changes `TrainingJob.status`.
"""
from __future__ import annotations

QUEUED = "queued"
PROVISIONING = "provisioning"
PREPROCESSING = "preprocessing"
MODEL_LOADING = "model_loading"
TRAINING = "training"
FINALIZING = "finalizing"
EVALUATING = "evaluating"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"

# The stages a pod reports, in order (same names as gpu_worker.contracts.STAGES).
POD_STAGES = (PREPROCESSING, MODEL_LOADING, TRAINING, FINALIZING, EVALUATING)
RUNNING_STATES = (PROVISIONING,) + POD_STAGES
TERMINAL_STATES = frozenset({COMPLETED, FAILED, CANCELLED})
LIVE_STATES = frozenset({QUEUED, PROVISIONING, *POD_STAGES, INTERRUPTED})
# States in which a pod may exist and cost money.
POD_STATES = frozenset(RUNNING_STATES)

ALLOWED_MOVES: dict[str, frozenset[str]] = {
    QUEUED: frozenset({PROVISIONING, FAILED, CANCELLED}),
    PROVISIONING: frozenset({*POD_STAGES, COMPLETED, INTERRUPTED, FAILED, CANCELLED}),
    PREPROCESSING: frozenset({MODEL_LOADING, TRAINING, FINALIZING, EVALUATING, COMPLETED, INTERRUPTED, FAILED, CANCELLED}),
    MODEL_LOADING: frozenset({TRAINING, FINALIZING, EVALUATING, COMPLETED, INTERRUPTED, FAILED, CANCELLED}),
    TRAINING: frozenset({FINALIZING, EVALUATING, COMPLETED, INTERRUPTED, FAILED, CANCELLED}),
    FINALIZING: frozenset({EVALUATING, COMPLETED, INTERRUPTED, FAILED, CANCELLED}),
    EVALUATING: frozenset({COMPLETED, INTERRUPTED, FAILED, CANCELLED}),
    INTERRUPTED: frozenset({PROVISIONING, COMPLETED, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

CHOICES = [
    (QUEUED, "Queued"),
    (PROVISIONING, "Provisioning"),
    (PREPROCESSING, "Preprocessing"),
    (MODEL_LOADING, "Model loading"),
    (TRAINING, "Training"),
    (FINALIZING, "Finalizing"),
    (EVALUATING, "Evaluating"),
    (COMPLETED, "Completed"),
    (FAILED, "Failed"),
    (CANCELLED, "Cancelled"),
    (INTERRUPTED, "Interrupted"),
]


def can_move(current: str, target: str) -> bool:
    return target in ALLOWED_MOVES.get(current, frozenset())


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATES
