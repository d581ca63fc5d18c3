"""Signals the jobs app sends for other apps to act on (billing listens; training never imports it).

- `pod_gone(job_id=, pod_id=)`: sent on commit once the provider confirmed a job's pod gone (or
  no longer billing: evicted, exited). Billing closes the pod's segment and settles a finished job.

- `job_relaunched_elsewhere(job_id=)`: sent on commit when a launch took one of the job's capacity
  alternatives (another GPU type, cloud or on-demand): billing re-prices its estimate and reservation.
"""
from django.dispatch import Signal

pod_gone = Signal()
job_relaunched_elsewhere = Signal()
