"""Mounted at /v1/ (config/urls.py). No trailing slashes: the `openai` client sends none."""
from django.urls import path, re_path

from finetuning import apis
from finetuning.errors import not_found_view

urlpatterns = [
    path("files", apis.FileListCreateApi.as_view(), name="openai-files"),
    path("files/<str:file_id>", apis.FileDetailApi.as_view(), name="openai-file"),
    path("files/<str:file_id>/content", apis.FileContentApi.as_view(), name="openai-file-content"),
    path("fine_tuning/jobs", apis.JobListCreateApi.as_view(), name="openai-jobs"),
    path("fine_tuning/jobs/<str:job_id>", apis.JobDetailApi.as_view(), name="openai-job"),
    path("fine_tuning/jobs/<str:job_id>/cancel", apis.JobCancelApi.as_view(), name="openai-job-cancel"),
    path("fine_tuning/jobs/<str:job_id>/pause", apis.JobPauseApi.as_view(), name="openai-job-pause"),
    path("fine_tuning/jobs/<str:job_id>/resume", apis.JobResumeApi.as_view(), name="openai-job-resume"),
    path("fine_tuning/jobs/<str:job_id>/events", apis.JobEventListApi.as_view(), name="openai-job-events"),
    path("fine_tuning/jobs/<str:job_id>/checkpoints", apis.JobCheckpointListApi.as_view(),
         name="openai-job-checkpoints"),
    re_path(r"^.*$", not_found_view),
]
