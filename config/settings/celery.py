from .env import env_bool, env_int, env_str
from .redis import _KOMBU_REDIS_URL

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", _KOMBU_REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# A task touching a pod or money is acknowledged only after it finishes, and re-queued if the
# worker dies mid-task; each such task is idempotent.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# On a lost broker connection, a running acks-late task finishes (Celery 5's default) rather than
# being killed; its ack cannot reach the broker, so it is given back and runs again (idempotent).
# Killing it would save that second run but abort provisioning calls for a short Redis blip.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers an unacknowledged task after the visibility timeout; it must exceed the longest
# wait a delivered task can have before its ack: its countdown (at most 480 s: job_notify's
# backoff), a wait for a free pool process (up to one hard time limit) and its own run (the hard
# time limit, 900 s), or a slow task is run twice at once. It only governs a worker process that
# died (kill -9, OOM): on a broker restart the worker gives its unacknowledged tasks back as soon
# as it reconnects (config/kombu_transport.py), so a shorter timeout would not shorten that.
CELERY_BROKER_VISIBILITY_TIMEOUT_S = env_int("CELERY_BROKER_VISIBILITY_TIMEOUT_S", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT_S}
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT_S", 900)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT_S", 840)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Tests may run tasks inline (no worker); the end-to-end tests use a real worker.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# One queue name per deployment; tests give each run its own so parallel runs never share tasks.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# The worker's kombu transport (config/kombu_transport.py: keeps unacknowledged tasks across a Redis
# restart); empty = kombu's own. Only `celery worker` applies it (config/celery.py).
CELERY_WORKER_BROKER_TRANSPORT = env_str("CELERY_WORKER_BROKER_TRANSPORT", "config.kombu_transport:Transport")
# Pod control (launch, resume, stop, terminate) on `<default queue><suffix>`, with its own worker
# (config/celery_routes.py): `celery worker -Q celery.pods` besides the default `-Q celery`.
CELERY_POD_QUEUE_SUFFIX = env_str("CELERY_POD_QUEUE_SUFFIX", ".pods")
CELERY_TASK_ROUTES = ("config.celery_routes.route",)
