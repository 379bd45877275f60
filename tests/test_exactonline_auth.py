"""Exact OAuth2: signed state, token exchange and refresh, the Redis-locked single refresh, no leaks."""

from __future__ import annotations

import json
import logging
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.exactonline.auth import (
    ExactAuth,
    OAuthApp,
    Tokens,
    TokenStore,
    authorize_url,
    complete_authorization,
    exchange_code,
    refresh_tokens,
    sign_state,
    verify_state,
)
from connectors.exactonline.errors import (
    ExactAuthError,
    ExactResponseError,
    ExactUnavailable,
    InvalidState,
    TokenRefreshBusy,
)
from gateway import vault
from gateway.errors import PermanentError, TransientError
from tests.exactonline_support import ExactResponses, FakeClock

pytestmark = pytest.mark.integration
R = ExactResponses
BASE = "https://start.exactonline.test"
APP = OAuthApp(BASE, "client-id-1", "client-secret-XYZ", "https://koppel.example/oauth/exact")
STATE_SECRET = "state-signing-secret"


class FakeExact:
    """Token endpoint plus one API endpoint, rotating single-use refresh tokens like Exact."""

    def __init__(self, clock: FakeClock, *, delay: float = 0.0) -> None:
        self.clock = clock
        self.delay = delay
        self.generation = 1
        self.refresh_calls = 0
        self.too_early = False
        self.lock = threading.Lock()

    def current(self) -> tuple[str, str]:
        return f"access-token-{self.generation}", f"refresh-token-{self.generation}"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/oauth2/token":
            form = parse_qs(request.content.decode())
            if form["client_secret"] != [APP.client_secret]:
                return httpx.Response(400, json={"error": "invalid_client"})
            if form["grant_type"] == ["authorization_code"]:
                return httpx.Response(200, json=R.tokens(*self.current()))
            time.sleep(self.delay)
            with self.lock:
                self.refresh_calls += 1
                if self.too_early:
                    return httpx.Response(401, json={"error_description": "Access token not expired"})
                if form["refresh_token"] != [self.current()[1]]:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                self.generation += 1
                return httpx.Response(200, json=R.tokens(*self.current()))
        if request.headers.get("authorization") == f"Bearer {self.current()[0]}":
            return httpx.Response(200, json=R.single({"ok": True}))
        return httpx.Response(401)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def exact(clock):
    return FakeExact(clock)


@pytest.fixture
def http(exact):
    with httpx.Client(transport=httpx.MockTransport(exact)) as client:
        yield client


@pytest.fixture
def store(rconn) -> TokenStore:
    return TokenStore(rconn, "exact-main")


def stored(store: TokenStore, clock: FakeClock, generation: int = 1, left: float = 600) -> None:
    store.save(Tokens(f"access-token-{generation}", f"refresh-token-{generation}", clock() + left, clock()))


def test_authorize_url_carries_client_redirect_and_state():
    url = authorize_url(BASE + "/", "cid", "https://k.example/cb?x=1", "st.ate")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == BASE + "/api/oauth2/auth"
    assert parse_qs(parts.query) == {
        "client_id": ["cid"], "redirect_uri": ["https://k.example/cb?x=1"], "response_type": ["code"],
        "state": ["st.ate"],
    }  # fmt: skip


def test_state_round_trips_the_system_id(clock):
    state = sign_state(STATE_SECRET, "exact-main", clock=clock)
    assert verify_state(STATE_SECRET, state, clock=clock) == "exact-main"
    assert sign_state(STATE_SECRET, "exact-main", clock=clock) != state  # a nonce: states are not guessable


def test_tampered_state_is_rejected(clock):
    state = sign_state(STATE_SECRET, "exact-main", clock=clock)
    forged = state[:-2] + ("AA" if state[-2:] != "AA" else "BB")
    with pytest.raises(InvalidState, match="bad signature"):
        verify_state(STATE_SECRET, forged, clock=clock)
    with pytest.raises(InvalidState):
        verify_state("another-secret", state, clock=clock)
    with pytest.raises(InvalidState):
        verify_state(STATE_SECRET, "not-a-state", clock=clock)


