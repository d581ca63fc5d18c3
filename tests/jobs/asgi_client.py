"""A test client that sends POST /api/v1/pod-events/ through the lean ASGI path
(training.webhooks_asgi.PodEventsApp) and every other request to Django's test client."""
from __future__ import annotations

import json

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from training.webhooks_asgi import PATH, PodEventsApp


class NotDjango:
    """The app behind the lean path in these tests: a pod event must never reach it."""

    def __init__(self):
        self.calls = []

    async def __call__(self, scope, receive, send):
        self.calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class AsgiResponse:
    def __init__(self, status_code: int, headers: list, content: bytes):
        self.status_code = status_code
        self.headers = {k.decode().lower(): v.decode() for k, v in headers}
        self.content = content

    def json(self):
        return json.loads(self.content)


def asgi_post(app, path: str, body: bytes, headers: dict[str, str], *, chunk: int = 16 * 1024,
              host: str = "testserver") -> AsgiResponse:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", host.encode()), *((k.lower().encode(), str(v).encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
    }

    async def call():
        comm = ApplicationCommunicator(app, scope)
        parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
        for n, part in enumerate(parts, 1):
            await comm.send_input({"type": "http.request", "body": part, "more_body": n < len(parts)})
        start = await comm.receive_output(30)
        out = await comm.receive_output(30)
        await comm.wait(5)
        return AsgiResponse(start["status"], start["headers"], out.get("body", b""))

    return async_to_sync(call)()


class FastPathClient:
    """Django's test client, but pod events go through PodEventsApp (with `NotDjango` behind it)."""

    def __init__(self, django_client):
        self.django_client = django_client
        self.behind = NotDjango()
        self.app = PodEventsApp(self.behind)

    def post(self, path, data=b"", content_type="application/octet-stream", **extra):
        if path != PATH:
            return self.django_client.post(path, data=data, content_type=content_type, **extra)
        headers = {"content-type": content_type}
        for key, value in extra.items():
            if key.startswith("HTTP_"):
                headers[key[5:].replace("_", "-").lower()] = value
        body = data if isinstance(data, bytes) else str(data).encode()
        response = asgi_post(self.app, path, body, headers)
        assert not self.behind.calls, "a pod event fell through to Django"
        return response

    def __getattr__(self, name):
        return getattr(self.django_client, name)
