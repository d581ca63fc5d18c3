from .env import env_int, env_list

# The OpenAI-compatible API (/v1/, the `finetuning` app). The `openai` client retries a create
# whose response was lost and sends no idempotency key: the same body from the same API key
# within this many seconds returns the job the first request created instead of a second one.
FINETUNING_IDEMPOTENCY_WINDOW_S = env_int("FINETUNING_IDEMPOTENCY_WINDOW_S", 600)
# A key's last_used_at is written at most this often (not on every request).
FINETUNING_KEY_TOUCH_INTERVAL_S = env_int("FINETUNING_KEY_TOUCH_INTERVAL_S", 60)
# Page size limits of the list routes (OpenAI's defaults: 20 jobs/events/checkpoints per page).
FINETUNING_MAX_PAGE_SIZE = env_int("FINETUNING_MAX_PAGE_SIZE", 100)
# The base models a job may name (checked at create, so a typo is refused at once rather than
# failing on the pod): a local model folder (with config.json), DEFAULT_BASE_MODEL, or a hub id
# matching one of these regular expressions (comma-separated in the environment).
FINETUNING_MODEL_PATTERNS = env_list("FINETUNING_MODEL_PATTERNS", [
    r"meta-llama/(Meta-)?Llama-3(\.[0-9])?-[0-9]+B(-Instruct)?",
    r"unsloth/(Meta-)?Llama-3(\.[0-9])?-[0-9]+B(-Instruct)?(-bnb-4bit)?",
])
