"""Entry points vulture cannot see (tools/dead_code.py scans this file with the project): each
name is used, by the caller its comment names. Add a name here only with its caller."""

# Named by a string in settings.
LockoutModelBackend        # AUTHENTICATION_BACKENDS (config/settings/security.py)
ApiAutoSchema              # REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] (config/settings/api.py)
optional_request_defaults  # SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] (config/settings/api.py)
route                      # CELERY_TASK_ROUTES (config/settings/celery.py)

# Called by a framework by name.
restore_unacked            # kombu's QoS interface (config/kombu_transport.py overrides it)
job_update                 # Channels: a group message of type "job.update" (core/broadcast.py)

# Public API of a library module, used by tests, benchmarks and the docs' examples.
membership_grant           # accounts.services: tests/conftest.py, benchmarks
presigned_put              # artifacts.storage backends' interface: tests/artifacts/test_artifacts_s3.py
spend_total                # billing.selectors: tests/billing/test_billing_reports.py
tokens_per_epoch           # gpu_worker.data report: tests/gpu_worker/test_data.py, docs/gpu-worker.md
read_events                # gpu_worker.events: reads a run's event log (tests/gpu_worker, tests/reliability)
presets_table              # gpu_worker.presets: the docs' presets table (tests/gpu_worker/test_presets.py)
run_tasks                  # gpu_worker.evaluation.lm_harness (docs/validation.md; tests/validation)
option_loglikelihoods      # gpu_worker.evaluation.pod_eval (docs/validation.md; tests/validation)
dataset_emotion_labels     # training.selectors (docs/dataset-format.md; tests/training)
contains                   # validation.stats interval (tests/validation/test_validation_stats.py)

# Test controls of the fake and local providers (docs/providers.md).
fail_next
interrupt
vanish
methods_called
log_paths

# gpu_worker.evaluate: the perplexity the validation-loss tests compare against (tests/gpu_worker/test_run.py).
perplexity
