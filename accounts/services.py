from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Membership, Organization, Role

DEFAULT_ORG_SLUG = "default"


def organization_get_or_create(*, slug: str = DEFAULT_ORG_SLUG, name: str | None = None) -> Organization:
    org, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name or slug.replace("-", " ").title()})
    return org


@transaction.atomic
def membership_grant(*, user, organization: Organization, role: str = Role.ENGINEER) -> Membership:
    membership, created = Membership.objects.get_or_create(user=user, organization=organization, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def system_user():
    """The user that command-line imports and jobs are attributed to when nobody is named."""
    User = get_user_model()
    user, _ = User.objects.get_or_create(username="cli", defaults={"email": "cli@localhost"})
    return user
