from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.forms import AdminLoginForm
from config.api_errors import api_fallback
from config.health import healthz

# The admin's login says when an account is locked out (accounts/lockout.py).
admin.site.login_form = AdminLoginForm
# JSON, not Django's HTML page, for an Http404 or an unhandled error under /api/ and /v1/.
handler404 = "config.api_errors.page_not_found"
handler500 = "config.api_errors.server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("training.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("artifacts.urls")),
    path("v1/", include("finetuning.urls")),  # the OpenAI-compatible fine-tuning API
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Any other /api/ path: the slash-less spelling of a route, or a JSON 404 (no pattern
    # group, so tests/api/test_api_isolation.py walks it as one plain route).
    re_path(r"^api/.*$", api_fallback),
    path("", include("dashboard.urls")),
]

if settings.DASHBOARD_SERVE_STATIC:
    # daphne serves no files: the dashboard's CSS, JS and vendored chart library come through
    # Django from the apps' static folders (see config/settings/dashboard.py).
    urlpatterns.append(re_path(r"^%s(?P<path>.*)$" % settings.STATIC_URL.lstrip("/"), serve_static, {"insecure": True}))
