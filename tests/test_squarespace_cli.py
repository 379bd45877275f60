"""The operator's side of Squarespace: `koppel config check`, `koppel endpoints sync`, `… test` and
`… rotate-secret` against the sandbox, in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import tomlkit
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors import issued
from connectors.squarespace.sandbox import SandboxConfig, create_sandbox
from gateway import cli, vault
from gateway.stack import LiveServer, serve
from workers.switches import switch_off, switched_off

pytestmark = pytest.mark.integration


@pytest.fixture
def servers() -> Iterator[tuple[LiveServer, LiveServer]]:
    async def hook(request: Request) -> Response:
        await request.body()
        return PlainTextResponse("ok", status_code=202)

    site = serve(create_sandbox(), name="Squarespace sandbox")
    receiver = serve(Starlette(routes=[Route("/webhooks/sq-hooks", hook, methods=["POST"])]), name="receiver")
    try:
        yield site, receiver
    finally:
        receiver.stop()
        site.stop()


def write_config(path: Path, site_url: str, public_url: str, **settings: Any) -> Path:
    data = {
        "gateway": {"public_url": public_url},
        "endpoints": [{"id": "sq-hooks", "kind": "squarespace", "secret": "env:T_HOOK", "system": "sq"}],
        "systems": [
            {"id": "sq", "kind": "squarespace", "base_url": site_url, "credentials": {"api_key": "env:T_TOKEN"},
             "settings": settings},
            {"id": "sq-stock", "kind": "squarespace", "base_url": site_url, "credentials": {"api_key": "env:T_TOKEN"}},
        ],
        "integrations": [{"id": "hooks-to-sq", "source": "sq-hooks", "target": "sq-stock", "flows": ["orders"]}],
    }  # fmt: skip
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    environ = {"T_HOOK": "ab" * 32, "T_TOKEN": SandboxConfig.oauth_token, "REDIS_URL": redis_url}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_config_check_takes_a_squarespace_system_and_refuses_a_plain_http_api(servers, env, tmp_path, capsys):
    site, receiver = servers
    good = write_config(tmp_path / "k.toml", site.url, receiver.url)
    code, _, err = run(capsys, "config", "check", "--config", str(good))
    assert code == 0, err
    bad = write_config(tmp_path / "bad.toml", "http://squarespace.example", receiver.url, reconcile_interval_seconds=-1)
    code, _out, err = run(capsys, "config", "check", "--config", str(bad))
    assert code != 0
    assert "systems[0] (sq).settings.reconcile_interval_seconds" in err
    bad = write_config(tmp_path / "bad2.toml", "http://squarespace.example", receiver.url)
    code, _, err = run(capsys, "config", "check", "--config", str(bad))
    assert code != 0 and "base_url: must be an https URL" in err


def test_sync_test_and_rotate_through_the_command_line(servers, env, tmp_path, capsys, rconn: redis.Redis):
    site, receiver = servers
    config = str(write_config(tmp_path / "k.toml", site.url, receiver.url))
    code, out, err = run(capsys, "endpoints", "sync", "--config", config, "--json")
    assert code == 0, err
    actions = json.loads(out)["endpoints"][0]["actions"]
    assert sorted(a["topic"] for a in actions) == ["extension.uninstall", "order.create", "order.update"]
    assert len(issued.subscriptions(rconn, "sq-hooks")) == 3
    code, out, err = run(capsys, "endpoints", "sync", "--config", config, "--dry-run")
    assert code == 0 and "in sync" in out
    code, out, err = run(capsys, "endpoints", "test", "sq-hooks", "--config", config)
    assert code == 0, err
    assert out.count("test notification answered 202") == 2  # order.create, order.update
    assert "(extension.uninstall): not tested: a test extension.uninstall notification would switch" in out
    before = dict(rconn.hgetall(issued.issued_key("sq-hooks")))
    code, out, err = run(capsys, "endpoints", "rotate-secret", "sq-hooks", "--config", config)
    assert code == 0, err
    assert out.count("secret rotated") == 3
    after = rconn.hgetall(issued.issued_key("sq-hooks"))
    def opened(raw: bytes) -> dict:
        assert b"secret" not in raw  # encrypted at rest (gateway/vault.py)
        return json.loads(vault.vault().open(raw, what="secret", fix="-"))

    for field, raw in after.items():
        entry = opened(raw)
        assert entry["previous"] == opened(before[field])["secret"] != entry["secret"]
    code, out, err = run(capsys, "endpoints", "test", "nope", "--config", config)
    assert code != 0 and "no webhooks Koppel manages" in err


def test_integrations_lists_what_a_system_switched_off_and_on_switches_it_back(servers, env, tmp_path, capsys,
                                                                               rconn: redis.Redis):  # fmt: skip
    site, receiver = servers
    config = str(write_config(tmp_path / "k.toml", site.url, receiver.url))
    switch_off(rconn, "hooks-to-sq", "Squarespace: the extension was uninstalled")
    code, out, err = run(capsys, "integrations", "--config", config)
    assert code == 0, err
    assert out == "hooks-to-sq  sq-hooks → sq-stock  [orders]  switched off: Squarespace: the extension was " \
        "uninstalled\n"
    code, out, err = run(capsys, "integrations", "on", "hooks-to-sq", "--config", config)
    assert (code, out) == (0, "hooks-to-sq: switched on (it was off: Squarespace: the extension was uninstalled)\n")
    assert switched_off(rconn, "hooks-to-sq") is None
    code, out, _ = run(capsys, "integrations", "--config", config)
    assert out.endswith("[orders]  on\n")
    code, _, err = run(capsys, "integrations", "on", "nope", "--config", config)
    assert code == 2 and "no integration 'nope' in the config; it has hooks-to-sq" in err
    code, _, err = run(capsys, "integrations", "on", "--config", config)
    assert code == 2 and "name the integration to switch on" in err
