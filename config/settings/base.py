from .env import BASE_DIR, VAR_DIR, env_bool, env_int, env_list, env_str
from .secret_key import embedded_secret_key

DEBUG = env_bool("DJANGO_DEBUG", False)
# DJANGO_SECRET_KEY, or (embedded default) a random key generated on first run and kept in
# var/secret_key (0600): no key is in the code. Serving beyond loopback needs a configured key
# (config/settings/secret_key.py); DEPLOYMENT=production refuses to start without one.
SECRET_KEY_CONFIGURED = bool(env_str("DJANGO_SECRET_KEY"))
if SECRET_KEY_CONFIGURED:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
elif env_str("DEPLOYMENT") == "production":
    SECRET_KEY = ""  # config/settings/security.py refuses to start
else:
    SECRET_KEY = embedded_secret_key(VAR_DIR)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "accounts",
    "training",
    "billing",
    "validation",
    "artifacts",
    "finetuning",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Public base URL of this control plane, as a pod sees it (webhook callbacks go to
# <PUBLIC_BASE_URL>/api/v1/pod-events/). Embedded default: the local daphne.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# Datasets
DATASET_MAX_BYTES = env_int("DATASET_MAX_BYTES", 100 * 1024 * 1024)
DATASET_DEFAULT_VAL_FRACTION = float(env_str("DATASET_DEFAULT_VAL_FRACTION", "0.1"))
DATASET_DEFAULT_SPLIT_SEED = env_int("DATASET_DEFAULT_SPLIT_SEED", 13)
# The validation split is topped up to the gates' minimum evidence (VALIDATION_MIN_CONVERSATIONS
# conversations, ceil(VALIDATION_MIN_ITEMS / VALIDATION_MIN_RATED_SHARE) replies) while training
# keeps at least 1 - DATASET_MAX_VAL_SHARE of the conversations (training/datasets/split.py).
DATASET_MAX_VAL_SHARE = float(env_str("DATASET_MAX_VAL_SHARE", str(1 / 3)))
DATASET_VAL_MINIMUM = env_bool("DATASET_VAL_MINIMUM", True)
# Files one import may take (CLI paths, API `file` parts); they become one dataset. Django's own
# limit on the files of a request sits a little above, so the importer's clearer message answers.
DATASET_MAX_FILES = env_int("DATASET_MAX_FILES", 50)
DATA_UPLOAD_MAX_NUMBER_FILES = DATASET_MAX_FILES + 10
# A dataset whose background statistics (exact token counts) are still pending after this many
# seconds has its task sent again by reconcile (the broker may have lost it).
DATASET_STATS_REDRIVE_S = env_int("DATASET_STATS_REDRIVE_S", 600)
# Uploads above Django's in-memory limit spill to a temp file; the importer reads either.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# A tokenizer directory or tokenizer.json used for exact token counts (needs the `tokenizers`
# package, which the `train` extra installs). Without it token counts are estimates and say so.
TOKENIZER_PATH = env_str("TOKENIZER_PATH")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
