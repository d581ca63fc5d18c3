"""Fixtures for the API tests: users of each role, and jobs driven through real pod events."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from tests.jobs.factories import make_running_job, signed_post, training_events


@pytest.fixture
def client_as(make_user):
    """client_as("alice", org, role) → an APIClient authenticated with that user's token."""
    from rest_framework.authtoken.models import Token

    def make(username, organization, role=Role.ENGINEER):
        user = make_user(username, organization, role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        client.user = user
        return client

    return make


def drive(job, steps=6, checkpoint_every=2, until=None):
    """Post a realistic stream of pod events for `job` through the signed webhook; `until` stops
    before the event of that index (a job still running)."""
    from django.test import Client

    client = Client()
    events = training_events(job, steps=steps, checkpoint_every=checkpoint_every)
    for event in events[:until]:
        response = signed_post(client, event, job.webhook_secret)
        assert response.status_code == 200, response.content
    job.refresh_from_db()
    return job


@pytest.fixture
def finished_job(organization, make_user):
    owner = make_user("owner", organization)
    job = make_running_job(organization, status="provisioning", created_by=owner, name="acme-finished-job",
                           client="acme-client")
    return drive(job)


@pytest.fixture
def running_job(organization):
    job = make_running_job(organization, status="provisioning", name="acme-running-job", client="acme-client")
    return drive(job, steps=6, until=8)
