from django.urls import path

from billing import apis

urlpatterns = [
    path("estimates/", apis.EstimateApi.as_view(), name="estimate"),
    path("budgets/", apis.BudgetListCreateApi.as_view(), name="budget-list"),
    path("budgets/<int:pk>/", apis.BudgetDetailApi.as_view(), name="budget-detail"),
    path("budgets/<int:pk>/status/", apis.BudgetStatusApi.as_view(), name="budget-status"),
    path("billing/gpu-types/", apis.GpuTypeListApi.as_view(), name="billing-gpu-types"),
    path("billing/spend/", apis.SpendApi.as_view(), name="billing-spend"),
    path("billing/spend/export/", apis.SpendExportApi.as_view(), name="billing-spend-export"),
    path("billing/alerts/", apis.BudgetAlertListApi.as_view(), name="billing-alerts"),
    path("billing/jobs/<uuid:pk>/cost/", apis.JobCostApi.as_view(), name="billing-job-cost"),
    path("billing/estimate-accuracy/", apis.EstimateAccuracyApi.as_view(), name="billing-estimate-accuracy"),
]
