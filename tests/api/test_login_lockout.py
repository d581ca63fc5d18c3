"""Issue 16 item 7: the token endpoint, the dashboard login and the admin login share one lockout
(accounts/lockout.py, counted in Redis): after LOGIN_MAX_FAILURES wrong passwords the right one is
refused too, until the window passes."""
import uuid

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_counters(settings):
    settings.LOGIN_LOCKOUT_PREFIX = f"test-login-{uuid.uuid4().hex}"
    settings.LOGIN_MAX_FAILURES = 5
    settings.LOGIN_MAX_FAILURES_PER_IP = 12
    yield
    from accounts.lockout import _client

    client = _client()
    for key in client.scan_iter(f"{settings.LOGIN_LOCKOUT_PREFIX}:*"):
        client.delete(key)


def _token(api_client, username, password):
    return api_client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")


@pytest.mark.slow
def test_token_endpoint_locks_after_five_failures(api_client, organization, make_user):
    make_user("alice", organization)
    for _ in range(5):
        assert _token(api_client, "alice", "wrong").status_code == 400
    locked = _token(api_client, "alice", "pw-alice")
    assert locked.status_code == 429, locked.json()
    assert locked.json()["error"]["code"] == "login_locked" and int(locked["Retry-After"]) > 0
    # Another user from the same address is not locked by alice's failures.
    make_user("bob", organization)
    assert _token(api_client, "bob", "pw-bob").status_code == 200


@pytest.mark.slow
def test_a_success_clears_the_count(api_client, organization, make_user):
    make_user("carol", organization)
    for _ in range(4):
        assert _token(api_client, "carol", "wrong").status_code == 400
    assert _token(api_client, "carol", "pw-carol").status_code == 200
    for _ in range(4):
        assert _token(api_client, "carol", "wrong").status_code == 400
    assert _token(api_client, "carol", "pw-carol").status_code == 200


@pytest.mark.slow
def test_dashboard_and_admin_logins_share_the_lockout(api_client, organization, make_user):
    from django.contrib.auth import get_user_model

    user = make_user("dave", organization)
    get_user_model().objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    browser = Client()
    for _ in range(3):
        assert browser.post("/login/", {"username": "dave", "password": "wrong"}).status_code == 200
    for _ in range(2):
        assert browser.post("/admin/login/", {"username": "dave", "password": "wrong"}).status_code == 200
    page = browser.post("/login/", {"username": "dave", "password": "pw-dave"})
    assert page.status_code == 200 and "too many failed sign-ins" in page.content.decode()
    page = browser.post("/admin/login/?next=/admin/", {"username": "dave", "password": "pw-dave"})
    assert page.status_code == 200 and "too many failed sign-ins" in page.content.decode()
    assert _token(api_client, "dave", "pw-dave").status_code == 429


@pytest.mark.slow
def test_many_usernames_from_one_address_are_throttled(api_client, organization, make_user):
    make_user("erin", organization)
    for n in range(12):
        assert _token(api_client, f"nobody{n}", "wrong").status_code == 400
    assert _token(api_client, "erin", "pw-erin").status_code == 429
