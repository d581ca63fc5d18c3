"""Every write of the artifacts app, one module per topic; import from here.

- registry: job_artifacts_register (after a job completes), report_artifact_store, adapter_set_current
- grants: pod_storage_grant (what a pod may read and write)
- downloads: artifact_download_links (permission check, then short-lived links)
- packages: job_package_build (the deployment zip)
- merged: job_merged_export (adapter folded into the base weights; needs the `train` extra)
- retention: checkpoints_prune (beat)
"""
from .downloads import artifact_download_links
from .grants import pod_storage_grant
from .merged import job_merged_export
from .packages import job_package_build
from .registry import (
    adapter_set_current,
    job_artifacts_register,
    job_output_key,
    metrics_export,
    report_artifact_store,
)
from .retention import checkpoints_prune

__all__ = [
    "adapter_set_current",
    "artifact_download_links",
    "checkpoints_prune",
    "job_artifacts_register",
    "job_merged_export",
    "job_output_key",
    "job_package_build",
    "metrics_export",
    "pod_storage_grant",
    "report_artifact_store",
]
