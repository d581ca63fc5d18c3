import dj_database_url

from .env import VAR_DIR, env_int, env_str

# DATABASE_URL: postgresql://user:pass@host:5432/name for the full stack (psycopg 3).
# Unset: SQLite in the var/ folder (embedded default).
DATABASE_URL = env_str("DATABASE_URL")
EMBEDDED_DATABASE = DATABASE_URL is None

if EMBEDDED_DATABASE:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "db.sqlite3"),
            # Several processes (daphne, worker, beat) share the file: wait for locks instead of
            # failing, and use WAL so readers do not block the writer.
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"},
        }
    }
else:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))}
    DATABASES["default"].setdefault("OPTIONS", {})
