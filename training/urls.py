from django.urls import path

from training import webhooks
from training.apis import auth, datasets, jobs, metrics, templates, validation

urlpatterns = [
    path("datasets/", datasets.DatasetListCreateApi.as_view(), name="dataset-list"),
    path("datasets/<uuid:pk>/", datasets.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<uuid:pk>/benchmark/", datasets.DatasetBenchmarkApi.as_view(), name="dataset-benchmark"),
    path("jobs/", jobs.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/compare/", jobs.JobCompareApi.as_view(), name="job-compare"),
    path("jobs/<uuid:pk>/", jobs.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/cancel/", jobs.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<uuid:pk>/stop/", jobs.JobStopApi.as_view(), name="job-stop"),
    path("jobs/<uuid:pk>/retry/", jobs.JobRetryApi.as_view(), name="job-retry"),
    path("jobs/<uuid:pk>/events/", jobs.JobEventListApi.as_view(), name="job-events"),
    path("jobs/<uuid:pk>/checkpoints/", jobs.JobCheckpointListApi.as_view(), name="job-checkpoints"),
    path("jobs/<uuid:pk>/metrics/", metrics.JobMetricListApi.as_view(), name="job-metrics"),
    path("jobs/<uuid:pk>/metrics/series/", metrics.JobMetricSeriesApi.as_view(), name="job-metric-series"),
    path("jobs/<uuid:pk>/metrics/export/<str:fmt>/", metrics.JobMetricExportApi.as_view(), name="job-metric-export"),
    path("jobs/<uuid:pk>/validation/", validation.JobValidationApi.as_view(), name="job-validation"),
    path("reports/compare/", validation.ValidationCompareApi.as_view(), name="report-compare"),
    path("presets/", templates.PresetListApi.as_view(), name="preset-list"),
    path("templates/", templates.JobTemplateListCreateApi.as_view(), name="template-list"),
    path("templates/<int:pk>/", templates.JobTemplateDetailApi.as_view(), name="template-detail"),
    path("me/", auth.MeApi.as_view(), name="me"),
    path("auth/token/", auth.TokenApi.as_view(), name="auth-token"),
    path("ws-tickets/", auth.WsTicketApi.as_view(), name="ws-ticket"),
    path("pod-events/", webhooks.pod_events, name="pod-events"),
]
