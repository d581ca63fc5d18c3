"""`python -m config.serve [daphne's arguments]`: daphne, with request bodies limited before daphne
buffers them. What `manage.py runall` and the image start.

daphne (through Twisted) reads a whole request body before it calls the application, then hands
all of it to the application's queue at once: the ASGI guard alone (config/asgi_guards.py) would
answer 413 only after the body sat in memory. Here the request class daphne uses is replaced by
one that decides the limit (config/body_limits.py) as soon as the headers are in: a
Content-Length over it is answered 413 with the common JSON error and the connection is closed
without reading the body; a body without Content-Length is counted as it arrives and cut off past
the limit. Below the limit nothing changes.

Also refuses to start bound to a non-loopback address without DJANGO_SECRET_KEY
(config/settings/secret_key.py).
"""
from __future__ import annotations

import json
import os
import sys


def _bind_hosts(argv: list[str]) -> list[str]:
    hosts = []
    for i, arg in enumerate(argv):
        if arg in ("-b", "--bind") and i + 1 < len(argv):
            hosts.append(argv[i + 1])
        elif arg.startswith("--bind="):
            hosts.append(arg.split("=", 1)[1])
        elif arg in ("-e", "--endpoint") and i + 1 < len(argv):
            for part in argv[i + 1].split(":"):
                if part.startswith("interface="):
                    hosts.append(part.split("=", 1)[1].replace("\\:", ":"))
    return hosts


def install() -> None:
    """Replace daphne's request class by the limited one (idempotent)."""
    from daphne import http_protocol

    if getattr(http_protocol.WebRequest, "_brightrun_limited", False):
        return

    from config.body_limits import limit_for

    base = http_protocol.WebRequest

    class LimitedRequest(base):
        _brightrun_limited = True
        _refused = False
        _limit = None
        _seen = 0

        def gotLength(self, length):
            path = (self.channel._path or b"/").split(b"?", 1)[0].decode("latin-1")
            method = (self.channel._command or b"GET").decode("latin-1")
            headers = [(name, value) for name, values in self.requestHeaders.getAllRawHeaders() for value in values]
            self._limit = limit_for(method, path, headers)
            if length is not None and length > self._limit.max_bytes:
                self._refuse(length)
                return
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self._refused:
                return
            self._seen += len(data)
            if self._limit is not None and self._seen > self._limit.max_bytes:
                self._refuse(self._seen)
                return
            super().handleContentChunk(data)

        def requestReceived(self, command, path, version):
            if self._refused:
                return
            super().requestReceived(command, path, version)

        def _refuse(self, size: int) -> None:
            import io

            self._refused = True
            self.content = io.BytesIO()
            body = json.dumps({"error": {"code": "too_large", "message": self._limit.message(size),
                                         "detail": {"limit_bytes": self._limit.max_bytes}}}).encode()
            head = (f"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            transport = self.channel.transport
            if transport is not None:
                transport.write(head + body)
                transport.loseConnection()  # stops reading: the rest of the body is never taken in

    http_protocol.WebRequest = LimitedRequest


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    from config.settings.secret_key import is_loopback, refusal

    if not settings.SECRET_KEY_CONFIGURED:
        for host in _bind_hosts(argv):
            if not is_loopback(host):
                sys.stderr.write(refusal(host) + "\n")
                raise SystemExit(2)
    install()
    from daphne.cli import CommandLineInterface

    sys.argv = ["daphne", *argv]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main(sys.argv[1:])