def test_expired_state_is_rejected(clock):
    state = sign_state(STATE_SECRET, "exact-main", clock=clock)
    clock.advance(601)
    with pytest.raises(InvalidState, match="expired") as caught:
        verify_state(STATE_SECRET, state, clock=clock)
    assert isinstance(caught.value, PermanentError)


def test_exchange_code_reads_expires_in_given_as_a_string(http, clock):
    tokens = exchange_code(http, APP, "the-code", clock=clock)
    assert tokens.access_token == "access-token-1"
    assert tokens.expires_at == clock() + 600
    assert "access-token-1" not in repr(tokens) and "refresh-token-1" not in repr(tokens)


def test_complete_authorization_stores_tokens_for_the_signed_system(http, rconn, clock):
    state = sign_state(STATE_SECRET, "exact-main", clock=clock)
    system = complete_authorization(http, APP, rconn, secret=STATE_SECRET, state=state, code="c", clock=clock)
    assert system == "exact-main"
    raw = rconn.get("koppel:exact:tokens:exact-main")
    assert b"refresh-token-1" not in raw  # encrypted at rest (gateway/vault.py)
    saved = json.loads(vault.vault().open(raw, what="tokens", fix="-"))
    assert saved["refresh_token"] == "refresh-token-1"


def test_token_endpoint_failures_are_classified_without_secrets(clock):
    def answer(status: int, body: object) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body)))

    with pytest.raises(ExactAuthError) as caught:
        refresh_tokens(answer(400, {"error": "invalid_grant"}), APP, "refresh-SECRET-1", clock=clock)
    assert "invalid_grant" in str(caught.value)
    assert "refresh-SECRET-1" not in str(caught.value) and APP.client_secret not in str(caught.value)
    with pytest.raises(ExactUnavailable) as unavailable:
        refresh_tokens(answer(503, {}), APP, "refresh-SECRET-1", clock=clock)
    assert isinstance(unavailable.value, TransientError)
    with pytest.raises(ExactUnavailable):  # rate-limited: nothing was spent, the same refresh token works later
        refresh_tokens(answer(429, {}), APP, "refresh-SECRET-1", clock=clock)
    with pytest.raises(TokenRefreshBusy):
        refresh_tokens(answer(401, {"error_description": "Access token not expired"}), APP, "r", clock=clock)
    with pytest.raises(ExactResponseError):
        refresh_tokens(answer(200, {"access_token": "a"}), APP, "r", clock=clock)


def test_token_is_used_until_less_than_30_seconds_are_left(http, store, exact, clock):
    stored(store, clock, left=31)
    auth = ExactAuth(store, APP, http, clock=clock)
    assert auth.access_token() == "access-token-1"
    assert exact.refresh_calls == 0
    clock.advance(2)
    assert auth.access_token() == "access-token-2"
    assert exact.refresh_calls == 1
    assert store.load().refresh_token == "refresh-token-2"  # rotated token saved


def test_a_401_refreshes_once_and_retries(http, store, exact, clock):
    # Exact no longer accepts access-token-1 although our clock says it has 10 minutes left.
    store.save(Tokens("access-token-1", "refresh-token-2", clock() + 600, clock()))
    exact.generation = 2
    auth = ExactAuth(store, APP, http, clock=clock)
    response = http.get(BASE + "/api/v1/1/crm/Accounts", auth=auth)
    assert response.status_code == 200
    assert exact.refresh_calls == 1 and auth.refreshes == 1


def test_a_second_401_after_the_refresh_is_returned_not_looped(store, clock):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json=R.tokens("access-token-2", "refresh-token-2"))
        return httpx.Response(401)

    stored(store, clock)
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        response = http.get(BASE + "/api/v1/1/x", auth=ExactAuth(store, APP, http, clock=clock))
    assert response.status_code == 401
    assert calls == ["/api/v1/1/x", "/api/oauth2/token", "/api/v1/1/x"]


