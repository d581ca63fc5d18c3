"""API keys are issued and revoked in the admin; the key is shown once and only its hash is kept."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_admin_issues_a_key_shown_once_and_revokes_it(admin_client, organization, make_user):
    from finetuning.models import ApiKey
    from finetuning.services import api_key_authenticate

    user = make_user("eng", organization)
    assert admin_client.get("/admin/finetuning/apikey/add/").status_code == 200
    response = admin_client.post("/admin/finetuning/apikey/add/", {"user": user.pk, "name": "CI"}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    raw = re.search(r"(sk-br-\S+)", " ".join(shown)).group(1)
    key = ApiKey.objects.get()
    assert key.user == user and key.name == "CI" and raw.startswith(key.prefix) and raw not in key.key_hash
    assert api_key_authenticate(raw_key=raw) == key
    page = admin_client.get("/admin/finetuning/apikey/").content.decode()
    assert key.prefix in page and raw not in page  # listed by prefix, never in full

    admin_client.post("/admin/finetuning/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None and api_key_authenticate(raw_key=raw) is None
