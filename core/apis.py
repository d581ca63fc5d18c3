"""What every training API view shares: the caller's organization and role, pagination."""
from __future__ import annotations

from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination

from core.permissions import Actor, CanRunJobsOrReadOnly, IsOrganizationMember, actor_for_request


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class MetricPagination(PageNumberPagination):
    page_size = 500
    page_size_query_param = "page_size"
    max_page_size = 5000


class OrganizationScopedMixin:
    """Every queryset is filtered to the caller's organization (lists, not only objects), so
    another organization's rows answer 404. Reads for every member; writes for job runners."""

    permission_classes = [IsOrganizationMember, CanRunJobsOrReadOnly]
    pagination_class = PagePagination

    @property
    def actor(self) -> Actor:
        actor = actor_for_request(self.request)
        if actor is None:
            raise PermissionDenied(IsOrganizationMember.message)
        return actor

    def get_organization(self):
        return self.actor.organization


def query_params(serializer_class, request) -> dict:
    """Validated query parameters (400 in the common error format when invalid)."""
    form = serializer_class(data=request.query_params)
    form.is_valid(raise_exception=True)
    return form.validated_data
