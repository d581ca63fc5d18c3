from __future__ import annotations

from .models import Membership, Organization


def organization_for_user(user) -> Organization | None:
    """The user's organization (the first membership); None for users without one."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = Membership.objects.select_related("organization").filter(user=user).order_by("created_at").first()
    return membership.organization if membership else None


def role_for_user(user, organization: Organization) -> str | None:
    return Membership.objects.filter(user=user, organization=organization).values_list("role", flat=True).first()