def test_no_refresh_when_another_process_already_refreshed(http, store, exact, clock):
    stored(store, clock, left=10)
    first, second = ExactAuth(store, APP, http, clock=clock), ExactAuth(store, APP, http, clock=clock)
    assert first.access_token() == "access-token-2"
    fresh = second.refresh(stale="access-token-1", rejected=True)  # second saw a 401 with the old token
    assert fresh.access_token == "access-token-2"
    assert exact.refresh_calls == 1


def test_concurrent_expiry_causes_exactly_one_refresh(rconn, clock):
    exact = FakeExact(clock, delay=0.05)
    store = TokenStore(rconn, "exact-main")
    stored(store, clock, left=5)
    results: list[str] = []
    barrier = threading.Barrier(8)
    with httpx.Client(transport=httpx.MockTransport(exact)) as http:

        def worker() -> None:
            auth = ExactAuth(store, APP, http, clock=clock)  # one per "process"
            barrier.wait()
            results.append(http.get(BASE + "/api/v1/1/x", auth=auth).json()["d"]["ok"])

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert results == [True] * 8
    assert exact.refresh_calls == 1


def test_busy_refresh_lock_is_a_retryable_error(http, store, rconn, clock):
    stored(store, clock, left=5)
    held = rconn.lock(store.lock_key, timeout=30)
    assert held.acquire()
    try:
        with pytest.raises(TokenRefreshBusy) as caught:
            ExactAuth(store, APP, http, lock_wait=0.1, clock=clock).access_token()
        assert isinstance(caught.value, TransientError)
    finally:
        held.release()


def test_refused_early_proactive_refresh_keeps_the_current_token(http, store, exact, clock):
    stored(store, clock, left=20)
    exact.too_early = True
    assert ExactAuth(store, APP, http, clock=clock).access_token() == "access-token-1"


def test_missing_tokens_ask_for_the_set_up(http, store, clock):
    with pytest.raises(ExactAuthError, match="complete the authorisation"):
        ExactAuth(store, APP, http, clock=clock).access_token()


def test_unreadable_stored_tokens_count_as_missing(http, store, rconn, clock):
    rconn.set(store.key, "{not json")
    assert store.load() is None


def test_tokens_never_reach_logs_or_errors(http, store, exact, clock, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="connectors")  # `koppel demo` (test_demo) sets it to WARNING in-process
    stored(store, clock, left=5)
    auth = ExactAuth(store, APP, http, clock=clock, recheck=0)  # reads the store each time: sees the save below
    http.get(BASE + "/api/v1/1/x", auth=auth)
    exact.generation = 9  # our refresh token is now dead
    store.save(Tokens("access-token-2", "refresh-token-2", clock() - 1, clock()))
    with pytest.raises(ExactAuthError) as caught:
        auth.access_token()
    secrets = ["access-token-1", "refresh-token-1", "access-token-2", "refresh-token-2", APP.client_secret]
    text = caplog.text + str(caught.value) + repr(caught.value) + repr(store.load())
    assert "refreshed" in caplog.text
    assert not [s for s in secrets if s in text]


def test_a_refused_refresh_is_noted_for_the_console_until_tokens_are_saved_again(http, store, exact, clock):
    store.save(Tokens("access-token-1", "refresh-token-0", clock() - 1, clock()))  # a dead refresh token
    assert store.refresh_refused() is None
    with pytest.raises(ExactAuthError):
        ExactAuth(store, APP, http, clock=clock).access_token()
    noted = store.refresh_refused()
    assert noted is not None and noted[0] == clock() and "invalid_grant" in noted[1] and "koppel connect" in noted[1]
    assert "refresh-token-0" not in noted[1]
    stored(store, clock)  # a new consent (or a refresh that worked) saves tokens: the note is gone
    assert store.refresh_refused() is None
    store.note_refresh_refused("x")
    store.delete()
    assert store.refresh_refused() is None
