"""ASGI entry point for daphne: HTTP through Django (pod events through a lean path in front of it),
websockets through Channels."""
import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config.asgi_guards import BodyLimit, LoopbackOnly  # noqa: E402
from config.ws_guard import OriginGuard  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from training.webhooks_asgi import PodEventsApp  # noqa: E402

# A websocket's Origin, when sent, must be this server's own (scheme, host and port; the host in
# ALLOWED_HOSTS) or a configured frontend origin (FRONTEND_ORIGINS, which CORS allows for HTTP);
# config/ws_guard.py.
_allowed_hosts = list(settings.ALLOWED_HOSTS)
if settings.DEBUG and not settings.ALLOWED_HOSTS:
    _allowed_hosts += [".localhost", "127.0.0.1", "[::1]"]

# Pod events skip Django's middleware stack (the same view, called directly; see
# training/webhooks_asgi.py): most of an event's CPU went to the middleware's thread hops.
http_app = PodEventsApp(django_asgi_app) if settings.POD_EVENTS_FAST_PATH else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": OriginGuard(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
                                 frontend_origins=settings.CORS_ALLOWED_ORIGINS, allowed_hosts=_allowed_hosts),
    }
)
# Bodies over the route's limit are refused before they are read (config/body_limits.py), and a
# machine-local generated secret key never serves beyond loopback (config/settings/secret_key.py).
application = BodyLimit(application)
if not settings.SECRET_KEY_CONFIGURED:
    application = LoopbackOnly(application)


# Everything loaded so far (Django, the apps, their modules: most of the process's objects) lives
# as long as the process; freezing it keeps the cyclic collector from walking it on every full
# collection. Under 1,000 pod events/s the web processes' full collections paused everything for
# 96-137 ms (three per process in 40 s); frozen, 25-27 ms (docs/performance.md).
if settings.WEB_GC_FREEZE:
    gc.collect()
    gc.freeze()
