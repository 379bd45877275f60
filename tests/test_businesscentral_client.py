"""BusinessCentralClient and its client-credentials auth against respx-faked Microsoft answers: the token
request and its cache, AADSTS refusals, one new token on 401, the company, OData paging, BC's errors,
ETags on PATCH, 429/503 retries."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest
import redis
import respx
from hypothesis import given
from hypothesis import strategies as st

from connectors.businesscentral.auth import SCOPE, App, ClientCredentialsAuth, TokenCache, aadsts_code, token_error
from connectors.businesscentral.client import BusinessCentralClient, Retry, any_of, eq, quote
from connectors.businesscentral.errors import (
    BusinessCentralAuthError,
    BusinessCentralConflict,
    BusinessCentralNotFound,
    BusinessCentralRequestError,
    BusinessCentralResponseError,
    BusinessCentralUnavailable,
    RateLimited,
)
from connectors.businesscentral.sandbox.store import parse_filter
from gateway.errors import AuthFailed, NotFound, PermanentError, Rejected

LOGIN = "https://login.example"
API = "https://api.example"
TENANT = "contoso.onmicrosoft.com"
TOKEN_URL = f"{LOGIN}/{TENANT}/oauth2/v2.0/token"
ROOT = f"{API}/v2.0/production/api/v2.0"
COMPANY = "5a1f0000-0000-4000-8000-000000000001"
PREFIX = f"{ROOT}/companies({COMPANY})"
SECRET = "s3cr3t-value-of-the-app"
NOW = 1_795_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def token_answer(token: str = "tok-1", expires_in: int = 3599) -> httpx.Response:
    return httpx.Response(200, json={"token_type": "Bearer", "expires_in": expires_in, "access_token": token})


def aad(status: int, error: str, code: int, text: str) -> httpx.Response:
    body = {"error": error, "error_description": f"AADSTS{code}: {text} Trace ID: x", "error_codes": [code]}
    return httpx.Response(status, json=body)


def bc_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def http() -> httpx.Client:
    return httpx.Client()


def make_client(http: httpx.Client, conn: redis.Redis | None, clock: Clock, *, company: str = COMPANY,
                sleeps: list[float] | None = None) -> BusinessCentralClient:  # fmt: skip
    app = App(tenant=TENANT, client_id="app-id", client_secret=SECRET, login_url=LOGIN)
    auth = ClientCredentialsAuth(app, http, TokenCache(conn, "bc") if conn is not None else None, clock=clock)
    recorded = sleeps if sleeps is not None else []
    return BusinessCentralClient(http, base_url=API, environment="production", company=company, auth=auth,
                                 company_cache=(conn, "koppel:cache:bc:bc_company") if conn is not None else None,
                                 retry=Retry(attempts=3), sleep=recorded.append, jitter=lambda: 0.0,
                                 clock=clock)  # fmt: skip


# -- the token ------------------------------------------------------------------------------------------


def test_the_token_is_asked_with_client_credentials_and_cached_per_system(http, rconn, clock):
    with respx.mock(assert_all_called=False) as router:
        token = router.post(TOKEN_URL).mock(return_value=token_answer("tok-1"))
        listing = router.get(f"{PREFIX}/customers").mock(return_value=httpx.Response(200, json={"value": []}))
        make_client(http, rconn, clock).query("customers")
        make_client(http, rconn, clock).query("customers")  # another worker: the token from Redis
    assert token.call_count == 1
    form = parse_qs(token.calls[0].request.content.decode())
    assert form == {"grant_type": ["client_credentials"], "client_id": ["app-id"], "client_secret": [SECRET],
                    "scope": [SCOPE]}  # fmt: skip
    assert listing.calls[1].request.headers["authorization"] == "Bearer tok-1"
    assert 0 < rconn.ttl("koppel:cache:bc:bc_token") <= 3599


def test_a_token_is_renewed_before_it_expires(http, rconn, clock):
    with respx.mock(assert_all_called=False) as router:
        token = router.post(TOKEN_URL).mock(side_effect=[token_answer("tok-1"), token_answer("tok-2")])
        listing = router.get(f"{PREFIX}/items").mock(return_value=httpx.Response(200, json={"value": []}))
        client = make_client(http, rconn, clock)
        client.query("items")
        clock.now += 3599 - 200  # less than the margin left
        client.query("items")
    assert token.call_count == 2
    assert [c.request.headers["authorization"] for c in listing.calls] == ["Bearer tok-1", "Bearer tok-2"]


class CountingCache(TokenCache):
    loads = 0

    def load(self) -> tuple[str, float] | None:
        self.loads += 1
        return super().load()


def test_a_worker_reads_the_cached_token_once_while_its_copy_is_young(http, rconn, clock):
    app = App(tenant=TENANT, client_id="app-id", client_secret=SECRET, login_url=LOGIN)
    with respx.mock(assert_all_called=False) as router:
        token = router.post(TOKEN_URL).mock(return_value=token_answer("tok-1"))
        listing = router.get(f"{PREFIX}/items").mock(return_value=httpx.Response(200, json={"value": []}))
        cache = CountingCache(rconn, "bc")
        auth = ClientCredentialsAuth(app, http, cache, clock=clock)
        for _ in range(4):
            http.get(f"{PREFIX}/items", auth=auth)
        assert (cache.loads, token.call_count) == (1, 1)  # read once (empty), then the token it got
        other = CountingCache(rconn, "bc")
        uncopied = ClientCredentialsAuth(app, http, other, clock=clock, recheck=0)  # reads the cache each time
        for _ in range(3):
            http.get(f"{PREFIX}/items", auth=uncopied)
        assert (other.loads, token.call_count) == (3, 1)
    assert {c.request.headers["authorization"] for c in listing.calls} == {"Bearer tok-1"}


def test_a_401_gets_one_new_token_and_one_retry_counted_as_two_calls(http, rconn, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(side_effect=[token_answer("old"), token_answer("new")])
        refused = bc_error(401, "Authentication_InvalidCredentials", "The server has rejected the client credentials.")
        listing = router.get(f"{PREFIX}/items").mock(side_effect=[refused, httpx.Response(200, json={"value": []})])
        client = make_client(http, rconn, clock)
        assert client.query("items") == []
    assert [c.request.headers["authorization"] for c in listing.calls] == ["Bearer old", "Bearer new"]
    assert client.calls == 2


def test_a_token_refused_twice_is_auth_failed_naming_bc_setup(http, rconn, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(side_effect=[token_answer("a"), token_answer("b")])
        router.get(f"{PREFIX}/items").mock(return_value=bc_error(401, "Authentication_InvalidCredentials", "nope"))
        with pytest.raises(BusinessCentralAuthError) as info:
            make_client(http, rconn, clock).query("items")
    assert isinstance(info.value, AuthFailed)
    assert "Microsoft Entra Applications" in str(info.value)
    cached = TokenCache(rconn, "bc").load()
    assert cached is not None and cached[0] == "b"  # the refused token was replaced, not kept


@pytest.mark.parametrize(
    ("answer", "fix"),
    [
        (aad(401, "invalid_client", 7000215, "Invalid client secret provided."), "credentials.client_secret"),
        (aad(401, "invalid_client", 7000222, "The provided client secret keys are expired."), "expired"),
        (aad(400, "unauthorized_client", 700016, "Application 'x' was not found."), "settings.client_id"),
        (aad(400, "invalid_request", 90002, "Tenant 'x' not found."), "settings.tenant"),
        (aad(400, "invalid_scope", 1002012, "The provided value for scope x is not valid."), "API.ReadWrite.All"),
    ],
)
def test_aadsts_refusals_name_their_fix_and_never_the_secret(http, clock, answer, fix):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=answer)
        with pytest.raises(BusinessCentralAuthError) as info:
            make_client(http, None, clock).query("items")
    assert fix in str(info.value) and SECRET not in str(info.value)
    assert str(info.value).startswith("Business Central sign-in refused (AADSTS")


def test_an_unknown_aadsts_code_keeps_entra_ids_first_sentence():
    error = token_error({"error": "invalid_grant", "error_description": "AADSTS50000: Something odd.\r\nTrace ID: 1",
                         "error_codes": [50000]}, 400)  # fmt: skip
    assert str(error) == "Business Central sign-in refused (AADSTS50000): AADSTS50000: Something odd."


def test_a_token_endpoint_outage_is_transient(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=httpx.Response(503))
        with pytest.raises(BusinessCentralUnavailable):
            make_client(http, None, clock).query("items")


# -- the company --------------------------------------------------------------------------------------------


def test_the_company_is_resolved_by_name_once_and_cached(http, rconn, clock):
    companies = {"value": [{"id": COMPANY, "name": "CRONUS NL", "displayName": "Cronus"},
                           {"id": "other", "name": "My Company", "displayName": "Mine"}]}  # fmt: skip
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        listing = router.get(f"{ROOT}/companies").mock(return_value=httpx.Response(200, json=companies))
        router.get(f"{PREFIX}/items").mock(return_value=httpx.Response(200, json={"value": []}))
        make_client(http, rconn, clock, company="CRONUS NL").query("items")
        make_client(http, rconn, clock, company="CRONUS NL").query("items")
    assert listing.call_count == 1


def test_an_unknown_company_names_the_ones_there_are(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        only = {"value": [{"id": "1", "name": "A"}]}
        router.get(f"{ROOT}/companies").mock(return_value=httpx.Response(200, json=only))
        with pytest.raises(PermanentError, match=r"no company 'CRONUS' \(it has 'A'\): set settings.company"):
            make_client(http, None, clock, company="CRONUS").query("items")


# -- reading ----------------------------------------------------------------------------------------------------


def test_lists_follow_odata_next_links(http, clock):
    first = {"value": [{"id": "1"}], "@odata.nextLink": f"{PREFIX}/items?$skiptoken=1"}
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        listing = router.get(f"{PREFIX}/items").mock(
            side_effect=[httpx.Response(200, json=first), httpx.Response(200, json={"value": [{"id": "2"}]})]
        )
        found = make_client(http, None, clock).query("items", filter=eq("number", "A'B"), select=("id", "number"))
    assert [r["id"] for r in found] == ["1", "2"]
    assert listing.calls[0].request.url.params["$filter"] == "number eq 'A''B'"
    assert listing.calls[0].request.url.params["$select"] == "id,number"
    assert listing.calls[1].request.url.params["$skiptoken"] == "1"


def test_a_next_link_to_another_host_is_not_followed(http, clock):
    body = {"value": [], "@odata.nextLink": "https://evil.example/items?$skiptoken=1"}
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/items").mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(BusinessCentralResponseError, match="another host"):
            make_client(http, None, clock).query("items")


def test_numbers_are_found_in_chunks_case_insensitively(http, clock):
    numbers = [f"sku-{n}" for n in range(20)]

    def answer(request: httpx.Request) -> httpx.Response:
        asked = [part.split("'")[1] for part in request.url.params["$filter"].split(" or ")]
        return httpx.Response(200, json={"value": [{"id": f"id-{a}", "number": a.upper()} for a in asked]})

    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        listing = router.get(f"{PREFIX}/items").mock(side_effect=answer)
        found = make_client(http, None, clock).find_numbers("items", [*numbers, "SKU-1"])
    assert listing.call_count == 2
    assert found["sku-3"]["number"] == "SKU-3" and found["SKU-1"] == found["sku-1"]


def test_quoting():
    assert quote("O'Brien") == "'O''Brien'"
    assert any_of("number", ["A", "B"]) == "number eq 'A' or number eq 'B'"


# -- errors and retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(400, "BadRequest_PropertyNotFound", BusinessCentralRequestError), (404, "BadRequest_NotFound", NotFound),
     (409, "Request_EntityChanged", BusinessCentralConflict), (403, "Authorization_Failed", AuthFailed)],
)  # fmt: skip
def test_bc_errors_map_onto_the_error_tree_with_code_and_message(http, clock, status, code, kind):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.post(f"{PREFIX}/customers").mock(return_value=bc_error(status, code, "BC's own words."))
        with pytest.raises(kind) as info:
            make_client(http, None, clock).create("customers", {"displayName": "X"})
    assert isinstance(info.value, Rejected)
    assert f"POST customers: Business Central answered {status} {code}: BC's own words." in str(info.value)


def test_429_and_503_are_retried_after_retry_after(http, clock):
    sleeps: list[float] = []
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/items").mock(side_effect=[
            bc_error(429, "Application_TooManyRequests", "Too many", **{"Retry-After": "2"}),
            bc_error(503, "Application_ServiceUnavailable", "Busy", **{"Retry-After": "3"}),
            httpx.Response(200, json={"value": [{"id": "1"}]}),
        ])  # fmt: skip
        assert len(make_client(http, None, clock, sleeps=sleeps).query("items")) == 1
    assert sleeps == [2.0, 3.0]


def test_a_429_storm_longer_than_the_retries_is_rate_limited(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/items").mock(return_value=bc_error(429, "Application_TooManyRequests", "Too many"))
        with pytest.raises(RateLimited):
            make_client(http, None, clock).query("items")


def test_a_post_answered_503_is_not_retried_in_place(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        created = router.post(f"{PREFIX}/salesOrders").mock(return_value=bc_error(503, "Unavailable", "Busy"))
        with pytest.raises(BusinessCentralUnavailable):
            make_client(http, None, clock).create("salesOrders", {"customerId": "c"})
    assert created.call_count == 1


# -- ETags -------------------------------------------------------------------------------------------------------


def test_patch_sends_the_records_etag_and_rereads_once_on_412(http, clock):
    reads = iter(['W/"v1"', 'W/"v2"'])

    def read(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"@odata.etag": next(reads), "id": "c1"})

    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/customers(c1)").mock(side_effect=read)
        patch = router.patch(f"{PREFIX}/customers(c1)").mock(side_effect=[
            bc_error(412, "Request_EntityChanged", "Another user has already changed the record."),
            httpx.Response(200, json={"@odata.etag": 'W/"v3"', "id": "c1"}),
        ])  # fmt: skip
        updated = make_client(http, None, clock).patch("customers", "c1", {"email": "a@b.nl"})
    assert updated["@odata.etag"] == 'W/"v3"'
    assert [c.request.headers["if-match"] for c in patch.calls] == ['W/"v1"', 'W/"v2"']
    assert json.loads(patch.calls[0].request.content) == {"email": "a@b.nl"}


def test_a_second_412_is_a_conflict_naming_it(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/customers(c1)").mock(return_value=httpx.Response(200, json={"@odata.etag": 'W/"x"'}))
        router.patch(f"{PREFIX}/customers(c1)").mock(return_value=bc_error(412, "Request_EntityChanged", "changed"))
        with pytest.raises(BusinessCentralConflict, match="changed in Business Central while Koppel wrote it"):
            make_client(http, None, clock).patch("customers", "c1", {"email": "a@b.nl"}, etag='W/"given"')


def test_a_picture_is_patched_as_bytes_with_the_pictures_etag(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/items(i1)/picture").mock(
            return_value=httpx.Response(200, json={"@odata.etag": 'W/"p1"', "id": "i1", "contentType": ""}))
        upload = router.patch(f"{PREFIX}/items(i1)/picture/pictureContent").mock(return_value=httpx.Response(204))
        make_client(http, None, clock).set_picture("i1", b"\x89PNG...", "image/png")
    request = upload.calls[0].request
    assert request.content == b"\x89PNG..." and request.headers["content-type"] == "image/png"
    assert request.headers["if-match"] == 'W/"p1"'


def test_a_record_without_etag_is_a_bad_response(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/items(i1)").mock(return_value=httpx.Response(200, json={"id": "i1"}))
        with pytest.raises(BusinessCentralResponseError, match=r"no @odata\.etag"):
            make_client(http, None, clock).patch("items", "i1", {"displayName": "x"})


def test_not_found_is_also_the_connectors_own(http, clock):
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_answer())
        router.get(f"{PREFIX}/items(i9)").mock(return_value=bc_error(404, "BadRequest_NotFound", "gone"))
        with pytest.raises(BusinessCentralNotFound) as info:
            make_client(http, None, clock).get("items", "i9")
    assert info.value.code == "BadRequest_NotFound" and info.value.message == "gone"



# -- properties ----------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=15), inner, max_size=4),
    max_leaves=10,
)


@given(st.text(max_size=40), st.text(max_size=40))
def test_a_quoted_literal_matches_exactly_the_text_it_quotes(value, other):
    test = parse_filter(any_of("number", [value]))
    assert test({"number": value})
    assert test({"number": other}) == (other == value)


@given(json_values | st.dictionaries(st.sampled_from(["error", "error_description", "error_codes"]), json_values),
       st.integers(min_value=400, max_value=599))  # fmt: skip
def test_any_token_refusal_becomes_an_auth_error_with_a_message(body, status):
    error = token_error(body, status)
    assert isinstance(error, BusinessCentralAuthError) and str(error).startswith("Business Central sign-in refused (")
    code = aadsts_code(body)
    assert code is None or code.isdigit()


def test_aadsts_codes_are_read_from_the_list_or_the_description():
    assert aadsts_code({"error_codes": [7000215]}) == "7000215"
    assert aadsts_code({"error_codes": [True], "error_description": "AADSTS90002: Tenant"}) == "90002"
    assert aadsts_code({"error_description": "no code here"}) is None
