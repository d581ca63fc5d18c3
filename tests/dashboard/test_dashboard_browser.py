"""A real browser (headless Chromium driven by Playwright) on the job page served by daphne:
the loss chart grows as pod events arrive, the status reaches completed, and a screenshot is
kept (in the test's folder; with UPDATE_DOC_SCREENSHOTS=1 also as docs/img/job-page.png)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.test import Client

from tests.conftest import REPO_ROOT
from tests.jobs.factories import make_running_job, signed_post, training_events
from tests.websockets.ws_support import session_cookie

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def post_events(events, secret):
    """Post from a thread of its own: Playwright's event loop runs on the test's thread, where the
    broadcast after commit (async_to_sync) cannot run."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def work():
        try:
            poster = Client()
            for event in events:
                assert signed_post(poster, event, secret).status_code == 200
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(work).result()


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop on this thread; Django's ORM calls in the test
    # are still synchronous (the documented setting for Playwright with Django tests).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Chromium is missing: install it with `apt-get install -y chromium` (Debian package)")
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield instance
        finally:
            # ORM calls made while Playwright runs use a connection of their own (Playwright
            # switches greenlets, so Django sees another context): close it, or the test
            # database cannot be dropped at the end of the session.
            from django.db import connections

            connections.close_all()
            instance.close()


def test_job_page_chart_grows_with_pod_events(browser, daphne_server, organization, make_user, tmp_path):
    user = make_user("eng", organization)
    job = make_running_job(organization, status="provisioning", created_by=user, name="Acme coach · balanced",
                           client="acme-coaching")
    events = training_events(job, steps=40, checkpoint_every=10)
    # make the curve look like training: noisy exponential decay, a warm-up then decaying lr
    import math
    import random

    rng = random.Random(7)
    for event in events:
        if event.type == "metrics":
            s = event.step
            event.data.update({"loss": 2.6 * math.exp(-s / 14) + 0.9 + rng.uniform(-0.06, 0.06),
                               "learning_rate": 2e-4 * min(1.0, s / 4) * (1 - s / 41), "tokens_per_s": 1830.0,
                               "eta_s": (40 - s) * 3.0})
            if s % 10 == 0:  # the pod measures the validation loss every few steps
                event.data["valid_loss"] = 2.8 * math.exp(-s / 16) + 1.0
    first_metrics = next(i for i, e in enumerate(events) if e.type == "metrics")
    post_events(events[: first_metrics + 3], job.webhook_secret)

    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    context.add_cookies([{"name": "sessionid", "value": session_cookie(user).split("=", 1)[1],
                          "url": daphne_server.http}])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{daphne_server.http}/jobs/{job.pk}/")
    page.wait_for_selector("body[data-socket=live]", timeout=15000)
    chart = page.locator("#chart-loss")
    initial = int(chart.get_attribute("data-points"))
    assert initial >= 1
    assert page.locator("#chart-loss canvas").count() == 1

    halfway = first_metrics + len(events[first_metrics:]) // 2
    post_events(events[first_metrics + 3: halfway], job.webhook_secret)
    page.wait_for_function("Number(document.querySelector('#chart-loss').dataset.points) > %d" % initial,
                           timeout=15000)
    middle = int(chart.get_attribute("data-points"))
    assert middle > initial
    page.screenshot(path=str(tmp_path / "job-page-training.png"), full_page=True)

    post_events(events[halfway:], job.webhook_secret)
    page.wait_for_function("document.querySelector('#job-status').textContent === 'Completed'", timeout=15000)
    page.wait_for_function("Number(document.querySelector('#chart-loss').dataset.points) === 40", timeout=15000)
    assert int(page.locator("#chart-lr").get_attribute("data-points")) == 40
    # The validation loss is on the loss chart, as points joined across the steps between them.
    page.wait_for_function("document.querySelector('#chart-loss').dataset.validPoints === '4'", timeout=15000)
    assert page.locator("#checkpoints tr").count() == 4
    assert page.locator("#stages li.done").count() == 5
    shot = tmp_path / "job-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_DOC_SCREENSHOTS"):  # tests never write into the checkout otherwise
        docs_img = REPO_ROOT / "docs" / "img"
        docs_img.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "job-page-training.png", docs_img / "job-page.png")
    assert not errors, errors
    context.close()
    print(f"\nloss chart points: {initial} → {middle} → 40; screenshot {shot}")


# Each page's accessible-name check: every visible control has a label (a <label>, aria-label,
# aria-labelledby, or its own text for buttons and links).
UNLABELLED_JS = """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
  .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
  .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                    || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim())))
  .map((el) => el.outerHTML.slice(0, 120))"""
