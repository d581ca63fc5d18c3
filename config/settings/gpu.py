import json
import sys

from .env import VAR_DIR, env_float, env_int, env_str

# GPU_PROVIDER: "local" (runs gpu_worker as a subprocess on this machine) or "runpod".
GPU_PROVIDER = env_str("GPU_PROVIDER", "local")
POD_NAME_PREFIX = env_str("POD_NAME_PREFIX", "brightrun")
LOCAL_PODS_DIR = env_str("LOCAL_PODS_DIR", str(VAR_DIR / "pods"))
# The pod's command on the local provider (a JSON argv list); tests substitute a stand-in.
LOCAL_WORKER_COMMAND = json.loads(env_str("LOCAL_WORKER_COMMAND", "null") or "null") or [
    sys.executable, "-m", "gpu_worker", "run"]
# $/h each local pod is priced at (0: free). Billing then meters, reserves and alerts on local
# jobs exactly as on rented pods, so caps and reports can be exercised on one machine.
LOCAL_POD_RATE_PER_HOUR = env_float("LOCAL_POD_RATE_PER_HOUR", 0.0)

RUNPOD_API_KEY = env_str("RUNPOD_API_KEY")
RUNPOD_API_BASE_URL = env_str("RUNPOD_API_BASE_URL")  # unset: RunPod's own; tests: a local fake
RUNPOD_IMAGE = env_str("RUNPOD_IMAGE", "ghcr.io/brightrun/gpu-worker:0.1.0")
DEFAULT_GPU_TYPE = env_str("DEFAULT_GPU_TYPE", "NVIDIA H100 80GB HBM3")

# Base model used when a job names none. Embedded default: the tiny model built from the
# sample dataset (python -m gpu_worker make-tiny-model) in var/models/tiny-llama.
# Local model folders a job may name as its base_model (anything else must be a hub id).
MODELS_DIR = env_str("MODELS_DIR", str(VAR_DIR / "models"))
DEFAULT_BASE_MODEL = env_str("DEFAULT_BASE_MODEL", str(VAR_DIR / "models" / "tiny-llama"))
HF_TOKEN = env_str("HF_TOKEN")
CHECKPOINT_EVERY_STEPS = env_int("CHECKPOINT_EVERY_STEPS", 100)

# Job lifecycle
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 4)  # launches per job, resumes included
SPOT_FALLBACK_AFTER = env_int("SPOT_FALLBACK_AFTER", 2)  # spot interruptions before falling back to on-demand
POD_ORPHAN_GRACE_S = env_int("POD_ORPHAN_GRACE_S", 120)  # a pod with no live job lives at most this long
POD_SILENCE_TIMEOUT_S = env_int("POD_SILENCE_TIMEOUT_S", 600)  # no event for this long: the pod is probed
PROVISIONING_TIMEOUT_S = env_int("PROVISIONING_TIMEOUT_S", 900)  # a pod that never reports is relaunched
RECONCILE_INTERVAL_S = env_int("RECONCILE_INTERVAL_S", 30)
LAUNCH_MAX_RETRIES = env_int("LAUNCH_MAX_RETRIES", 5)  # transient provider errors (no capacity, 5xx)
# Lets jobs carry worker test hooks (fault injection). Never on in production.
ALLOW_TEST_HOOKS = env_str("ALLOW_TEST_HOOKS", "") in {"1", "true", "yes"}
LAUNCH_STALL_S = env_int("LAUNCH_STALL_S", 120)  # provisioning with no pod id this long: launch again
# Follow-up tasks a broker lost are sent again by reconcile (training/services/redrive.py): a stop
# signal whose pod still runs after this long, artifact registration and automatic validation of a
# job completed this long ago without them.
STOP_SIGNAL_RESEND_S = env_int("STOP_SIGNAL_RESEND_S", 120)
FOLLOWUP_REDRIVE_S = env_int("FOLLOWUP_REDRIVE_S", 900)
POD_EXIT_SETTLE_S = env_int("POD_EXIT_SETTLE_S", 30)
# A user's stop (pause, stop early): how long the worker has, after SIGTERM, to finish its step
# and write its checkpoint before it is killed (a slow step with no checkpoint yet needs it).
POD_STOP_GRACE_S = env_int("POD_STOP_GRACE_S", 300)  # wait this long for a finished pod's last events
POD_COMPLETED_EXIT_WAIT_S = env_int("POD_COMPLETED_EXIT_WAIT_S", 10)  # then a completed job's pod is terminated
# After a job's terminal move its pod's events are still verified and their data kept (never a
# state change) for this long; then 410 and the secret is erased. Default: the pod's final flush
# (15 s after `completed`, gpu_worker/runner.py) on top of the settle time the control plane
# already gives a finished pod's last events (POD_EXIT_SETTLE_S): 30 + 15 = 45 s.
POD_EVENT_LATE_WINDOW_S = env_int("POD_EVENT_LATE_WINDOW_S", POD_EXIT_SETTLE_S + 15)
