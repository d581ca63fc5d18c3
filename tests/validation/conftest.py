"""The real job stack (tests/jobs/conftest.py) and role clients (tests/api/conftest.py) for the
end-to-end report test."""
from tests.api.conftest import client_as  # noqa: F401
from tests.jobs.conftest import job_stack, tiny_model_path  # noqa: F401
