from .env import VAR_DIR, env_int, env_str

# STORAGE_BACKEND: "disk" (embedded default: a folder) or "s3" (any S3-compatible service).
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "disk")
STORAGE_DISK_ROOT = env_str("STORAGE_DISK_ROOT", str(VAR_DIR / "storage"))
S3_BUCKET = env_str("S3_BUCKET", "brightrun")
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL")  # MinIO, Supabase Storage, ...; unset for AWS
S3_REGION = env_str("S3_REGION", "us-east-1")
S3_ACCESS_KEY_ID = env_str("S3_ACCESS_KEY_ID")
S3_SECRET_ACCESS_KEY = env_str("S3_SECRET_ACCESS_KEY")
S3_PREFIX = env_str("S3_PREFIX", "")
# Presigned download links live this long.
DOWNLOAD_URL_TTL_S = env_int("DOWNLOAD_URL_TTL_S", 600)
# Files above this size go up in parts of S3_MULTIPART_CHUNK_MB (boto3's TransferConfig); a part
# that fails is retried alone. S3 needs parts of at least 5 MiB except the last.
S3_MULTIPART_THRESHOLD_MB = env_int("S3_MULTIPART_THRESHOLD_MB", 64)
S3_MULTIPART_CHUNK_MB = env_int("S3_MULTIPART_CHUNK_MB", 64)
# "path" (MinIO, most self-hosted services) or "virtual" (AWS default); unset lets boto3 choose.
S3_ADDRESSING_STYLE = env_str("S3_ADDRESSING_STYLE")
