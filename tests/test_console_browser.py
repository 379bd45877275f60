"""The web console in a real browser (Debian's headless Chromium): what an operator sees and does.

Screenshots of every step: .koppel/artifacts/screenshots/ (tests/browser_support.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.app import create_app
from gateway.stack import LiveServer, serve
from tests import browser_support
from tests.browser_support import Browser, browser_at
from tests.conftest import SECRETS, make_config

pytestmark = pytest.mark.integration

TOKEN = SECRETS["ADMIN_TOKEN"]
chromium_driver = browser_support.chromium_driver


@pytest.fixture
def console(redis_url: str) -> Iterator[LiveServer]:
    live = serve(create_app(make_config(admin_token="env:ADMIN_TOKEN"), redis_url), name="gateway")
    yield live
    live.stop()


@pytest.fixture
def browser(request, chromium_driver, console) -> Iterator[Browser]:
    yield from browser_at(request, chromium_driver, console.url)


def failed_job(rconn, redis_url: str) -> str:
    from workers.worker import run_worker

    queue = Queue("koppel", connection=rconn, serializer=JSONSerializer)
    job = queue.enqueue("workers.jobs.process_event", {"not": "an envelope"}, meta={"endpoint": "shop"})
    run_worker(make_config(), redis_url, burst=True)
    return job.id


def test_ops_dashboard_asks_for_the_admin_token_and_lists_failed_jobs(browser, console, rconn, redis_url):
    job_id = failed_job(rconn, redis_url)
    browser.open(f"/ops/rq/0/view/job/{job_id}")
    assert job_id not in browser.driver.page_source  # 401: the browser asks for credentials
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    browser.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {basic}"}})
    browser.open(f"/ops/rq/0/view/job/{job_id}")
    browser.wait_for_text(job_id)
    browser.shot("failed-jobs")
