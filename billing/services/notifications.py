"""Delivering budget notices: e-mail (Django mail) and Slack (incoming webhook). The BudgetAlert
row is the in-app record and exists before delivery; what each channel answered is written back."""
from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from accounts.models import Membership, Role
from billing.models import BudgetAlert

logger = logging.getLogger(__name__)

SLACK_TIMEOUT_S = 5


def alert_recipients(alert: BudgetAlert) -> list[str]:
    budget = alert.budget
    emails = set(
        Membership.objects.filter(organization_id=budget.organization_id, role__in=[Role.ADMIN, Role.BUDGET_MANAGER])
        .exclude(user__email="").values_list("user__email", flat=True)
    )
    emails.update(e.strip() for e in (budget.notify_emails or "").split(",") if e.strip())
    return sorted(emails)


def alert_subject(alert: BudgetAlert) -> str:
    budget = alert.budget
    who = f"client {budget.client}" if budget.client else budget.organization.name
    if alert.kind == BudgetAlert.KIND_THRESHOLD:
        return f"[Bright Run] Budget {alert.threshold}% reached: {who}, {alert.month:%B %Y}"
    return f"[Bright Run] Job stopped at the budget cap: {who}, {alert.month:%B %Y}"


def alert_deliver(*, alert_id) -> dict:
    """Send one alert by e-mail and Slack. Safe to call again: it re-sends (callers call it once,
    on the commit that created the alert)."""
    alert = BudgetAlert.objects.select_related("budget", "budget__organization").get(pk=alert_id)
    delivered: dict[str, str] = {}
    recipients = alert_recipients(alert)
    if recipients:
        try:
            send_mail(alert_subject(alert), alert.message, settings.DEFAULT_FROM_EMAIL, recipients)
            delivered["email"] = f"ok: {len(recipients)} recipient(s)"
        except Exception as exc:  # noqa: BLE001 - a mail server down must not lose the Slack message
            logger.exception("budget alert %s: e-mail failed", alert_id)
            delivered["email"] = f"error: {exc}"
    else:
        delivered["email"] = "skipped: no admin or budget manager with an e-mail address"
    url = getattr(settings, "SLACK_WEBHOOK_URL", None)
    if url:
        try:
            response = requests.post(url, json={"text": f"*{alert_subject(alert)}*\n{alert.message}"},
                                     timeout=SLACK_TIMEOUT_S)
            delivered["slack"] = "ok" if response.ok else f"error: HTTP {response.status_code}"
        except requests.RequestException as exc:
            logger.warning("budget alert %s: Slack failed: %s", alert_id, exc)
            delivered["slack"] = f"error: {exc}"
    else:
        delivered["slack"] = "skipped: SLACK_WEBHOOK_URL is not set"
    BudgetAlert.objects.filter(pk=alert_id).update(delivered=delivered)
    return delivered


def alert_deliver_on_commit(alert_id) -> None:
    def deliver():
        try:
            alert_deliver(alert_id=alert_id)
        except Exception:  # noqa: BLE001
            logger.exception("could not deliver budget alert %s", alert_id)

    transaction.on_commit(deliver)
