"""DRF views of the billing app: parse input, call one service or selector, render output.
Everything is scoped to the caller's organization; budget managers and admins change budgets,
engineers and viewers read."""
from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from billing import selectors
from billing.models import Budget, BudgetAlert, GpuType, JobCost
from billing.serializers import (
    BudgetAlertSerializer,
    BudgetSerializer,
    BudgetUpdateSerializer,
    BudgetWriteSerializer,
    EstimateRequestSerializer,
    GpuTypeSerializer,
    JobCostSerializer,
)
from billing.services.budgets import budget_create, budget_update
from billing.services.estimates import config_from_request, estimate
from billing.services.metering import job_cost_meter
from core.apis import OrganizationScopedMixin
from core.errors import DomainError
from training.models import Dataset, TrainingJob
from core.permissions import IsOrganizationMember

BUDGET_WRITERS = {Role.ADMIN, Role.BUDGET_MANAGER}


class BillingScopedMixin(OrganizationScopedMixin):
    """The jobs API's organization scoping (core.apis), with billing's own write rule:
    every member reads, and may ask for an estimate; budget managers and admins change budgets
    (`require_budget_writer`), not engineers."""

    permission_classes = [IsOrganizationMember]

    def require_budget_writer(self, organization):
        if self.actor.role not in BUDGET_WRITERS:
            raise PermissionDenied("only budget managers and admins can change budgets")


def _money(rows: list[dict]) -> list[dict]:
    return [{k: (str(v) if hasattr(v, "quantize") else v) for k, v in row.items()} for row in rows]


class EstimateApi(BillingScopedMixin, APIView):
    """The estimate for a configuration, without creating a job (the new-job form calls it as
    its fields change)."""

    @extend_schema(request=EstimateRequestSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request):
        organization = self.get_organization()
        form = EstimateRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        dataset = get_object_or_404(Dataset, pk=data["dataset"], organization=organization)
        config = config_from_request(
            dataset=dataset, base_model=data.get("base_model") or "", preset=data.get("preset"),
            overrides=data.get("overrides") or {}, gpu_type=data.get("gpu_type") or None,
            cloud_type=data.get("cloud_type"), spot=data.get("spot"), bid_per_gpu=data.get("bid_per_gpu"),
            provider=data.get("provider") or None, quantization=data.get("quantization"),
            gpu_count=data.get("gpu_count") or 1,
        )
        answer = estimate(config).to_dict()
        # What the estimator's error has been on completed jobs of the same kind, where users decide.
        answer["accuracy"] = selectors.estimate_accuracy_for_kind(organization=organization, gpu_type=config.gpu_type,
                                                                  base_model=config.base_model, provider=config.provider)
        return Response(answer)


class GpuTypeListApi(generics.ListAPIView):
    serializer_class = GpuTypeSerializer
    pagination_class = None

    def get_queryset(self):
        return GpuType.objects.filter(active=True).order_by("display_name")


class BudgetListCreateApi(BillingScopedMixin, APIView):
    @extend_schema(responses={200: BudgetSerializer(many=True)})
    def get(self, request):
        budgets = Budget.objects.filter(organization=self.get_organization())
        return Response(BudgetSerializer(budgets, many=True).data)

    @extend_schema(request=BudgetWriteSerializer, responses={201: BudgetSerializer})
    def post(self, request):
        organization = self.get_organization()
        self.require_budget_writer(organization)
        form = BudgetWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        budget = budget_create(organization=organization, created_by=request.user, **form.validated_data)
        return Response(BudgetSerializer(budget).data, status=status.HTTP_201_CREATED)


class BudgetDetailApi(BillingScopedMixin, APIView):
    def get_budget(self, pk):
        return get_object_or_404(Budget, pk=pk, organization=self.get_organization())

    @extend_schema(responses={200: BudgetSerializer})
    def get(self, request, pk):
        return Response(BudgetSerializer(self.get_budget(pk)).data)

    @extend_schema(request=BudgetUpdateSerializer, responses={200: BudgetSerializer})
    def patch(self, request, pk):
        budget = self.get_budget(pk)
        self.require_budget_writer(budget.organization)
        form = BudgetUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        return Response(BudgetSerializer(budget_update(budget=budget, **form.validated_data)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        budget = self.get_budget(pk)
        self.require_budget_writer(budget.organization)
        budget.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class BudgetStatusApi(BillingScopedMixin, APIView):
    """Spent, reserved, remaining and forecast of one month, its alerts, and the chart series."""

    @extend_schema(parameters=[OpenApiParameter("month", str, description="YYYY-MM (default: this month)")],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request, pk):
        budget = get_object_or_404(Budget, pk=pk, organization=self.get_organization())
        month = selectors.parse_month(request.query_params.get("month"))
        return Response(selectors.budget_status(budget=budget, month=month))


class SpendApi(BillingScopedMixin, APIView):
    """?by=month|job|user|client (default job) &month=YYYY-MM (default this month)."""

    @extend_schema(parameters=[OpenApiParameter("by", str, enum=["month", "job", "user", "client"]),
                               OpenApiParameter("month", str, description="YYYY-MM (default: this month)")],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        organization = self.get_organization()
        by = request.query_params.get("by", "job")
        month = selectors.parse_month(request.query_params.get("month"))
        if by == "month":
            rows = selectors.spend_by_month(organization=organization)
            total = sum((r["spent"] for r in rows), 0)
        else:
            reader = {"job": selectors.spend_by_job, "user": selectors.spend_by_user,
                      "client": selectors.spend_by_client}.get(by)
            if reader is None:
                raise DomainError("by must be one of month, job, user, client", code="invalid_input")
            rows = reader(organization=organization, month=month)
            total = sum((r["spent"] for r in rows), 0)
        return Response({"by": by, "month": month.strftime("%Y-%m") if by != "month" else None,
                         "currency": "USD", "total": f"{total:.2f}", "rows": _money(rows)})


class SpendExportApi(BillingScopedMixin, APIView):
    @extend_schema(parameters=[OpenApiParameter("month", str, description="YYYY-MM (default: this month)")],
                   responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request):
        organization = self.get_organization()
        month = selectors.parse_month(request.query_params.get("month"))
        body = selectors.spend_csv(organization=organization, month=month)
        response = HttpResponse(body, content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="spend-{organization.slug}-{month:%Y-%m}.csv"'
        return response


class BudgetAlertListApi(BillingScopedMixin, generics.ListAPIView):
    serializer_class = BudgetAlertSerializer

    def get_queryset(self):
        return BudgetAlert.objects.filter(budget__organization=self.get_organization()).order_by("-created_at")


class JobCostApi(BillingScopedMixin, APIView):
    """A job's estimate and live cost (metered to now if it is running)."""

    @extend_schema(responses={200: JobCostSerializer})
    def get(self, request, pk):
        job = get_object_or_404(TrainingJob, pk=pk, organization=self.get_organization())
        cost = job_cost_meter(job_id=job.pk, now=timezone.now())
        if cost is None:  # pragma: no cover - the job was deleted between the two reads
            cost = get_object_or_404(JobCost, job=job)
        return Response(JobCostSerializer(cost).data)


class EstimateAccuracyApi(BillingScopedMixin, APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(selectors.estimate_accuracy(organization=self.get_organization()))
