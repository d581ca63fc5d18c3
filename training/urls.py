from django.urls import path

from training import apis

urlpatterns = [
    path("datasets/", apis.DatasetListCreateApi.as_view(), name="dataset-list"),
    path("datasets/<uuid:pk>/", apis.DatasetDetailApi.as_view(), name="dataset-detail"),
]
