"""Who am I, API tokens for the frontend, and websocket tickets for token clients."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import OrganizationScopedMixin
from core.permissions import IsOrganizationMember
from training.serializers import MeSerializer, WsTicketSerializer
from training.ws_auth import ws_ticket_issue


class MeApi(OrganizationScopedMixin, APIView):
    """The caller, their organization and role, and what the role allows (the frontend hides
    what it may not do; the API refuses it anyway)."""

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        actor = self.actor
        return Response({"username": request.user.username,
                         "organization": {"id": str(actor.organization.pk), "name": actor.organization.name,
                                          "slug": actor.organization.slug},
                         "role": actor.role,
                         "permissions": {"read": True, "run_jobs": actor.can_run_jobs,
                                         "manage_budgets": actor.can_manage_budgets}})


class WsTicketApi(APIView):
    """A single-use ticket to open a websocket within WS_TICKET_TTL_S seconds:
    `/ws/jobs/<id>/?ticket=...` or `/ws/jobs/?ticket=...`."""

    permission_classes = [IsOrganizationMember]

    @extend_schema(request=None, responses={201: WsTicketSerializer})
    def post(self, request):
        ticket = ws_ticket_issue(user=request.user)
        return Response({"ticket": ticket, "expires_in": settings.WS_TICKET_TTL_S,
                         "urls": {"job": "/ws/jobs/{job_id}/?ticket=" + ticket, "jobs": "/ws/jobs/?ticket=" + ticket}},
                        status=status.HTTP_201_CREATED)


class TokenApi(ObtainAuthToken):
    """Exchange a username and password for the API token (Authorization: Token <key>)."""

    def post(self, request, *args, **kwargs):
        from rest_framework.exceptions import ValidationError

        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            state = getattr(request, "login_locked", None)
            if state is None:
                raise
            # Locked out (accounts/lockout.py): 429 with when to try again, not "wrong password".
            response = Response({"error": {"code": "login_locked", "message": state.message,
                                           "detail": {"retry_after_s": state.retry_after_s}}},
                                status=status.HTTP_429_TOO_MANY_REQUESTS)
            response["Retry-After"] = str(state.retry_after_s)
            return response
