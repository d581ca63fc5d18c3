import sys

from .env import VAR_DIR, env_int, env_str

# GPU_PROVIDER: "local" (runs gpu_worker as a subprocess on this machine) or "runpod".
GPU_PROVIDER = env_str("GPU_PROVIDER", "local")
POD_NAME_PREFIX = env_str("POD_NAME_PREFIX", "brightrun")
LOCAL_PODS_DIR = env_str("LOCAL_PODS_DIR", str(VAR_DIR / "pods"))
LOCAL_WORKER_COMMAND = [sys.executable, "-m", "gpu_worker", "run"]

RUNPOD_API_KEY = env_str("RUNPOD_API_KEY")
RUNPOD_API_BASE_URL = env_str("RUNPOD_API_BASE_URL")  # unset: RunPod's own; tests: a local fake
RUNPOD_IMAGE = env_str("RUNPOD_IMAGE", "ghcr.io/brightrun/gpu-worker:0.1.0")
DEFAULT_GPU_TYPE = env_str("DEFAULT_GPU_TYPE", "NVIDIA H100 80GB HBM3")

# Base model used when a job names none. Embedded default: the tiny model built from the
# sample dataset (python -m gpu_worker make-tiny-model) in var/models/tiny-llama.
DEFAULT_BASE_MODEL = env_str("DEFAULT_BASE_MODEL", str(VAR_DIR / "models" / "tiny-llama"))
HF_TOKEN = env_str("HF_TOKEN")
CHECKPOINT_EVERY_STEPS = env_int("CHECKPOINT_EVERY_STEPS", 100)
