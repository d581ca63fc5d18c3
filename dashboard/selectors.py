"""What the dashboard reads from billing, behind a check: billing is built alongside and these
pages must render (with a placeholder) when a piece of it is not there."""
from __future__ import annotations

import importlib.util
import logging

from django.apps import apps
from django.utils import timezone

logger = logging.getLogger(__name__)


def _has(module: str) -> bool:
    try:
        return apps.is_installed("billing") and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def gpu_catalog() -> list[dict]:
    """Active GPU types with their prices (billing.models.GpuType), or [] without billing."""
    if not _has("billing.models"):
        return []
    from billing.models import GpuType

    return list(GpuType.objects.filter(active=True).order_by("display_name")
                .values("gpu_id", "display_name", "memory_gb", "secure_price", "community_price",
                        "secure_spot_price", "community_spot_price"))


def budgets_overview(*, organization) -> list[dict] | None:
    """Each active budget's status this month (billing.selectors.budget_status), or None when
    billing does not expose it."""
    if not _has("billing.selectors"):
        return None
    try:
        from billing import selectors as billing_selectors
        from billing.models import Budget
    except ImportError:  # pragma: no cover - billing mid-edit
        logger.warning("billing selectors unavailable", exc_info=True)
        return None
    if not hasattr(billing_selectors, "budget_status"):
        return None
    month = billing_selectors.parse_month(None)
    out = []
    for budget in Budget.objects.filter(organization=organization, active=True).order_by("client", "pk"):
        status = billing_selectors.budget_status(budget=budget, month=month, now=timezone.now())
        out.append({"id": budget.pk, "client": budget.client or "(whole organization)", **status})
    return out


def spend_by_month(*, organization) -> list[dict] | None:
    if not _has("billing.selectors"):
        return None
    from billing import selectors as billing_selectors

    if not hasattr(billing_selectors, "spend_by_month"):
        return None
    return [{**r, "spent": str(r["spent"])} for r in billing_selectors.spend_by_month(organization=organization)]
