from corsheaders.defaults import default_headers

from .env import env_list

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # JSON with limits: no NaN, nesting <= 32 levels, integers within bigint (400, not 500).
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.schema.ApiAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Bright Run LoRA training pipeline API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Separate request and response components: a field that is read-only or has a default is
    # not required in the request (generated clients otherwise demand `client` and `notes`).
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "config.schema.optional_request_defaults"],
}
# The Next.js frontend's origin(s), e.g. https://app.example.com
CORS_ALLOWED_ORIGINS = env_list("FRONTEND_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = True
# openai-node (and other Stainless-generated clients) in a browser: the request headers it sends
# must be allowed by the preflight, and the response headers it reads exposed (x-should-retry
# stops its retries of a refusal; x-idempotent-replay tells a replayed create).
CORS_ALLOW_HEADERS = (
    *default_headers,
    "idempotency-key",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-stainless-arch",
    "x-stainless-async",
    "x-stainless-custom-poll-interval",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-poll-helper",
    "x-stainless-raw-response",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
CORS_EXPOSE_HEADERS = ["x-should-retry", "x-idempotent-replay", "retry-after", "content-disposition", "x-request-id"]
