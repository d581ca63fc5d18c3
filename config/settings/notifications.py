from .env import env_bool, env_int, env_str

# E-mail through Django's backends. Embedded default: printed to the console.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "brightrun@localhost")
# Slack incoming webhook for job and budget notifications; unset: no Slack messages.
SLACK_WEBHOOK_URL = env_str("SLACK_WEBHOOK_URL")
