"""What the dashboard reads from billing: the GPU catalog, budgets and monthly spend."""
from __future__ import annotations

from django.utils import timezone

from billing import selectors as billing_selectors
from billing.models import Budget, GpuType


def gpu_catalog() -> list[dict]:
    """Active GPU types with their prices (billing.models.GpuType)."""
    return list(GpuType.objects.filter(active=True).order_by("display_name")
                .values("gpu_id", "display_name", "memory_gb", "secure_price", "community_price",
                        "secure_spot_price", "community_spot_price"))


def budgets_overview(*, organization) -> list[dict]:
    """Each active budget's status this month (billing.selectors.budget_status)."""
    month = billing_selectors.parse_month(None)
    out = []
    for budget in Budget.objects.filter(organization=organization, active=True).order_by("client", "pk"):
        status = billing_selectors.budget_status(budget=budget, month=month, now=timezone.now())
        out.append({"id": budget.pk, "client": budget.client or "(whole organization)", **status})
    return out


def spend_by_month(*, organization) -> list[dict]:
    return [{**r, "spent": str(r["spent"])} for r in billing_selectors.spend_by_month(organization=organization)]
