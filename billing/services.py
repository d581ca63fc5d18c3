"""Billing rules called by the jobs services. The billing issue fills these in; until then a job
is admitted without a budget check and no cost is metered (there are no budgets to check)."""
from __future__ import annotations


def job_admit(*, job) -> None:
    """Called inside the transaction that creates `job` (caller holds it). Raise
    `billing.errors.BudgetExceeded` (a DomainError) to refuse the start; nothing is then created."""


def job_cost_update(*, job) -> None:
    """Called with the job row locked after every pod event was applied."""


def job_settle(*, job_id) -> None:
    """Called on commit after a job reached a terminal state: true up its reservation and cost."""
