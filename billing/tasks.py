"""Thin Celery tasks: ids in, call a service. Both are idempotent and safe to run twice at once.
The budget enforcer's task is training.tasks.budgets_enforce (billing decides, the jobs app stops)."""
from celery import shared_task

from billing.services.catalog import catalog_refresh as _catalog_refresh
from billing.services.reconcile import costs_reconcile as _costs_reconcile


@shared_task(name="billing.tasks.catalog_refresh", ignore_result=True, acks_late=True,
             autoretry_for=(Exception,), retry_backoff=60, max_retries=3)
def catalog_refresh():
    result = _catalog_refresh()
    return {"updated": len(result.updated), "failed": len(result.failed), "skipped": result.skipped}


@shared_task(name="billing.tasks.costs_reconcile", ignore_result=True, acks_late=True, expires=60)
def costs_reconcile():
    result = _costs_reconcile()
    return {"pods_checked": result.pods_checked, "differences": len(result.differences), "failed": result.failed}
