from .env import env_int, env_list

# Budget enforcement (training.tasks.budgets_enforce, a beat task). HORIZON = interval + stop
# allowance: a running job is counted at what it will have cost by the next check plus the time a
# stopped pod may still bill. docs/billing.md states the overshoot bound these give.
BILLING_ENFORCE_INTERVAL_S = env_int("BILLING_ENFORCE_INTERVAL_S", 30)
BILLING_STOP_ALLOWANCE_S = env_int("BILLING_STOP_ALLOWANCE_S", 120)
# Providers that rent no GPU: their jobs cost $0 (the local subprocess provider).
BILLING_FREE_PROVIDERS = env_list("BILLING_FREE_PROVIDERS", ["local"])
# Default alert thresholds (percent of the monthly limit) for new budgets.
BILLING_DEFAULT_THRESHOLDS = [int(t) for t in env_list("BILLING_DEFAULT_THRESHOLDS", ["80", "95"])]
# A finished job whose pod the provider has not confirmed gone is settled after this long anyway.
BILLING_POD_GONE_WAIT_S = env_int("BILLING_POD_GONE_WAIT_S", 900)
# Cost reconciliation against the provider (billing.tasks.costs_reconcile, beat; keep equal to
# the beat row of migration billing 0004): a pod whose provider uptime is further than the
# tolerance from the recorded seconds, or whose rate differs, is recorded as a `pod_cost` event.
BILLING_RECONCILE_INTERVAL_S = env_int("BILLING_RECONCILE_INTERVAL_S", 60)
BILLING_RECONCILE_TOLERANCE_S = env_int("BILLING_RECONCILE_TOLERANCE_S", 5)
