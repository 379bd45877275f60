"""Secrets at rest (gateway/vault.py): stored OAuth tokens and issued webhook secrets encrypted with
KOPPEL_SECRET_KEY, rotated with KOPPEL_SECRET_KEY_PREVIOUS, plain records migrated, a wrong or missing key
named in one clear error."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken

from connectors import issued
from connectors.exactonline.auth import ENDPOINT, ExactAuth, ExactAuthError, OAuthApp, TokenStore
from connectors.tokens import Tokens
from gateway import cli, vault

pytestmark = pytest.mark.integration

KEY = "koppel:exact:tokens:exact"
TOKENS = Tokens("access-SECRET", "refresh-SECRET", 4_000_000_000.0, 1_000.0)
APP = OAuthApp("https://start.exactonline.test", "client-id", "client-SECRET", "https://koppel.test/oauth/exact")


@pytest.fixture
def key_a(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    key = vault.new_key()
    monkeypatch.setenv(vault.KEY_VAR, key)
    monkeypatch.delenv(vault.PREVIOUS_VAR, raising=False)
    monkeypatch.setenv("KOPPEL_DATA_DIR", str(tmp_path / "data"))  # no key file there
    return key


def test_stored_tokens_are_not_readable_in_redis_and_open_with_the_key(rconn: redis.Redis, key_a: str):
    TokenStore(rconn, "exact").save(TOKENS)
    raw = rconn.get(KEY)
    assert raw is not None and b"SECRET" not in raw
    with pytest.raises(ValueError):
        json.loads(raw)
    assert json.loads(Fernet(key_a).decrypt(raw))["refresh_token"] == "refresh-SECRET"
    assert TokenStore(rconn, "exact").load() == TOKENS


def test_a_rotated_key_opens_old_records_and_rewrites_them_under_the_new_key(rconn, key_a, monkeypatch):
    TokenStore(rconn, "exact").save(TOKENS)
    key_b = vault.new_key()
    monkeypatch.setenv(vault.KEY_VAR, key_b)
    monkeypatch.setenv(vault.PREVIOUS_VAR, f"{vault.new_key()}, {key_a}")
    assert TokenStore(rconn, "exact").load() == TOKENS
    raw = rconn.get(KEY)
    assert json.loads(Fernet(key_b).decrypt(raw))["access_token"] == "access-SECRET"
    with pytest.raises(InvalidToken):
        Fernet(key_a).decrypt(raw)
    monkeypatch.delenv(vault.PREVIOUS_VAR)  # the old key can go once every record was read
    assert TokenStore(rconn, "exact").load() == TOKENS


def test_a_plain_json_record_is_read_once_and_written_back_encrypted(rconn, key_a):
    rconn.set(KEY, TOKENS.to_json())
    rconn.set(f"{KEY}:division", "42")
    store = TokenStore(rconn, "exact")
    assert store.load() == TOKENS
    raw = rconn.get(KEY)
    assert b"SECRET" not in raw and json.loads(Fernet(key_a).decrypt(raw)) == json.loads(TOKENS.to_json())
    assert store.load() == TOKENS and store.load_division() == 42


def test_the_migration_does_not_overwrite_tokens_stored_meanwhile(rconn, key_a):
    plain = TOKENS.to_json()
    rconn.set(KEY, "newer")  # another worker's refresh, stored between this one's read and its rewrite
    vault.replace_if_unchanged(rconn, KEY, plain, "sealed")
    assert rconn.get(KEY) == b"newer"


def test_a_wrong_key_is_one_clear_error_naming_both_fixes(rconn, key_a, monkeypatch):
    TokenStore(rconn, "exact").save(TOKENS)
    monkeypatch.setenv(vault.KEY_VAR, vault.new_key())
    with pytest.raises(vault.SecretUnreadable) as caught:
        TokenStore(rconn, "exact").load()
    message = str(caught.value)
    assert "another key" in message and vault.KEY_VAR in message and "koppel connect exact" in message
    # a worker's API call: the connector's auth error (no retry storm), and the operator is notified
    auth = ExactAuth(TokenStore(rconn, "exact"), APP, httpx.Client())
    with pytest.raises(ExactAuthError) as refused:
        auth.access_token()
    assert vault.KEY_VAR in str(refused.value) and "access-SECRET" not in str(refused.value)


def test_no_key_refuses_to_store_tokens_before_spending_the_code(rconn, monkeypatch, tmp_path):
    monkeypatch.delenv(vault.KEY_VAR, raising=False)
    monkeypatch.setenv("KOPPEL_DATA_DIR", str(tmp_path))
    calls: list[httpx.Request] = []
    http = httpx.Client(transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500)))
    with pytest.raises(vault.SecretKeyMissing) as caught:
        ENDPOINT.authorise(http, APP, TokenStore(rconn, "exact"), "single-use-code")
    assert vault.KEY_VAR in str(caught.value) and "koppel secret-key" in str(caught.value)
    assert calls == [] and rconn.get(KEY) is None


def test_a_key_that_is_not_a_fernet_key_is_named(rconn, monkeypatch):
    monkeypatch.setenv(vault.KEY_VAR, "hunter2")
    with pytest.raises(vault.SecretUnreadable, match="KOPPEL_SECRET_KEY is not a Fernet key"):
        TokenStore(rconn, "exact").save(TOKENS)


def test_the_data_directory_key_file_is_generated_owner_only_and_used(tmp_path, monkeypatch):
    data = tmp_path / "data"
    key = vault.ensure_key_file(data)
    path = data / vault.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(data.stat().st_mode) == 0o700
    assert vault.ensure_key_file(data) == key  # kept, never replaced
    monkeypatch.delenv(vault.KEY_VAR, raising=False)
    monkeypatch.setenv("KOPPEL_DATA_DIR", str(data))
    sealed = vault.vault().seal("x", what="x")
    assert Fernet(key).decrypt(sealed.encode()) == b"x"


def test_issued_webhook_secrets_are_encrypted_and_plain_entries_still_verify(rconn, key_a):
    issued.remember(rconn, "sq", "sub-1", "whsec-SECRET-1")
    raw = rconn.hget(issued.issued_key("sq"), "sub-1")
    assert raw is not None and b"SECRET" not in raw
    issued.rotated(rconn, "sq", "sub-1", "whsec-SECRET-2", grace=60, now=1000)
    rconn.hset(issued.issued_key("sq"), "sub-0", json.dumps({"secret": "whsec-PLAIN"}))  # stored before encryption
    found = issued.live(rconn.hgetall(issued.issued_key("sq")), now=1001)
    assert set(found) == {"whsec-SECRET-2", "whsec-SECRET-1", "whsec-PLAIN"}


def test_secret_key_command_prints_a_usable_key(capsys):
    assert cli.main(["secret-key"]) == 0
    key = capsys.readouterr().out.strip()
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"


REPO = Path(__file__).resolve().parents[1]
LOGGING_SCRIPT = """
import logging
from gateway.cli import setup_logging

