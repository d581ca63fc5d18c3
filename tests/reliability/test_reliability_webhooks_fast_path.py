"""Issue 10's webhook tests that post through the `client` fixture (forgery at scale, late
events), again with pod events through the lean ASGI path in front of Django
(training.webhooks_asgi) instead of Django's handler."""
import inspect

import pytest

from tests.jobs.asgi_client import FastPathClient
from tests.reliability import test_reliability_webhooks as served_by_django


def _again(test):
    """`test` collected here under its own name, with committed rows: the lean path's database
    work runs in a thread of its own (as Django's does), which cannot see a test's transaction.
    (A new function: marking `test` itself would change it in its own module too.)"""
    def run(**fixtures):
        return test(**fixtures)

    run.__name__, run.__doc__, run.__signature__ = test.__name__, test.__doc__, inspect.signature(test)
    run.pytestmark = [m for m in getattr(test, "pytestmark", []) if m.name == "slow"]  # slow there, slow here
    return pytest.mark.django_db(transaction=True)(run)


for _name, _test in list(vars(served_by_django).items()):
    if _name.startswith("test_") and "client" in inspect.signature(_test).parameters:
        globals()[_name] = _again(_test)


@pytest.fixture
def client(client):
    return FastPathClient(client)
