"""Every periodic task, in one place: Celery beat's schedule.

django-celery-beat's DatabaseScheduler installs these entries into its tables each time beat
starts (by name: an interval changed here, or in the environment, takes effect at the next start;
an entry edited in the admin is overwritten then). The entries' names are the ones the earlier
data migrations used, so a database they filled is updated in place.
"""
from .artifacts import ARTIFACT_PRUNE_INTERVAL_S
from .billing import BILLING_ENFORCE_INTERVAL_S, BILLING_RECONCILE_INTERVAL_S
from .gpu import RECONCILE_INTERVAL_S
from .validation import VALIDATION_RECOVER_INTERVAL_S

DAY_S = 24 * 3600

CELERY_BEAT_SCHEDULE = {
    "training: reconcile pods and jobs": {
        "task": "training.tasks.pods_reconcile", "schedule": float(RECONCILE_INTERVAL_S),
    },
    # The overshoot bound of a hard cap is this interval x the running rate (docs/billing.md).
    "billing: meter running jobs and enforce budgets": {
        "task": "training.tasks.budgets_enforce", "schedule": float(BILLING_ENFORCE_INTERVAL_S),
    },
    "billing: reconcile recorded pod cost with the provider's": {
        "task": "billing.tasks.costs_reconcile", "schedule": float(BILLING_RECONCILE_INTERVAL_S),
    },
    "billing: refresh GPU prices from RunPod": {
        "task": "billing.tasks.catalog_refresh", "schedule": float(DAY_S),
    },
    "validation: take up runs whose worker stopped": {
        "task": "validation.tasks.validation_runs_recover", "schedule": float(VALIDATION_RECOVER_INTERVAL_S),
    },
    "artifacts: prune checkpoints of finished jobs": {
        "task": "artifacts.tasks.checkpoints_prune", "schedule": float(ARTIFACT_PRUNE_INTERVAL_S),
    },
}
