from django.urls import path

from training import apis, webhooks

urlpatterns = [
    path("datasets/", apis.DatasetListCreateApi.as_view(), name="dataset-list"),
    path("datasets/<uuid:pk>/", apis.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("jobs/", apis.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/<uuid:pk>/", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<uuid:pk>/stop/", apis.JobStopApi.as_view(), name="job-stop"),
    path("jobs/<uuid:pk>/retry/", apis.JobRetryApi.as_view(), name="job-retry"),
    path("jobs/<uuid:pk>/events/", apis.JobEventListApi.as_view(), name="job-events"),
    path("jobs/<uuid:pk>/metrics/", apis.JobMetricListApi.as_view(), name="job-metrics"),
    path("jobs/<uuid:pk>/checkpoints/", apis.JobCheckpointListApi.as_view(), name="job-checkpoints"),
    path("presets/", apis.PresetListApi.as_view(), name="preset-list"),
    path("pod-events/", webhooks.pod_events, name="pod-events"),
]
