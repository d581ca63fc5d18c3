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
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Bright Run LoRA training pipeline API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}
# The Next.js frontend's origin(s), e.g. https://app.example.com
CORS_ALLOWED_ORIGINS = env_list("FRONTEND_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = True
