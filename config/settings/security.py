"""Production hardening. DEPLOYMENT=production turns on HTTPS-only cookies, HSTS and the
proxy header, and refuses to start without a real secret key; the embedded default keeps plain
HTTP on localhost. `manage.py check --deploy` passes with production settings (tested)."""
import os

from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_str

DEPLOYMENT = env_str("DEPLOYMENT", "embedded")
if DEPLOYMENT not in {"embedded", "production"}:
    raise ImproperlyConfigured(f"DEPLOYMENT={DEPLOYMENT!r}: use 'embedded' or 'production'")

if DEPLOYMENT == "production":
    if not os.environ.get("DJANGO_SECRET_KEY"):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DEPLOYMENT=production "
                                   "(50+ random characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(64))')")
    if env_bool("DJANGO_DEBUG", False):
        raise ImproperlyConfigured("DJANGO_DEBUG must be off when DEPLOYMENT=production")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # TLS ends at the load balancer, which sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The health check is probed over plain HTTP inside the private network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^api/v1/pod-events/$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# Login throttling and lockout (accounts/lockout.py): the token endpoint, dashboard and admin
# logins all authenticate through this backend.
AUTHENTICATION_BACKENDS = ["accounts.backends.LockoutModelBackend"]
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)
LOGIN_MAX_FAILURES_PER_IP = env_int("LOGIN_MAX_FAILURES_PER_IP", 50)
LOGIN_LOCKOUT_WINDOW_S = env_int("LOGIN_LOCKOUT_WINDOW_S", 900)
LOGIN_LOCKOUT_PREFIX = env_str("LOGIN_LOCKOUT_PREFIX", "brightrun:login")
