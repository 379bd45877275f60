"""connectors/tokens.py, the OAuth2 token handling every authorization-code connector shares, against a toy
system whose refresh tokens are single use: the expiry margin, one refresh after a 401, the refresh race under
the Redis lock, a revoked refresh token, the token answers, and no secret in logs, messages or reprs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.tokens import AUTH_RETRY, RefreshingAuth, TokenEndpoint, Tokens, TokenStore, consent_url
from gateway.errors import AuthFailed, BadResponse, TransientError, Unavailable

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0
SYSTEM = "toy-1"
SECRET = "client-SECRET-toy"


class ToyUnavailable(Unavailable):
    pass


class ToyRefused(AuthFailed):
    pass


class ToyMalformed(BadResponse):
    pass


class ToyBusy(TransientError):
    pass


ENDPOINT = TokenEndpoint(title="Toy", where="Toy token endpoint", unavailable=ToyUnavailable, refused=ToyRefused,
                         malformed=ToyMalformed, busy=ToyBusy)  # fmt: skip
EARLY = TokenEndpoint(title="Toy", where="Toy token endpoint", unavailable=ToyUnavailable, refused=ToyRefused,
                      malformed=ToyMalformed, busy=ToyBusy, early_refusal="not expired")  # fmt: skip



@dataclass(frozen=True)
class ToyApp:
    client_id: str = "toy-client"
    client_secret: str = field(default=SECRET, repr=False)
    redirect_uri: str = "https://koppel.example/oauth/toy-1/callback"
    token_url: str = "https://toy.example/token"


APP = ToyApp()


class ToyAuth(RefreshingAuth):
    endpoint = ENDPOINT
    default_margin = 60.0


class EarlyAuth(RefreshingAuth):
    endpoint = EARLY
    default_margin = 30.0


class Toy:
    """A token endpoint with rotating single-use refresh tokens, and an API that takes the newest access token."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.generation = 1
        self.refresh_calls = 0
        self.api_calls: list[tuple[str, bool]] = []
        """(Authorization header, sent again after a refresh) of each API call, as it came."""
        self.revoked = False
        self.too_early = False
        self.delay = delay
        self.lock = threading.Lock()

    def current(self) -> tuple[str, str]:
        return f"access-SECRET-{self.generation}", f"refresh-SECRET-{self.generation}"

    def answer(self) -> httpx.Response:
        access, refresh = self.current()
        return httpx.Response(200, json={"access_token": access, "refresh_token": refresh, "expires_in": "3600"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            form = {key: value[0] for key, value in parse_qs(request.content.decode()).items()}
            if form["client_secret"] != SECRET:
                return httpx.Response(401, json={"error": "invalid_client"})
            if form["grant_type"] == "authorization_code":
                return self.answer()
            time.sleep(self.delay)
            with self.lock:
                self.refresh_calls += 1
                if self.too_early:
                    return httpx.Response(401, json={"error_description": "Access token not expired"})
                if self.revoked or form["refresh_token"] != self.current()[1]:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                self.generation += 1
                return self.answer()
        self.api_calls.append((request.headers.get("authorization", ""), bool(request.extensions.get(AUTH_RETRY))))
        if request.headers.get("authorization") == f"Bearer {self.current()[0]}":
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(401)


@pytest.fixture
def toy() -> Toy:
    return Toy()


@pytest.fixture
def http(toy):
    with httpx.Client(transport=httpx.MockTransport(toy)) as client:
        yield client


@pytest.fixture
def store(rconn) -> TokenStore:
    return TokenStore(rconn, SYSTEM)


def stored(store: TokenStore, left: float, generation: int = 1) -> None:
    store.save(Tokens(f"access-SECRET-{generation}", f"refresh-SECRET-{generation}", NOW + left, NOW))


# -- the expiry margin -----------------------------------------------------------------------------------------


def test_a_token_with_the_margin_left_is_used_and_one_with_less_is_refreshed(http, toy, store):
    stored(store, left=60)
    now = [NOW]
    auth = ToyAuth(store, APP, http, clock=lambda: now[0])
    assert auth.access_token() == "access-SECRET-1"
    assert toy.refresh_calls == 0
    now[0] += 0.5  # 59.5 s left: under the 60 s margin
    assert auth.access_token() == "access-SECRET-2"
    assert toy.refresh_calls == 1 and auth.refreshes == 1
    saved = store.load()
    assert saved is not None and saved.refresh_token == "refresh-SECRET-2"  # the rotated one is kept
    assert saved.expires_at == now[0] + 3600  # expires_in as text is read


def test_the_margin_is_the_connectors_own_or_the_callers(http, toy, store):
    stored(store, left=45)
    assert EarlyAuth(store, APP, http, clock=lambda: NOW).access_token() == "access-SECRET-1"  # 30 s margin
    assert ToyAuth(store, APP, http, refresh_margin=10, clock=lambda: NOW).access_token() == "access-SECRET-1"
    assert ToyAuth(store, APP, http, clock=lambda: NOW).access_token() == "access-SECRET-2"  # 60 s margin
    assert toy.refresh_calls == 1


# -- a 401 -------------------------------------------------------------------------------------------------------


def test_a_401_gets_one_refresh_and_one_retry_marked_for_the_kit(http, toy, store):
    toy.generation = 2  # the system no longer takes access-SECRET-1 although it has time left
    store.save(Tokens("access-SECRET-1", "refresh-SECRET-2", NOW + 3000, NOW))
    auth = ToyAuth(store, APP, http, clock=lambda: NOW)
    response = http.get("https://toy.example/api/things", auth=auth)
    assert response.status_code == 200
    assert toy.refresh_calls == 1
    assert toy.api_calls == [("Bearer access-SECRET-1", False), ("Bearer access-SECRET-3", True)]


def test_a_401_to_the_refreshed_token_is_returned_not_refreshed_again(store):
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "a-2", "refresh_token": "r-2", "expires_in": 3600})
        return httpx.Response(401)

    stored(store, left=3000)
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        response = http.get("https://toy.example/api/x", auth=ToyAuth(store, APP, http, clock=lambda: NOW))
    assert response.status_code == 401
    assert calls == ["/api/x", "/token", "/api/x"]


