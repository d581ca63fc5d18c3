from django.urls import path

from artifacts import apis

urlpatterns = [
    path("artifacts/", apis.ArtifactListApi.as_view(), name="artifact-list"),
    path("artifacts/<uuid:pk>/", apis.ArtifactDetailApi.as_view(), name="artifact-detail"),
    path("artifacts/<uuid:pk>/download/", apis.ArtifactDownloadApi.as_view(), name="artifact-download"),
    path("artifacts/files/<str:token>/", apis.storage_file, name="artifact-storage-file"),
    path("jobs/<uuid:pk>/package/", apis.JobPackageApi.as_view(), name="job-package"),
]
