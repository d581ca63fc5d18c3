from .env import env_int

# The OpenAI-compatible API (/v1/, the `finetuning` app). The `openai` client retries a create
# whose response was lost and sends no idempotency key: the same body from the same API key
# within this many seconds returns the job the first request created instead of a second one.
FINETUNING_IDEMPOTENCY_WINDOW_S = env_int("FINETUNING_IDEMPOTENCY_WINDOW_S", 600)
# A key's last_used_at is written at most this often (not on every request).
FINETUNING_KEY_TOUCH_INTERVAL_S = env_int("FINETUNING_KEY_TOUCH_INTERVAL_S", 60)
# Page size limits of the list routes (OpenAI's defaults: 20 jobs/events/checkpoints per page).
FINETUNING_MAX_PAGE_SIZE = env_int("FINETUNING_MAX_PAGE_SIZE", 100)