# -- the copy in memory -----------------------------------------------------------------------------------------


class CountingStore(TokenStore):
    """A TokenStore counting its reads of Redis."""

    loads = 0

    def load(self) -> Tokens | None:
        self.loads += 1
        return super().load()


def test_a_process_reads_the_stored_tokens_once_while_its_copy_is_young(http, toy, rconn):
    store = CountingStore(rconn, SYSTEM)
    stored(store, left=3000)
    auth = ToyAuth(store, APP, http, clock=lambda: NOW)
    assert [http.get("https://toy.example/api/x", auth=auth).status_code for _ in range(5)] == [200] * 5
    assert store.loads == 1 and toy.refresh_calls == 0
    fresh = ToyAuth(store, APP, http, clock=lambda: NOW, recheck=0)  # no copy: the store is read for each request
    assert [http.get("https://toy.example/api/x", auth=fresh).status_code for _ in range(3)] == [200] * 3
    assert store.loads == 4


def test_what_another_process_stored_is_read_when_the_api_refuses_the_copy(http, toy, store):
    stored(store, left=3000)
    auth = ToyAuth(store, APP, http, clock=lambda: NOW)
    assert auth.access_token() == "access-SECRET-1"  # now in this process's memory
    toy.generation = 2  # another process refreshed: the system takes only its new access token
    stored(store, left=3600, generation=2)
    assert http.get("https://toy.example/api/x", auth=auth).status_code == 200
    assert toy.refresh_calls == 0  # its new refresh token was not spent again
    assert toy.api_calls == [("Bearer access-SECRET-1", False), ("Bearer access-SECRET-2", True)]
    assert http.get("https://toy.example/api/x", auth=auth).status_code == 200  # and kept: no 401 any more
    assert toy.api_calls[-1] == ("Bearer access-SECRET-2", False)


