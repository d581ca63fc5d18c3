"""Every write and every rule of the billing app, one module per topic:

- `jobs`: the hooks the jobs services call (job_admit, job_cost_update, job_settle)
- `estimates`: the estimator;  `calibration`: learning throughput from completed jobs
- `catalog`: GPU prices and their refresh from RunPod;  `metering`: live per-second cost
- `budgets`: budgets, admission by reservation, alerts;  `enforcement`: the beat-driven enforcer
- `notifications`: e-mail and Slack delivery of budget notices
"""
from .jobs import job_admit, job_cost_update, job_settle

__all__ = ["job_admit", "job_cost_update", "job_settle"]
