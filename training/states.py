"""The job state machine: every allowed move, in one table.

    queued → provisioning → preprocessing → model_loading → training → finalizing → evaluating → completed
    failed, cancelled: terminal, reachable from any non-terminal state
    interrupted (spot pod lost) → provisioning again, with resume_from set to the last checkpoint

Pod events can be lost or arrive late, so a running job may skip forward over stages it never
heard about, but never move backwards. Terminal states never change.

`training.services.jobs.job_move` is the only code that changes `TrainingJob.status` (an AST test,
tests/jobs/test_jobs_lifecycle.py, proves it). Its caller holds the job's row lock
(`job_lock` inside `transaction.atomic`); it refuses a move this table does not allow
(`IllegalMove`), writes the audit row, and queues the follow-up tasks declared below in
`ON_ENTER` / `ON_RESUME` through the outbox (training/services/outbox.py). Callers that expect
late or out-of-order requests ask `can_move` first.
"""
from __future__ import annotations

from dataclasses import dataclass

from gpu_worker import contracts

QUEUED = "queued"
PROVISIONING = "provisioning"
# The pod's stages: declared once, in the pod's contract.
PREPROCESSING = contracts.STAGE_PREPROCESSING
MODEL_LOADING = contracts.STAGE_MODEL_LOADING
TRAINING = contracts.STAGE_TRAINING
FINALIZING = contracts.STAGE_FINALIZING
EVALUATING = contracts.STAGE_EVALUATING
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"

# The stages a pod reports, in order.
POD_STAGES = contracts.STAGES
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



# --------------------------------------------------------------------------- side effects of a move

@dataclass(frozen=True)
class FollowUp:
    """A Celery task a move causes: `task(job_id, *args)`, `countdown_setting` seconds later (the
    name of a Django setting; "" = at once). Written to the outbox in the move's transaction."""

    task: str
    args: tuple = ()
    countdown_setting: str = ""


# Idempotent, and a no-op when the pod already exited. A completed pod gets a moment to flush its
# last events and exit by itself first.
_TERMINATE = FollowUp("training.tasks.job_terminate")
_TERMINATE_AFTER_EXIT_WAIT = FollowUp("training.tasks.job_terminate", countdown_setting="POD_COMPLETED_EXIT_WAIT_S")


def _notify(what: str) -> FollowUp:
    return FollowUp("training.tasks.job_notify", (what,))


# Entering a status causes these tasks, in this order. Besides them, every move broadcasts the new
# status and entering a terminal status settles the job's cost (both on commit, in job_move).
ON_ENTER: dict[str, tuple[FollowUp, ...]] = {
    COMPLETED: (_TERMINATE_AFTER_EXIT_WAIT, FollowUp("artifacts.tasks.job_artifacts_register"),
                FollowUp("validation.tasks.job_validate"), _notify(COMPLETED)),
    FAILED: (_TERMINATE, _notify(FAILED)),
    CANCELLED: (_TERMINATE,),
    INTERRUPTED: (FollowUp("training.tasks.job_resume"), _notify(INTERRUPTED)),
}
# A move from an interrupted job back to provisioning is a resume: the owner hears of it.
ON_RESUME: tuple[FollowUp, ...] = (_notify("resumed"),)


def followups(from_status: str, to_status: str) -> tuple[FollowUp, ...]:
    """Every follow-up task of the move `from_status` -> `to_status`, in order."""
    out = ON_ENTER.get(to_status, ())
    if from_status == INTERRUPTED and to_status == PROVISIONING:
        out += ON_RESUME
    return out


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
