from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and budgets"

    def ready(self):
        # Training says when a pod is gone; billing decides what that means for the job's cost.
        from billing.services.jobs import on_job_relaunched_elsewhere, on_pod_gone
        from training.signals import job_relaunched_elsewhere, pod_gone

        pod_gone.connect(on_pod_gone, dispatch_uid="billing.on_pod_gone")
        job_relaunched_elsewhere.connect(on_job_relaunched_elsewhere, dispatch_uid="billing.on_job_relaunched")
