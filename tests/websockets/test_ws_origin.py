"""The websocket Origin check compares scheme, host and port (config/ws_guard.py)."""
import pytest

from config.ws_guard import origin_allowed

FRONTEND = ["https://app.example.com", "http://localhost:3000"]
HOSTS = ["api.example.com", "127.0.0.1"]


@pytest.mark.parametrize("origin, host, scheme, ok", [
    ("https://app.example.com", "api.example.com", "wss", True),
    ("https://app.example.com:443", "api.example.com", "wss", True),
    ("https://app.example.com:8443", "api.example.com", "wss", False),  # the port counts
    ("http://app.example.com", "api.example.com", "ws", False),  # the scheme counts
    ("http://localhost:3000", "api.example.com", "ws", True),
    ("http://localhost:3001", "api.example.com", "ws", False),
    ("https://api.example.com", "api.example.com", "wss", True),  # our own origin
    ("http://api.example.com", "api.example.com", "wss", False),
    ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),
    ("http://127.0.0.1:8001", "127.0.0.1:8000", "ws", False),
    ("http://127.0.0.1", "127.0.0.1:8000", "ws", False),
    ("https://evil.example", "evil.example", "wss", False),  # Host not ours
    ("null", "api.example.com", "ws", False),
    ("javascript:alert(1)", "api.example.com", "ws", False),
])
def test_origin_allowed(origin, host, scheme, ok):
    assert origin_allowed(origin, host_header=host, scheme=scheme, frontend_origins=FRONTEND,
                          allowed_hosts=HOSTS) is ok
