"""Billing's domain errors (DomainError: code, message a person can act on, HTTP status)."""
from core.errors import DomainError


class BudgetExceeded(DomainError):
    """Starting this job could push the month's spend past a hard-capped budget."""

    code = "budget_exceeded"
    http_status = 402


class EstimateError(DomainError):
    """The configuration cannot be estimated (unknown dataset, GPU type without a price...)."""

    code = "estimate_error"
    http_status = 400


class PriceRefreshError(DomainError):
    code = "price_refresh_failed"
    http_status = 502


class SpotBidError(DomainError):
    """A spot job without a usable bid: refused at create, before anything is written."""

    code = "spot_bid_required"
    http_status = 400