def test_an_expiring_copy_is_refreshed_from_what_the_store_holds_not_from_memory(http, toy, store):
    stored(store, left=120)
    now = [NOW]
    auth = ToyAuth(store, APP, http, clock=lambda: now[0])
    assert auth.access_token() == "access-SECRET-1"
    toy.generation = 2  # another process refreshed (its refresh token spent SECRET-1's)
    stored(store, left=3600, generation=2)
    now[0] += 61  # 59 s left on the copy: under the margin
    assert auth.access_token() == "access-SECRET-2"  # read under the lock, the dead refresh token not sent
    assert toy.refresh_calls == 0


# -- the refresh race under the lock ---------------------------------------------------------------------------


def test_a_refresh_waiting_on_the_lock_takes_what_the_holder_stored(http, toy, store):
    stored(store, left=5)
    held = store.lock(timeout=30, blocking_timeout=1)
    assert held.acquire()
    found: list[str] = []
    waiter = threading.Thread(target=lambda: found.append(ToyAuth(store, APP, http, clock=lambda: NOW).access_token()))
    try:
        waiter.start()
        stored(store, left=3600, generation=7)  # what the lock's holder got from the system
    finally:
        held.release()
    waiter.join(timeout=30)
    assert found == ["access-SECRET-7"]
    assert toy.refresh_calls == 0  # the single-use refresh token was not spent again


def test_workers_finding_the_token_expiring_at_once_spend_the_refresh_token_once(store):
    toy = Toy(delay=0.05)
    stored(store, left=5)
    answers: list[int] = []
    barrier = threading.Barrier(8)
    with httpx.Client(transport=httpx.MockTransport(toy)) as http:

        def worker() -> None:
            auth = ToyAuth(store, APP, http, clock=lambda: NOW)  # one per worker process
            barrier.wait()
            answers.append(http.get("https://toy.example/api/x", auth=auth).status_code)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert answers == [200] * 8
    assert toy.refresh_calls == 1


def test_a_lock_held_too_long_is_transient_naming_the_system(http, store):
    stored(store, left=5)
    held = store.lock(timeout=30, blocking_timeout=1)
    assert held.acquire()
    try:
        with pytest.raises(ToyBusy, match=f"Toy system {SYSTEM}: token refresh lock busy"):
            ToyAuth(store, APP, http, lock_wait=0.1, clock=lambda: NOW).access_token()
    finally:
        held.release()


# -- refused and missing authorisations ------------------------------------------------------------------------


def test_a_revoked_refresh_token_is_auth_failed_naming_koppel_connect_and_no_secret(http, toy, store, caplog):
    caplog.set_level(logging.DEBUG, logger="connectors")
    stored(store, left=5)
    toy.revoked = True
    with pytest.raises(ToyRefused) as refused:
        ToyAuth(store, APP, http, clock=lambda: NOW).access_token()
    message = str(refused.value)
    assert isinstance(refused.value, AuthFailed)
    assert "invalid_grant" in message and f"koppel connect {SYSTEM}" in message
    assert toy.refresh_calls == 1
    text = message + repr(refused.value) + caplog.text + repr(store.load()) + repr(store)
    assert "SECRET" not in text


def test_a_refused_code_without_a_system_names_the_command_in_general():
    answer = httpx.MockTransport(lambda r: httpx.Response(400, json={"error": "invalid_grant"}))
    with httpx.Client(transport=answer) as http, pytest.raises(ToyRefused) as refused:
        ENDPOINT.exchange(http, APP, "code-SECRET")
    assert "run `koppel connect` for the Toy system again" in str(refused.value)
    assert "SECRET" not in str(refused.value)


def test_no_stored_tokens_names_the_command(http, store):
    with pytest.raises(ToyRefused, match=f"no Toy authorisation for system '{SYSTEM}'.*koppel connect {SYSTEM}"):
        ToyAuth(store, APP, http, clock=lambda: NOW).access_token()


