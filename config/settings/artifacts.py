"""Artifacts: retention, download links, deployment packages, pod storage grants."""
from .env import env_int, env_str

# Checkpoints of finished jobs (completed, failed, cancelled) are deleted this long after the job
# ended. Adapters, tokenizers, metrics, reports and packages are kept.
ARTIFACT_CHECKPOINT_RETENTION_DAYS = env_int("ARTIFACT_CHECKPOINT_RETENTION_DAYS", 14)
# How often the beat task looks for checkpoints to prune (seconds; the data migration's default).
ARTIFACT_PRUNE_INTERVAL_S = env_int("ARTIFACT_PRUNE_INTERVAL_S", 3600)
# The pod's storage grant (presigned GETs for its inputs, a prefix-scoped upload policy for its
# outputs) is valid this long. SigV4 presigning caps it at 7 days; each launch gets a fresh one.
POD_STORAGE_GRANT_TTL_S = env_int("POD_STORAGE_GRANT_TTL_S", 3 * 24 * 3600)
# Largest single object the pod may upload through its grant (S3 POST uploads stop at 5 GiB).
POD_UPLOAD_MAX_BYTES = env_int("POD_UPLOAD_MAX_BYTES", 5 * 1024 ** 3)
# Salt for the disk backend's signed download tokens (the key is SECRET_KEY).
ARTIFACT_TOKEN_SALT = env_str("ARTIFACT_TOKEN_SALT", "artifacts.download")
# Largest base model (bytes of weight files) the merged export loads; 0: half the machine's memory.
ARTIFACT_MERGE_MAX_BYTES = env_int("ARTIFACT_MERGE_MAX_BYTES", 0)
