"""Signals the jobs app sends for other apps to act on (billing listens; training never imports it).

- `pod_gone(job_id=, pod_id=)`: sent on commit once the provider confirmed a job's pod gone (or
  no longer billing: evicted, exited). Billing closes the pod's segment and settles a finished job.
"""
from django.dispatch import Signal

pod_gone = Signal()
