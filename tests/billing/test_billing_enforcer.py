"""The enforcer and alerts: a database scenario on a simulated clock, the stated overshoot bound
over many random scenarios (the same rule functions the services run), and alerts exactly once."""
from __future__ import annotations

import heapq
import json
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from billing_factories import T0, after, create_and_admit, make_job, move, sample_dataset
from django.core import mail
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from billing import rules
from billing.models import BudgetAlert, JobCost
from billing.services import job_settle
from billing.services.budgets import budget_alerts_check, budget_create
from billing.services.enforcement import budgets_enforce as billing_enforce
from billing.services.metering import month_of

STOPS: list[tuple] = []


def record_stop(*, job_id, reason):
    """The `stop` billing's enforcer is given, recording what it asks for (in production the jobs
    app passes training.services.jobs.job_stop_for_budget: tests/jobs covers that stop)."""
    STOPS.append((job_id, reason))


def budgets_enforce(*, now):
    return billing_enforce(now=now, stop=record_stop)


@pytest.fixture
def stopper():
    STOPS.clear()
    return STOPS


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


class SlackHook:
    def __init__(self):
        self.messages: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def slack(settings):
    hook = SlackHook()
    settings.SLACK_WEBHOOK_URL = hook.url
    yield hook
    hook.server.shutdown()


@pytest.mark.slow
def test_enforcer_stops_an_overrunning_job_before_it_crosses_the_cap(organization, dataset, stopper, settings,
                                                                   django_capture_on_commit_callbacks, make_user):
    from accounts.models import Role

    make_user("bob", organization, role=Role.BUDGET_MANAGER).__class__.objects.filter(username="bob").update(
        email="bob@example.com")
    job = create_and_admit(organization, dataset)
    reserved = JobCost.objects.get(job=job).reserved
    limit = reserved + Decimal("1.00")
    budget = budget_create(organization=organization, limit=limit)
    move(job, "provisioning", T0)
    move(job, "training", after(120))
    rate = Decimal("4.76") / 3600
    horizon = settings.BILLING_ENFORCE_INTERVAL_S + settings.BILLING_STOP_ALLOWANCE_S
    stopped_at = None
    t = 0
    while t < 4 * 3600 and stopped_at is None:
        t += settings.BILLING_ENFORCE_INTERVAL_S
        with django_capture_on_commit_callbacks(execute=True):
            result = budgets_enforce(now=after(t))
        if result.stopped:
            stopped_at = t
    assert stopped_at is not None and [s[0] for s in stopper] == [job.pk]
    assert "checkpoint kept" in stopper[0][1]
    # It stopped at the first check where spent + one horizon would pass the limit, not later.
    assert rate * (stopped_at + horizon) > limit >= rate * (stopped_at - 30 + horizon)
    # The pod ends within the stop allowance; the month stays under its limit.
    move(job, "cancelled", after(stopped_at + settings.BILLING_STOP_ALLOWANCE_S))
    job_settle(job_id=job.pk)
    assert JobCost.objects.get(job=job).cost <= limit
    notice = BudgetAlert.objects.get(budget=budget, kind=BudgetAlert.KIND_STOPPED)
    assert notice.job_id == job.pk and "was stopped" in notice.message
    assert any("stopped at the budget cap" in m.subject for m in mail.outbox)
    # A second pass does not stop it again.
    with django_capture_on_commit_callbacks(execute=True):
        assert budgets_enforce(now=after(stopped_at + 30)).stopped == []


def test_enforcer_whose_stop_fails_says_so_and_keeps_counting(organization, dataset):
    def failing_stop(*, job_id, reason):
        raise RuntimeError("the jobs app could not stop it")

    job = create_and_admit(organization, dataset)
    budget_create(organization=organization, limit=JobCost.objects.get(job=job).reserved)
    move(job, "provisioning", T0)
    result = billing_enforce(now=after(3600), stop=failing_stop)
    assert result.stop_failed == [job.pk] and result.stopped == []
    assert JobCost.objects.get(job=job).stop_requested_at is None  # counted as running, tried again next pass