setup_logging()
log = logging.getLogger("koppel.test")
log.error("cannot reach %s", "redis://:s3cret-pw@redis.internal:6379/0")
log.warning("sentinel rediss://koppel:s3cret-pw@localhost/1?password=s3cret-pw answered no")
try:
    raise ConnectionError("Redis at redis://koppel:s3cret-pw@localhost:6379/0 refused")
except ConnectionError:
    log.exception("worker stopped")
"""


def test_a_redis_password_is_redacted_from_log_lines_and_tracebacks():
    done = subprocess.run([sys.executable, "-c", LOGGING_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    err = done.stderr
    assert "s3cret-pw" not in err, err
    assert "cannot reach redis://:***@redis.internal:6379/0" in err
    assert "rediss://koppel:***@localhost/1?password=*** answered no" in err
    assert "Traceback" in err and "Redis at redis://koppel:***@localhost:6379/0 refused" in err


def test_a_redis_refusing_the_password_is_one_sentence_without_it(redis_server, tmp_path, monkeypatch, capsys):
    wrong = f"redis://:wrong-s3cret@127.0.0.1:{redis_server.port}/0"
    monkeypatch.setenv("REDIS_URL", wrong)
    monkeypatch.setenv("WC_SECRET", "x")
    path = tmp_path / "koppel.toml"
    path.write_text('[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n')
    assert cli.main(["inbox", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("koppel: Redis did not take Koppel's connection") and "REDIS_URL" in err
    assert "wrong-s3cret" not in err and "Traceback" not in err


def test_serve_refuses_a_malformed_key_in_one_sentence(redis_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(vault.KEY_VAR, "not-a-key")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("WC_SECRET", "x")
    path = tmp_path / "koppel.toml"
    path.write_text('[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC_SECRET"\n')
    assert cli.main(["serve", "--config", str(path), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "koppel: KOPPEL_SECRET_KEY is not a Fernet key" in err and "koppel secret-key" in err


def test_business_centrals_token_is_cached_encrypted_and_per_worker_without_a_key(rconn, key_a, monkeypatch):
    from connectors.businesscentral.auth import App, ClientCredentialsAuth, TokenCache

    issued_tokens: list[str] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        issued_tokens.append(f"bc-access-SECRET-{len(issued_tokens)}")
        return httpx.Response(200, json={"access_token": issued_tokens[-1], "expires_in": 3600})

    app = App("tenant", "client", "client-SECRET")
    http = httpx.Client(transport=httpx.MockTransport(token_endpoint))
    auth = ClientCredentialsAuth(app, http, TokenCache(rconn, "bc"))
    assert auth.token() == "bc-access-SECRET-0"
    (key,) = rconn.keys("*bc_token*")
    assert b"SECRET" not in rconn.get(key)
    assert ClientCredentialsAuth(app, http, TokenCache(rconn, "bc")).token() == "bc-access-SECRET-0"  # shared
    rconn.delete(key)
    monkeypatch.delenv(vault.KEY_VAR)
    uncached = ClientCredentialsAuth(app, http, TokenCache(rconn, "bc"))
    assert uncached.token() == uncached.token() == "bc-access-SECRET-1"  # one request, kept by this worker
    assert rconn.keys("*bc_token*") == [] and len(issued_tokens) == 2
