"""Roles: who may do what inside their organization.

| role            | read jobs, datasets, metrics | run jobs, upload datasets, templates | budgets |
|-----------------|------------------------------|--------------------------------------|---------|
| admin           | yes                          | yes                                  | yes     |
| engineer        | yes                          | yes                                  | read    |
| budget_manager  | yes                          | no                                   | yes     |
| viewer          | yes                          | no                                   | read    |

Isolation comes first and is separate: every queryset is filtered to the caller's organization
(`Membership`), so another organization's rows are 404, never 403.
"""
from __future__ import annotations

from dataclasses import dataclass

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Membership, Organization, Role

JOB_RUNNERS = frozenset({Role.ADMIN, Role.ENGINEER})
BUDGET_MANAGERS = frozenset({Role.ADMIN, Role.BUDGET_MANAGER})


@dataclass(frozen=True)
class Actor:
    """The caller as the rules see them: a user in one organization with one role."""

    user: object
    organization: Organization
    role: str

    @property
    def can_run_jobs(self) -> bool:
        return self.role in JOB_RUNNERS

    @property
    def can_manage_budgets(self) -> bool:
        return self.role in BUDGET_MANAGERS


def actor_for_user(user) -> Actor | None:
    """The user's first membership (one query), or None for anonymous users and users without one."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = (Membership.objects.select_related("organization").filter(user=user)
                  .order_by("created_at").first())
    return Actor(user, membership.organization, membership.role) if membership else None


def actor_for_request(request) -> Actor | None:
    """actor_for_user, cached on the request (permissions and views both ask)."""
    cached = getattr(request, "_brightrun_actor", False)
    if cached is False:
        cached = actor_for_user(request.user)
        request._brightrun_actor = cached
    return cached


class IsOrganizationMember(BasePermission):
    message = "your account belongs to no organization; ask an admin to add you to one"

    def has_permission(self, request, view):
        return actor_for_request(request) is not None


class CanRunJobsOrReadOnly(BasePermission):
    """Reads for every member; writes (create, cancel, stop, retry, notes, uploads, templates)
    for engineers and admins."""

    message = "your role can read but not run jobs; engineers and admins start, stop and change jobs"

    def has_permission(self, request, view):
        actor = actor_for_request(request)
        if actor is None:
            return False
        return request.method in SAFE_METHODS or actor.can_run_jobs