def test_thresholds_fire_once_each_by_mail_slack_and_in_app(organization, dataset, slack, make_user,
                                                          django_capture_on_commit_callbacks):
    from accounts.models import Role

    user = make_user("carol", organization, role=Role.ADMIN)
    user.email = "carol@example.com"
    user.save()
    budget = budget_create(organization=organization, limit=Decimal("100"), thresholds=[50, 80, 95],
                           notify_emails="finance@example.com")
    month = month_of(T0)

    def spend(amount):
        job = make_job(organization, dataset, status="completed")
        JobCost.objects.create(job=job, organization=organization, month=month, cost=Decimal(amount),
                               settled_at=T0, final_status="completed")

    spend("49.99")
    with django_capture_on_commit_callbacks(execute=True):
        assert budget_alerts_check(budget=budget, month=month, now=after(60)) == []
    spend("0.01")
    spend("30.00")
    with django_capture_on_commit_callbacks(execute=True):
        fired = budget_alerts_check(budget=budget, month=month, now=after(120))
    assert [a.threshold for a in fired] == [50, 80]
    with django_capture_on_commit_callbacks(execute=True):
        assert budget_alerts_check(budget=budget, month=month, now=after(180)) == []
    assert len(mail.outbox) == 2 and mail.outbox[0].to == ["carol@example.com", "finance@example.com"]
    assert "$80.00 of its $100.00 budget" in mail.outbox[1].body and "forecast" in mail.outbox[1].body
    assert len(slack.messages) == 2 and "80%" in slack.messages[1]["text"]
    alert = BudgetAlert.objects.get(budget=budget, threshold=80)
    assert alert.delivered["slack"] == "ok" and alert.delivered["email"].startswith("ok")
    assert alert.remaining == Decimal("20.00")


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=12),
       thresholds=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=4, unique=True))
def test_alerts_fire_exactly_once_per_threshold_over_random_spending(organization, dataset, steps, thresholds):
    """Spend in random steps (cents), checking after each: every threshold reached fires exactly
    once, none that was not reached fires."""
    client = uuid.uuid4().hex[:12]
    budget = budget_create(organization=organization, client=client, limit=Decimal("100"), thresholds=thresholds)
    month = month_of(T0)
    spent = Decimal("0")
    for i, step in enumerate(steps):
        amount = Decimal(step) / 100
        spent += amount
        job = make_job(organization, dataset, client=client, status="completed")
        JobCost.objects.create(job=job, organization=organization, client=client, month=month, cost=amount,
                               settled_at=T0, final_status="completed")
        budget_alerts_check(budget=budget, month=month, now=after(60 * i))
        budget_alerts_check(budget=budget, month=month, now=after(60 * i + 1))  # a second checker
    fired = list(BudgetAlert.objects.filter(budget=budget, kind="threshold").values_list("threshold", flat=True))
    assert sorted(fired) == sorted(t for t in thresholds if spent * 100 >= 100 * t)


# -- the overshoot bound on a simulated clock -----------------------------------------------------

INTERVAL = 30
ALLOWANCE = 120
HORIZON = INTERVAL + ALLOWANCE
RATES = [Decimal(r) for r in ("0.39", "1.40", "2.45", "4.76", "10.57")]

job_strategy = st.tuples(
    st.integers(min_value=0, max_value=3 * 3600),      # arrival, s
    st.sampled_from(RATES),                            # $/h of its pod
    st.integers(min_value=60, max_value=2 * 3600),     # high end of its estimate, s
    st.floats(min_value=0.1, max_value=5.0),           # actual duration / estimate
    st.integers(min_value=0, max_value=400),           # how long a stop takes, s
)


