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


# Budget status keys the budgets page draws itself (heading, chart, alert list), not as a table row.
_BUDGET_OWN_ROWS = {"chart", "alerts", "thresholds", "id", "client", "limit", "hard_cap"}


def budgets_overview(*, organization) -> list[dict]:
    """Each active budget's status this month (billing.selectors.budget_status)."""
    month = billing_selectors.parse_month(None)
    out = []
    for budget in Budget.objects.filter(organization=organization, active=True).order_by("client", "pk"):
        status = billing_selectors.budget_status(budget=budget, month=month, now=timezone.now())
        # The label comes last: a status that carries its own (empty) "client" must not blank it.
        row = {**status, "id": budget.pk, "client": budget.client or "Whole organization"}
        row["details"] = [(k.replace("_", " ").capitalize(), human(v)) for k, v in status.items()
                          if k not in _BUDGET_OWN_ROWS]
        out.append(row)
    return out


def spend_by_month(*, organization) -> list[dict]:
    return [{**r, "spent": str(r["spent"])} for r in billing_selectors.spend_by_month(organization=organization)]


def human(value) -> str:
    """A value as people read it: floats rounded, mappings and lists spelled out, never a repr."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{str(k).replace('_', ' ')}: {human(v)}" for k, v in value.items()) or "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(human(v) for v in value) or "–"
    return str(value)


def stage_strip(job, stages) -> list[dict]:
    """The pod stages with a class each, exact for every state: a completed job has them all done
    (training marked when it was stopped early), a failed or cancelled one has the stage it ended in
    marked so and the earlier ones done, a live one has its current stage marked."""
    from training import states

    codes = [code for code, _ in stages]
    at = codes.index(job.stage) if job.stage in codes else -1
    out = []
    for i, (code, label) in enumerate(stages):
        cls, note = "", ""
        if job.status == states.COMPLETED:
            cls = "done"
            if code == states.TRAINING and (job.stop_requested or (job.result or {}).get("stopped_early")):
                cls, note = "done stopped", "stopped early"
        elif job.status in (states.FAILED, states.CANCELLED):
            cls = "done" if i < at else (job.status if i == at else "")
            note = job.status if i == at else ""
        elif i < at:
            cls = "done"
        elif i == at:
            cls = "current"
        out.append({"code": code, "label": label, "cls": cls, "note": note})
    return out
