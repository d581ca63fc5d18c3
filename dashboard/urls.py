from django.contrib.auth import views as auth_views
from django.urls import path

from accounts.forms import LoginForm
from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.jobs, name="jobs"),
    path("jobs/new/", views.job_new, name="job-new"),
    path("jobs/compare/", views.compare, name="compare"),
    path("history/", views.history, name="history"),
    path("history.csv", views.history_export, name="history-csv"),
    path("jobs/<uuid:pk>/", views.job_detail, name="job"),
    path("jobs/<uuid:pk>/report/", views.job_report, name="job-report"),
    path("jobs/<uuid:pk>/report.pdf", views.job_report_pdf, name="job-report-pdf"),
    path("reports/compare/", views.reports_compare, name="reports-compare"),
    path("datasets/", views.datasets, name="datasets"),
    path("datasets/<uuid:pk>/", views.dataset_detail, name="dataset"),
    path("budgets/", views.budgets, name="budgets"),
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html",
                                                    authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