def simulate(limit: Decimal, jobs, *, late_by: list[int], stop_cap: int | None):
    """Admission, metering, enforcement and completion in time order. Returns (spend, bound):
    bound is the stated overshoot allowance for this run (0 when checks are on time and every stop
    ends within the allowance). A check k comes INTERVAL + late_by[k] after the one before."""
    per_s = lambda rate: rate / 3600  # noqa: E731
    admitted = {}
    events = []  # (time, order, kind, index)
    for i, (arrival, *_rest) in enumerate(jobs):
        heapq.heappush(events, (arrival, 1, "arrive", i))
    t_check, k = 0, 0
    last_end = max(arrival + int(high_s * factor) for arrival, _, high_s, factor, _ in jobs)
    while t_check <= last_end + 600:  # checks go on until every job has ended
        t_check += INTERVAL + late_by[k % len(late_by)]
        k += 1
        heapq.heappush(events, (t_check, 2, "check", k))
    max_late = max(late_by)

    def cost_at(j, t):
        end = j["end"] if j["end"] is not None else t
        return per_s(j["rate"]) * Decimal(max(0, min(t, end) - j["start"]))

    def state(i, j, t):
        if j["settled"]:
            return rules.JobState(i, j["final"], j["reserved"], Decimal(0), None, settled=True)
        if j["metered_at"] is None:  # admitted, not metered yet: looks queued
            return rules.JobState(i, Decimal(0), j["reserved"], Decimal(0), None)
        return rules.JobState(i, j["cost_m"], j["reserved"], j["rate"], j["metered_at"],
                              stop_requested_at=j["stop_at"])

    from datetime import datetime, timezone as tz
    base = datetime(2026, 3, 1, tzinfo=tz.utc)
    when = lambda s: base + timedelta(seconds=s)  # noqa: E731

    while events:
        t, _, kind, i = heapq.heappop(events)
        if kind == "arrive":
            arrival, rate, high_s, factor, stop_s = jobs[i]
            reservation = max((per_s(rate) * high_s).quantize(Decimal("0.01"), rounding="ROUND_CEILING"),
                              rules.minimum_reservation(rate, HORIZON))
            states_ = [state(x, j, t) for x, j in admitted.items()]
            committed = rules.total_commitment(states_, when(t), horizon_s=HORIZON, stop_allowance_s=ALLOWANCE)
            if rules.admission_allows(committed, reservation, limit):
                admitted[i] = {"start": t, "rate": rate, "reserved": reservation, "natural_end": t + int(high_s * factor),
                               "end": None, "stop_at": None, "stop_s": stop_s, "settled": False, "final": None,
                               "metered_at": None, "cost_m": Decimal(0)}
                heapq.heappush(events, (admitted[i]["natural_end"], 0, "end", i))
        elif kind == "end":
            j = admitted[i]
            if j["settled"] or (j["end"] is not None and j["end"] != t):
                continue
            j["end"] = t
            j["final"] = cost_at(j, t)
            j["settled"] = True
        elif kind == "check":
            for j in admitted.values():  # meter
                if not j["settled"]:
                    j["cost_m"], j["metered_at"] = cost_at(j, t), when(t)
            states_ = [state(x, j, when(t)) for x, j in admitted.items()]
            for x in rules.jobs_to_stop(states_, limit, when(t), horizon_s=HORIZON, stop_allowance_s=ALLOWANCE):
                j = admitted[x]
                j["stop_at"] = when(t)
                stop_s = j["stop_s"] if stop_cap is None else min(j["stop_s"], stop_cap)
                j["actual_stop_s"] = stop_s
                end = min(j["natural_end"], t + stop_s)
                j["end"] = end
                heapq.heappush(events, (end, 0, "end", x))
    spend = sum((j["final"] for j in admitted.values()), Decimal(0))
    bound = sum((per_s(j["rate"]) * (max_late + max(0, j.get("actual_stop_s", 0) - ALLOWANCE))
                 for j in admitted.values()), Decimal(0))
    return spend, bound, admitted


@hsettings(max_examples=300, deadline=None)
@given(limit=st.integers(min_value=100, max_value=20000).map(lambda c: Decimal(c) / 100),
       jobs=st.lists(job_strategy, min_size=1, max_size=12))
@pytest.mark.slow
def test_cap_holds_when_checks_are_on_time_and_stops_within_the_allowance(limit, jobs):
    spend, bound, admitted = simulate(limit, jobs, late_by=[0], stop_cap=ALLOWANCE)
    assert bound == 0
    assert spend <= limit, (spend, limit)


@hsettings(max_examples=300, deadline=None)
@given(limit=st.integers(min_value=100, max_value=20000).map(lambda c: Decimal(c) / 100),
       jobs=st.lists(job_strategy, min_size=1, max_size=12),
       late_by=st.lists(st.integers(min_value=0, max_value=120), min_size=1, max_size=8))
@pytest.mark.slow
def test_overshoot_never_exceeds_the_stated_bound(limit, jobs, late_by):
    spend, bound, _ = simulate(limit, jobs, late_by=late_by, stop_cap=None)
    assert spend <= limit + bound, (spend, limit, bound)


def test_the_simulation_stops_an_overrunning_job_close_to_the_cap():
    """A fixed scenario, so the random ones above are known to exercise stops: one $4.76/h job
    estimated at 1 h that would run 4 h, against a $10 cap."""
    spend, bound, admitted = simulate(Decimal("10.00"), [(0, Decimal("4.76"), 3600, 4.0, 60)], late_by=[0],
                                      stop_cap=ALLOWANCE)
    [job] = admitted.values()
    assert job["stop_at"] is not None and job["end"] < job["natural_end"]
    assert Decimal("9.50") < spend <= Decimal("10.00")
