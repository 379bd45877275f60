"""`/console/setup`: the set-up wizard's steps as forms, over real HTTP: one step a page, a refused answer
shown again with its reason, the finished file the same as `koppel init` writes, and its download."""

from __future__ import annotations

import html
import re
import tomllib

import httpx
import pytest

from gateway import wizard
from gateway.app import create_app
from gateway.checks import check_file
from gateway.config import parse_config
from tests.conftest import SECRETS, serve

pytestmark = pytest.mark.integration

TOKEN = SECRETS["ADMIN_TOKEN"]


@pytest.fixture
def live(redis_url):
    config = parse_config({"gateway": {"admin_token": "env:ADMIN_TOKEN"}}, environ=SECRETS)
    server = serve(create_app(config, redis_url))
    yield server
    server.stop()


@pytest.fixture
def console(live):
    with httpx.Client(base_url=live.url, timeout=10) as client:
        assert client.post("/console/login", data={"token": TOKEN}).status_code == 303
        yield client


def form_of(page: str, form_id: str = "setup") -> dict[str, str]:
    """The hidden fields of a form on the page (the answers so far, the step, the CSRF token)."""
    found = re.search(rf'<form id="{form_id}".*?</form>', page, re.S)
    assert found, f"no form#{form_id}"
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', found.group(0))
    return {html.unescape(name): html.unescape(value) for name, value in fields}


def step_of(page: str) -> str:
    return form_of(page)["step"]


def answer(client: httpx.Client, page: str, value: str | None = None, flows: list[str] | None = None) -> httpx.Response:
    data = form_of(page)
    if flows is not None:
        data |= {f"flow.{flow}": "on" for flow in flows}
    else:
        data["value"] = value or ""
    return client.post("/console/setup", data=data)


def test_the_setup_page_needs_a_login(live):
    with httpx.Client(base_url=live.url, timeout=10) as anon:
        assert anon.get("/console/setup").headers["location"] == "/console/login"
        assert anon.post("/console/setup", data={"step": "pair", "value": "1"}).status_code == 401


def test_the_steps_as_forms_make_the_file_koppel_init_makes(console, monkeypatch, tmp_path):
    page = console.get("/console/setup")
    assert page.status_code == 200 and step_of(page.text) == "pair"
    assert 'value="squarespace-exactonline"' in page.text
    given = {"pair": "squarespace-exactonline", "gateway.public_url": "https://koppel.example",
             "exact.client_id": "exact-app"}  # fmt: skip
    while 'id="setup-toml"' not in page.text:
        key = step_of(page.text)
        if key == "flows_back":
            page = answer(console, page.text, flows=["orders", "stock"])
        elif key == "flows":
            page = answer(console, page.text, flows=["orders"])
        else:
            default = re.search(r'name="value" value="([^"]*)"', page.text)
            page = answer(console, page.text, given.get(key, html.unescape(default.group(1)) if default else ""))
        assert page.status_code == 200, page.text
    assert 'id="setup-ok"' in page.text
    toml = html.unescape(re.search(r'<pre id="setup-toml">(.*?)</pre>', page.text, re.S).group(1))
    expected, problems = wizard.complete({**given, "flows": "orders", "flows_back": "orders, stock"})
    assert not problems
    assert toml == wizard.render(expected)
    assert "koppel connect exact --config koppel.toml" in page.text
    assert "koppel endpoints sync --config koppel.toml" in page.text
    assert re.search(r'<p id="setup-webhooks">.*?<a href="/console/webhooks">Webhooks</a>', page.text)
    download = console.post("/console/setup", data={**form_of(page.text, "setup-download"), "download": "1"})
    assert download.status_code == 200
    assert download.headers["content-disposition"] == 'attachment; filename="koppel.toml"'
    assert download.text == toml
    for name in wizard.env_names(expected):
        monkeypatch.setenv(name, "00ff")
    (tmp_path / "koppel.toml").write_text(download.text)
    assert check_file(tmp_path / "koppel.toml")[1] == []
    assert tomllib.loads(download.text)["gateway"]["public_url"] == "https://koppel.example"


def test_a_refused_answer_is_asked_again_with_the_reason(console):
    page = console.get("/console/setup")
    page = answer(console, page.text, "1")  # woocommerce-exactonline
    page = answer(console, page.text, flows=[])
    refused = answer(console, page.text, flows=[])  # nothing either way
    assert refused.status_code == 400
    assert step_of(refused.text) == "flows_back"
    assert "choose at least one flow in one of the two directions" in refused.text
    page = answer(console, refused.text, flows=["stock"])
    assert step_of(page.text) == "gateway.public_url"
    refused = answer(console, page.text, "koppel.example")
    assert refused.status_code == 400 and "is not an absolute http(s) URL" in refused.text
    assert 'value="koppel.example"' in refused.text  # what was sent, shown again


def test_answers_sent_back_are_checked_again(console):
    page = console.get("/console/setup")
    data = form_of(page.text) | {"answer.pair": "woocommerce-exactonline", "answer.flows": "orders, carrots"}
    refused = console.post("/console/setup", data=data)
    assert refused.status_code == 400 and step_of(refused.text) == "flows"
    assert "carrots: not a flow of this direction" in refused.text


def test_a_post_without_the_csrf_token_changes_nothing(console):
    refused = console.post("/console/setup", data={"step": "pair", "value": "1"})
    assert refused.status_code == 403
