"""Validation reports (validation app, docs/validation.md): which judge scores the generated
replies, its endpoint, the pass thresholds and how many side-by-side examples the report shows."""
from .env import env_bool, env_float, env_int, env_str

# "offline" (default; no network: rubric detectors + packaged sentence embeddings, an automatic
# proxy) or "llm" (any OpenAI-compatible chat-completions endpoint, e.g. a local vLLM).
VALIDATION_JUDGE = env_str("VALIDATION_JUDGE", "offline")
VALIDATION_LLM_BASE_URL = env_str("VALIDATION_LLM_BASE_URL", "")
VALIDATION_LLM_MODEL = env_str("VALIDATION_LLM_MODEL", "")
# Sent as a Bearer token; never stored with a run, never shown in a report.
VALIDATION_LLM_API_KEY = env_str("VALIDATION_LLM_API_KEY", "")
VALIDATION_LLM_TIMEOUT_S = env_float("VALIDATION_LLM_TIMEOUT_S", 60.0)
VALIDATION_LLM_MAX_RETRIES = env_int("VALIDATION_LLM_MAX_RETRIES", 2)
# Pass thresholds (the defaults): retention = adapted ÷ base knowledge accuracy;
# brand voice = share of adapted replies the judge rates on-voice.
VALIDATION_RETENTION_MIN = env_float("VALIDATION_RETENTION_MIN", 0.95)
VALIDATION_BRAND_VOICE_MIN = env_float("VALIDATION_BRAND_VOICE_MIN", 0.85)
# Gates (validation.gates; docs/validation.md): brand voice = on-voice floor, non-inferiority
# margin vs the dataset's own replies, relevance and diversity minimums (a BrandVoicePolicy row
# per organization or client overrides these); forgetting = the most base-correct knowledge
# questions the adapted model may lose; minimum evidence before any gate says pass or fail.
VALIDATION_BRAND_VOICE_FLOOR = env_float("VALIDATION_BRAND_VOICE_FLOOR", 0.5)
VALIDATION_BRAND_VOICE_MARGIN = env_float("VALIDATION_BRAND_VOICE_MARGIN", 0.10)
VALIDATION_RELEVANCE_MIN = env_float("VALIDATION_RELEVANCE_MIN", 0.5)
VALIDATION_DIVERSITY_MIN = env_float("VALIDATION_DIVERSITY_MIN", 0.8)
VALIDATION_FORGETTING_MAX = env_float("VALIDATION_FORGETTING_MAX", 0.10)
VALIDATION_MIN_ITEMS = env_int("VALIDATION_MIN_ITEMS", 20)
VALIDATION_MIN_CONVERSATIONS = env_int("VALIDATION_MIN_CONVERSATIONS", 5)
VALIDATION_MIN_RATED_SHARE = env_float("VALIDATION_MIN_RATED_SHARE", 0.8)
# Bootstrap resamples and seed of every interval.
VALIDATION_BOOTSTRAP_RESAMPLES = env_int("VALIDATION_BOOTSTRAP_RESAMPLES", 2000)
VALIDATION_BOOTSTRAP_SEED = env_int("VALIDATION_BOOTSTRAP_SEED", 0)
# A run still `running` this long after it started lost its worker (a task's hard time limit is
# CELERY_TASK_TIME_LIMIT_S, 900 s by default): it is taken up again, at most this many times in all.
VALIDATION_RUN_STALE_S = env_int("VALIDATION_RUN_STALE_S", 960)
VALIDATION_RUN_MAX_ATTEMPTS = env_int("VALIDATION_RUN_MAX_ATTEMPTS", 3)
# How often beat looks for such runs (and for pending runs whose task message was lost).
VALIDATION_RECOVER_INTERVAL_S = env_int("VALIDATION_RECOVER_INTERVAL_S", 300)
# Side-by-side examples: this many largest judged gains and this many largest losses.
VALIDATION_EXAMPLES_PER_SIDE = env_int("VALIDATION_EXAMPLES_PER_SIDE", 3)

# What the pod evaluates (JobSpec.eval_*): replies generated for at most this many held-out
# assistant turns, up to this many new tokens each; emotion items; the knowledge set on or off.
# Real models on a GPU: the defaults. The tiny CPU model in tests and the demo: smaller.
POD_EVAL_MAX_REPLIES = env_int("POD_EVAL_MAX_REPLIES", 48)
POD_EVAL_MAX_NEW_TOKENS = env_int("POD_EVAL_MAX_NEW_TOKENS", 256)
POD_EVAL_MAX_EMOTION_ITEMS = env_int("POD_EVAL_MAX_EMOTION_ITEMS", 300)
POD_EVAL_KNOWLEDGE = env_bool("POD_EVAL_KNOWLEDGE", True)
# lm-evaluation-harness tasks every job's pod runs (JobSpec.eval_lm_tasks): none by default (the CPU
# and the tests); e.g. POD_EVAL_LM_TASKS=arc_easy,hellaswag on pods whose image holds the task data,
# or brightrun_general_mc (shipped, offline). POD_EVAL_LM_LIMIT caps the examples per task.
POD_EVAL_LM_TASKS = tuple(t.strip() for t in env_str("POD_EVAL_LM_TASKS", "").split(",") if t.strip())
POD_EVAL_LM_LIMIT = env_int("POD_EVAL_LM_LIMIT", 0) or None
