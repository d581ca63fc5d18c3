"""Websocket routes of the training app (included by config/routing.py)."""
from django.urls import path

from training.consumers import JobConsumer, JobListConsumer
from training.ws_auth import TicketAuthMiddleware

websocket_urlpatterns = [
    path("ws/jobs/<uuid:job_id>/", TicketAuthMiddleware(JobConsumer.as_asgi())),
    path("ws/jobs/", TicketAuthMiddleware(JobListConsumer.as_asgi())),
]