def test_unreadable_stored_tokens_count_as_missing_and_say_so(store, rconn, caplog):
    rconn.set(store.key, "{not json")
    assert store.load() is None
    assert f"koppel connect {SYSTEM}" in caplog.text


# -- a refresh refused as too early (Exact's quirk) -------------------------------------------------------------


def test_a_refresh_refused_as_too_early_keeps_the_token_unless_the_api_refused_it(http, toy, store):
    stored(store, left=20)
    toy.too_early = True
    auth = EarlyAuth(store, APP, http, clock=lambda: NOW)
    assert auth.access_token() == "access-SECRET-1"  # near expiry only: the current token still works
    with pytest.raises(ToyBusy, match="not expired"):
        auth.refresh(stale="access-SECRET-1", rejected=True)  # the API answered 401 to it
    with pytest.raises(ToyRefused):  # without the quirk a 401 from the token endpoint is a refusal
        ToyAuth(store, APP, http, clock=lambda: NOW).access_token()


# -- the token answers -------------------------------------------------------------------------------------------


def test_the_code_is_traded_with_the_app_and_replaces_the_stored_tokens(http, store):
    stored(store, left=5, generation=4)
    tokens = ENDPOINT.authorise(http, APP, store, "the-code", clock=lambda: NOW)
    assert store.load() == tokens and tokens.access_token == "access-SECRET-1"
    assert (tokens.expires_at, tokens.obtained_at) == (NOW + 3600, NOW)
    assert "SECRET" not in repr(tokens) and "SECRET" not in repr(APP)


@pytest.mark.parametrize(
    ("answer", "endpoint", "error"),
    [
        (httpx.Response(503), ENDPOINT, ToyUnavailable),
        (httpx.Response(429), ENDPOINT, ToyUnavailable),
        (httpx.Response(200, json={"access_token": "a", "expires_in": 60}), ENDPOINT, ToyMalformed),
        (httpx.Response(200, json={"access_token": "a", "refresh_token": "r"}), ENDPOINT, ToyMalformed),
        (httpx.Response(200, json={"access_token": "a", "refresh_token": "r", "expires_in": "?"}), ENDPOINT,
         ToyMalformed),
        (httpx.Response(200, text="<html>"), ENDPOINT, ToyMalformed),
        (httpx.Response(200, json=["a"]), ENDPOINT, ToyMalformed),
    ],
)
def test_token_answers_are_classified(answer, endpoint, error):
    with httpx.Client(transport=httpx.MockTransport(lambda r: answer)) as http, pytest.raises(error) as caught:
        endpoint.refresh(http, APP, "refresh-SECRET-1", clock=lambda: NOW)
    assert "SECRET" not in str(caught.value)


def test_an_unreachable_endpoint_is_unavailable_and_a_missing_lifetime_may_have_a_default():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(down)) as http, pytest.raises(ToyUnavailable, match="unreachable"):
        ENDPOINT.exchange(http, APP, "code")
    hourly = TokenEndpoint("Toy", "Toy", ToyUnavailable, ToyRefused, ToyMalformed, ToyBusy, default_lifetime=3600)
    answer = httpx.Response(200, json={"access_token": "a", "refresh_token": "r"})
    with httpx.Client(transport=httpx.MockTransport(lambda r: answer)) as http:
        assert hourly.exchange(http, APP, "code", clock=lambda: NOW).expires_at == NOW + 3600


def test_the_consent_url_carries_the_app_the_scope_when_given_and_the_state():
    url = consent_url("https://toy.example/authorize", "cid", "https://k.example/cb?x=1", "st.ate", scope="api")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://toy.example/authorize"
    assert parse_qs(parts.query) == {"client_id": ["cid"], "redirect_uri": ["https://k.example/cb?x=1"],
                                     "response_type": ["code"], "scope": ["api"], "state": ["st.ate"]}  # fmt: skip
    assert "scope" not in consent_url("https://toy.example/authorize", "cid", "https://k.example/cb", "s")