WEIGHT_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  return {bytes: nav.encodedBodySize + res.reduce((s, r) => s + (r.encodedBodySize || 0), 0),
          requests: 1 + res.length, load_ms: nav.loadEventEnd - nav.startTime};
}"""


def test_pages_at_phone_width_are_labelled_keyboard_ordered_and_error_free(browser, daphne_server, organization,
                                                                          make_user, tmp_path):
    from decimal import Decimal

    from django.utils import timezone

    from billing.models import Budget, JobCost
    from tests.dashboard.test_dashboard_pages import _completed_validation_run

    user = make_user("eng", organization)
    done = make_running_job(organization, status="completed", created_by=user, name="validated · balanced",
                            stage="evaluating", client="acme-coaching")
    JobCost.objects.create(job=done, organization=organization, cost=Decimal("4.20"),
                           month=timezone.now().date().replace(day=1))
    _completed_validation_run(done)
    failed = make_running_job(organization, status="failed", created_by=user, name="broken", stage="training",
                              error_class="oom", error_message="Out of GPU memory")
    Budget.objects.create(organization=organization, client="", limit="100.00")
    from artifacts.models import ModelArtifact
    from training.models import Checkpoint

    Checkpoint.objects.create(job=done, step=10, uri="file:///storage/jobs/x/checkpoints/step-10", bytes=2_400_000)
    ModelArtifact.objects.create(organization=organization, job=done, kind="checkpoint", name="step-10",
                                 key=f"jobs/{done.pk}/checkpoints/step-10", uri="file:///storage/step-10",
                                 bytes=2_400_000, metadata={"step": 10, "attempt": 1},
                                 files=[{"path": "adapter_model.safetensors", "bytes": 2_400_000, "sha256": ""}])
    pages = {"jobs": "/", "new job": "/jobs/new/", "job (completed)": f"/jobs/{done.pk}/",
             "job (failed)": f"/jobs/{failed.pk}/", "history": "/history/", "compare": f"/jobs/compare/?ids={done.pk},{failed.pk}",
             "datasets": "/datasets/", "dataset": f"/datasets/{done.dataset_id}/", "budgets": "/budgets/"}
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.add_cookies([{"name": "sessionid", "value": session_cookie(user).split("=", 1)[1],
                          "url": daphne_server.http}])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and errors.append(f"{page.url}: {msg.text}"))
    figures = []
    for name, path in pages.items():
        page.goto(f"{daphne_server.http}{path}", wait_until="load")
        page.wait_for_load_state("networkidle")
        assert page.evaluate(UNLABELLED_JS) == [], name
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name}: the page is {overflow}px wider than a 390px screen"
        assert page.evaluate("() => document.querySelectorAll('[tabindex]:not([tabindex=\"-1\"]):not([tabindex=\"0\"])').length") == 0
        weight = page.evaluate(WEIGHT_JS)
        figures.append((name, weight["bytes"], weight["requests"], weight["load_ms"]))
        page.screenshot(path=str(tmp_path / f"{name.replace(' ', '-')}-390.png"), full_page=True)

    # Keyboard order on the form follows the reading order; the focus ring is visible.
    page.goto(f"{daphne_server.http}/jobs/new/")
    order = []
    for _ in range(60):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.id"))
        if order[-1] == "btn-start":
            break
    wanted = ["f-dataset", "f-template", "f-base-model", "f-preset", "hp-num_epochs", "hp-learning_rate", "f-gpu",
              "f-cloud", "f-client", "f-name", "btn-start"]
    assert [i for i in order if i in wanted] == wanted, order
    page.focus("#f-dataset")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    # Checkpoints are download links (minted per click by the artifacts app), never storage URIs.
    page.goto(f"{daphne_server.http}/jobs/{done.pk}/")
    link = page.locator("#checkpoints a", has_text="Download step-10")
    link.wait_for(timeout=10000)
    link.click()
    page.locator("#checkpoints ul.files a").first.wait_for(timeout=10000)
    hrefs = page.eval_on_selector_all("#checkpoints ul.files a", "els => els.map((a) => a.href)")
    assert hrefs and all(h.startswith(daphne_server.http) for h in hrefs), hrefs
    assert "file://" not in page.inner_text("body")
    # The history page's compare: tick two rows, submit, land on the compare page with both.
    page.goto(f"{daphne_server.http}/history/")
    page.check(f"input[name=ids][value='{done.pk}']")
    page.click("#history-compare button[type=submit]")
    page.wait_for_url("**/jobs/compare/**")
    assert str(done.pk) in page.url
    assert not errors, errors
    context.close()
    print("\npage weight and load time at 390 px (served by daphne, this machine):")
    for name, size, requests, load_ms in figures:
        print(f"  {name:18s} {size / 1000:7.1f} kB in {requests:2d} requests, load {load_ms:6.0f} ms")
