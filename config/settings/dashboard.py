"""The dashboard, the API's extras (token and ticket auth, schema UI) and the websockets' limits."""
from .api import CORS_ALLOWED_ORIGINS, SPECTACULAR_SETTINGS
from .base import CSRF_TRUSTED_ORIGINS
from .env import env_bool, env_float, env_int

LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:jobs"
LOGOUT_REDIRECT_URL = "dashboard:login"

# The frontend posts with a token (no CSRF involved); a frontend origin that also uses the
# session (e.g. a same-site deployment) must be trusted for CSRF as well.
for _origin in CORS_ALLOWED_ORIGINS:
    if _origin not in CSRF_TRUSTED_ORIGINS:
        CSRF_TRUSTED_ORIGINS.append(_origin)

# Serve /static/ from the apps' static folders through Django (daphne serves no files by
# itself). Fine for the embedded mode and a small deploy; put a CDN or whitenoise in front
# for a large one and turn this off.
DASHBOARD_SERVE_STATIC = env_bool("DASHBOARD_SERVE_STATIC", True)

# Charts: at most this many points per series, however long the job ran.
METRIC_SERIES_MAX_POINTS = env_int("METRIC_SERIES_MAX_POINTS", 500)
METRIC_SERIES_MAX_POINTS_LIMIT = 5000
# Websockets: metric/progress messages to one client for one job, at most this many per second.
WS_METRICS_MAX_PER_S = env_float("WS_METRICS_MAX_PER_S", 10.0)
# Single-use tickets the API issues to token clients for opening a websocket.
WS_TICKET_TTL_S = env_int("WS_TICKET_TTL_S", 60)
# Events in the websocket snapshot and on the job page.
JOB_RECENT_EVENTS = env_int("JOB_RECENT_EVENTS", 50)

# Swagger UI and ReDoc assets served from the drf-spectacular-sidecar package (no CDN).
SPECTACULAR_SETTINGS.update({"SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
                             "REDOC_DIST": "SIDECAR"})
SPECTACULAR_SETTINGS.setdefault("COMPONENT_SPLIT_REQUEST", True)
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update({
    "CloudTypeEnum": "training.models.jobs.CloudType",
    "PresetEnum": "training.models.jobs.Preset",
})
