"""How the control plane is served, and its database connections (docs/performance.md)."""
import importlib.util
import os

from .database import DATABASES, EMBEDDED_DATABASE
from .env import env_bool, env_int

# daphne processes `manage.py runall` starts on one shared listening socket (the kernel spreads
# connections over them; websockets meet through the Redis channel layer). With PostgreSQL, one
# per core and at least 2. The embedded SQLite default keeps one (one writer at a time anyway).
WEB_WORKERS = env_int("WEB_WORKERS", 1 if EMBEDDED_DATABASE else max(2, min(4, os.cpu_count() or 1)))

# Under ASGI, Django runs each request's sync code in a thread of its own, so a persistent
# connection (CONN_MAX_AGE > 0) is opened per request and left behind with its thread: under load
# PostgreSQL runs out of connections ("too many clients"), and CONN_MAX_AGE = 0 pays a new backend
# per request. The served processes use psycopg's pool instead (`manage.py runall` sets
# DATABASE_POOL=1 for them; Celery keeps its per-process persistent connection: a pool's threads
# would not survive the prefork).
# Without the psycopg-pool package they fall back to a connection per request (slower, no leak).
DATABASE_POOL = env_bool("DATABASE_POOL", False) and not EMBEDDED_DATABASE
if DATABASE_POOL:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASE_POOL and importlib.util.find_spec("psycopg_pool") is not None:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 8),
        "timeout": env_int("DATABASE_POOL_TIMEOUT_S", 20),
    }

# The pod-event path's hand-written statements are bound on the server and prepared per connection
# (training/services/hot_sql.py). 0 behind a pooler that drops prepared statements (PgBouncer
# before 1.21 in transaction mode); they are then only bound on the server.
DATABASE_PREPARE_STATEMENTS = env_bool("DATABASE_PREPARE_STATEMENTS", True)

# Freeze the objects loaded at start out of the cyclic collector's reach in the web processes
# (config/asgi.py): full collections no longer walk them.
WEB_GC_FREEZE = env_bool("WEB_GC_FREEZE", True)

# Metering after pod events that move nothing (metrics, logs, checkpoints) at most this often per
# job (billing.services.jobs.job_cost_update); moves always meter, the beat task every 30 s.
BILLING_EVENT_METER_INTERVAL_S = env_int("BILLING_EVENT_METER_INTERVAL_S", 5)

# POST /api/v1/pod-events/ answered in front of Django's middleware stack (training/webhooks_asgi.py,
# config/asgi.py): the same view, without the middleware's thread hops. 0 sends it through Django.
POD_EVENTS_FAST_PATH = env_bool("POD_EVENTS_FAST_PATH", True)
# Threads the lean path gives pod events' database work, per web process: as many as the
# connection pool holds, so none waits for a connection while holding a thread.
POD_EVENTS_THREADS = env_int("POD_EVENTS_THREADS", env_int("DATABASE_POOL_MAX_SIZE", 8))

# Request bodies (config/body_limits.py): refused by Content-Length before any is read (413), in
# daphne itself when served by `python -m config.serve` (runall, the image), and by an ASGI guard.
# A request with no credential at all gets at most ANON_BODY_MAX_BYTES; dataset uploads get
# DATASET_MAX_BYTES; other credentialed requests REQUEST_BODY_MAX_BYTES.
ANON_BODY_MAX_BYTES = env_int("ANON_BODY_MAX_BYTES", 64 * 1024)
REQUEST_BODY_MAX_BYTES = env_int("REQUEST_BODY_MAX_BYTES", 10 * 1024 * 1024)
