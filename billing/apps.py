from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and budgets"

    def ready(self):
        # Training says when a pod is gone; billing decides what that means for the job's cost.
        from billing.services.jobs import on_pod_gone
        from training.signals import pod_gone

        pod_gone.connect(on_pod_gone, dispatch_uid="billing.on_pod_gone")
