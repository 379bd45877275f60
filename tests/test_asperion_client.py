"""AsperionClient and its OAuth (auth.py) against respx-faked Asperion: the tenant and language headers on every
call, tokens refreshed before expiry and after a 401, problem details as errors, paging and keyset reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from connectors.asperion.auth import (
    AsperionAuth,
    OAuthApp,
    Tokens,
    TokenStore,
    authorize_url,
    exchange_code,
    store_authorization,
)
from connectors.asperion.client import AsperionClient, merged, query_date, rows_of
from connectors.asperion.errors import (
    AsperionAuthError,
    AsperionNotFound,
    AsperionRequestError,
    AsperionResponseError,
    AsperionUnavailable,
)
from connectors.http import Retry
from gateway.errors import AuthFailed, NotFound, Rejected

API = "https://api.asperion.nl"
IDENTITY = "https://identity.asperion.nl"
APP = OAuthApp(IDENTITY, "client-1", "s3cr3t-client", "https://koppel.example/oauth/asperion/callback")
NOW = 1_800_000_000.0


def token_answer(access: str, refresh: str, expires_in: object = 3600) -> httpx.Response:
    return httpx.Response(200, json={"access_token": access, "token_type": "Bearer", "expires_in": expires_in,
                                     "refresh_token": refresh})  # fmt: skip


@pytest.fixture
def store(rconn):
    found = TokenStore(rconn, "asperion-test")
    found.save(Tokens("access-1", "refresh-1", NOW + 3600))
    return found


@pytest.fixture
def client(store):
    with httpx.Client() as http:
        bearer = AsperionAuth(store, APP, http, clock=lambda: NOW)
        yield AsperionClient(http, base_url=API, tenant_id="1001", language="en-US", page_size=2, auth=bearer,
                             retry=Retry(attempts=3, base=0), sleep=lambda _s: None)  # fmt: skip


def test_the_consent_url_asks_for_a_code_with_the_scope_and_state():
    url = authorize_url(APP, "signed-state")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{IDENTITY}/connect/authorize"
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == {
        "client_id": "client-1", "redirect_uri": APP.redirect_uri, "response_type": "code",
        "scope": "api offline_access", "state": "signed-state",
    }  # fmt: skip


@respx.mock
def test_the_code_is_traded_for_tokens_which_are_stored(rconn):
    route = respx.post(f"{IDENTITY}/connect/token").mock(return_value=token_answer("acc-XYZ", "ref-XYZ", "1800"))
    with httpx.Client() as http:
        tokens = store_authorization(http, APP, rconn, "asp-1", "the-code", clock=lambda: NOW)
    form = parse_qs(route.calls.last.request.content.decode())
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["the-code"]
    assert form["client_secret"] == ["s3cr3t-client"] and form["redirect_uri"] == [APP.redirect_uri]
    assert tokens.expires_at == NOW + 1800  # expires_in as text is read too
    assert TokenStore(rconn, "asp-1").load() == tokens
    assert "XYZ" not in repr(tokens) and "s3cr3t" not in repr(APP)


@respx.mock
def test_a_refused_code_is_an_auth_error_naming_the_fix_and_no_secret():
    respx.post(f"{IDENTITY}/connect/token").mock(return_value=httpx.Response(400, json={"error": "invalid_grant"}))
    with httpx.Client() as http, pytest.raises(AsperionAuthError) as refused:
        exchange_code(http, APP, "used-code")
    assert "invalid_grant" in str(refused.value) and "koppel connect" in str(refused.value)
    assert "s3cr3t" not in str(refused.value) and "used-code" not in str(refused.value)
    assert isinstance(refused.value, AuthFailed)


@respx.mock
def test_an_identity_server_down_is_transient():
    respx.post(f"{IDENTITY}/connect/token").mock(return_value=httpx.Response(503))
    with httpx.Client() as http, pytest.raises(AsperionUnavailable):
        exchange_code(http, APP, "code")


@respx.mock
def test_every_call_carries_the_tenant_language_and_bearer(client):
    route = respx.get(f"{API}/v1/articles/7").mock(return_value=httpx.Response(200, json={"id": 7}))
    assert client.get("articles", "7") == {"id": 7}
    headers = route.calls.last.request.headers
    assert headers["x-tenantid"] == "1001" and headers["accept-language"] == "en-US"
    assert headers["authorization"] == "Bearer access-1"


def test_the_tenant_header_name_is_a_choice():
    with httpx.Client() as http:
        other = AsperionClient(http, tenant_id="9", tenant_header="X-Tenant-Id")
    assert other.headers == {"X-Tenant-Id": "9", "Accept-Language": "nl-NL"}
    with httpx.Client() as http, pytest.raises(Exception, match="tenant_id"):
        AsperionClient(http, tenant_id="")


@respx.mock
def test_a_401_refreshes_once_and_the_request_is_sent_again(client, store):
    refresh = respx.post(f"{IDENTITY}/connect/token").mock(return_value=token_answer("access-2", "refresh-2"))
    route = respx.get(f"{API}/v1/articles/7").mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json={"id": 7})])
    assert client.get("articles", "7") == {"id": 7}
    assert route.calls.last.request.headers["authorization"] == "Bearer access-2"
    assert parse_qs(refresh.calls.last.request.content.decode())["refresh_token"] == ["refresh-1"]
    assert store.load().refresh_token == "refresh-2"  # rotated: the new one is kept
    assert client.calls == 2


@respx.mock
def test_a_token_about_to_expire_is_refreshed_before_the_call(store, rconn):
    store.save(Tokens("old", "refresh-1", NOW + 10))
    respx.post(f"{IDENTITY}/connect/token").mock(return_value=token_answer("fresh", "refresh-2"))
    route = respx.get(f"{API}/v1/articles/1").mock(return_value=httpx.Response(200, json={"id": 1}))
    with httpx.Client() as http:
        api = AsperionClient(http, tenant_id="1001", auth=AsperionAuth(store, APP, http, clock=lambda: NOW))
        api.get("articles", "1")
    assert route.calls.last.request.headers["authorization"] == "Bearer fresh"


@respx.mock
def test_a_401_after_the_refresh_is_an_auth_error_naming_connect(client):
    respx.post(f"{IDENTITY}/connect/token").mock(return_value=token_answer("access-2", "refresh-2"))
    respx.get(f"{API}/v1/articles/7").mock(return_value=httpx.Response(401))
    with pytest.raises(AsperionAuthError, match="koppel connect"):
        client.get("articles", "7")


def test_no_stored_tokens_is_an_auth_error_naming_the_command(rconn):
    with httpx.Client() as http:
        api = AsperionClient(http, tenant_id="1", auth=AsperionAuth(TokenStore(rconn, "never"), APP, http))
        with pytest.raises(AuthFailed, match="koppel connect never"):
            api.get("articles", "1")


@respx.mock
def test_a_403_for_the_tenant_is_an_auth_error(client):
    respx.get(f"{API}/v1/articles/7").mock(return_value=httpx.Response(403, json={"title": "Forbidden"}))
    with pytest.raises(AsperionAuthError, match="tenant_id"):
        client.get("articles", "7")


@respx.mock
def test_problem_details_become_the_error_with_title_detail_and_field_errors(client):
    problem = {"title": "One or more validation errors occurred.", "status": 400,
               "errors": {"code": ["The code field is required."], "description": ["Required."]}}  # fmt: skip
    respx.post(f"{API}/v1/articles").mock(return_value=httpx.Response(400, json=problem))
    with pytest.raises(AsperionRequestError) as refused:
        client.create("articles", {"salesPrice": 1})
    error = refused.value
    assert isinstance(error, Rejected) and error.status == 400
    assert error.code == "One or more validation errors occurred."
    assert "code: The code field is required." in error.message and "description: Required." in error.message


@respx.mock
def test_a_missing_record_is_not_found(client):
    respx.get(f"{API}/v1/relations/9").mock(return_value=httpx.Response(404, json={"title": "Not Found"}))
    with pytest.raises(AsperionNotFound) as missing:
        client.get("relations", "9")
    assert isinstance(missing.value, NotFound)


@respx.mock
def test_a_create_without_an_id_in_the_answer_is_a_bad_response(client):
    respx.post(f"{API}/v1/relations").mock(return_value=httpx.Response(201, json={"name": "x"}))
    with pytest.raises(AsperionResponseError):
        client.create("relations", {"name": "x"})


@respx.mock
def test_a_decimal_goes_out_as_its_exact_digits(client):
    from decimal import Decimal

    route = respx.post(f"{API}/v1/articles").mock(return_value=httpx.Response(201, json={"id": 5}))
    client.create("articles", {"code": "A", "salesPrice": Decimal("12.40")})
    assert route.calls.last.request.content == b'{"code":"A","salesPrice":12.40}'


@respx.mock
def test_an_update_reads_the_record_and_puts_it_back_whole_without_read_only_fields(client):
    current = {"id": 5, "code": "A", "description": "Old", "currentStock": 3, "modifiedDate": "x", "price": 9.95,
               "address": {"street": "Oud", "city": "Utrecht"}}  # fmt: skip
    respx.get(f"{API}/v1/relations/5").mock(return_value=httpx.Response(200, json=current))
    put = respx.put(f"{API}/v1/relations/5").mock(return_value=httpx.Response(200, json={}))
    client.update("relations", "5", {"Description": "New", "address": {"street": "Nieuw"}})
    sent = json.loads(put.calls.last.request.content)
    assert sent == {"code": "A", "description": "New", "price": 9.95, "address": {"street": "Nieuw", "city": "Utrecht"}}
    assert b'"price":9.95' in put.calls.last.request.content  # a number read goes back as the same digits


@respx.mock
def test_lists_page_until_a_short_page(client):
    route = respx.get(f"{API}/v1/relations").mock(side_effect=[
        httpx.Response(200, json={"data": [{"id": 1}, {"id": 2}], "page": 1, "pageSize": 2, "totalCount": 3}),
        httpx.Response(200, json={"data": [{"id": 3}], "page": 2, "pageSize": 2, "totalCount": 3}),
    ])  # fmt: skip
    assert [r["id"] for page in client.pages("relations") for r in page] == [1, 2, 3]
    assert [dict(c.request.url.params)["page"] for c in route.calls] == ["1", "2"]
    assert dict(route.calls.last.request.url.params)["pageSize"] == "2"


@respx.mock
def test_an_api_ignoring_the_page_parameter_is_a_bad_response_not_an_endless_read(client):
    respx.get(f"{API}/v1/relations").mock(return_value=httpx.Response(200, json=[{"id": 1}, {"id": 2}]))
    with pytest.raises(AsperionResponseError, match="repeats"):
        list(client.pages("relations"))


@respx.mock
def test_lookups_check_the_answer_again(client):
    respx.get(f"{API}/v1/relations").mock(return_value=httpx.Response(200, json={"data": [
        {"id": 1, "email": "other@example.com"}, {"id": 2, "email": "Ann@Example.com"}], "totalCount": 2}))
    assert [r["id"] for r in client.where_equal("relations", "email", "ann@example.com")] == [2]


@respx.mock
def test_changes_are_read_keyset_by_modification_date(client):
    def stamp(minute: int) -> str:
        return f"2026-12-01T10:{minute:02d}:00Z"

    answers = [
        [{"id": 1, "modifiedDate": stamp(1)}, {"id": 2, "modifiedDate": stamp(2)}],
        [{"id": 2, "modifiedDate": stamp(2)}, {"id": 3, "modifiedDate": stamp(2)}],  # all at the floor: by page
        [{"id": 4, "modifiedDate": stamp(5)}],
        # read by page number: read again (pages 1 and 2) until nothing new turns up
        [{"id": 2, "modifiedDate": stamp(2)}, {"id": 3, "modifiedDate": stamp(2)}],
        [{"id": 4, "modifiedDate": stamp(5)}],
    ]
    route = respx.get(f"{API}/v1/articles").mock(side_effect=[httpx.Response(200, json={"data": a}) for a in answers])
    since = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    def modified(record):
        return datetime.fromisoformat(record["modifiedDate"])

    pages = list(client.changed("articles", since, modified, {"ActiveState": "All"}))
    assert [[r["id"] for r in page] for page in pages] == [[1, 2], [2, 3], [4]]
    params = [dict(c.request.url.params) for c in route.calls]
    assert [(p["modifiedSince"], p["page"]) for p in params] == [
        ("2026-12-01T10:00:00.000Z", "1"), ("2026-12-01T10:02:00.000Z", "1"), ("2026-12-01T10:02:00.000Z", "2"),
        ("2026-12-01T10:02:00.000Z", "1"), ("2026-12-01T10:02:00.000Z", "2")]
    assert all(p["orderBy"] == "modifiedDate" and p["ActiveState"] == "All" for p in params)


def test_list_answers_of_other_shapes_are_read_and_others_refused():
    assert rows_of([{"id": 1}], "x") == ([{"id": 1}], None)
    assert rows_of({"items": [{"id": 1}], "totalCount": 4}, "x") == ([{"id": 1}], 4)
    assert rows_of({"Value": []}, "x") == ([], None)
    for wrong in ({"data": "no"}, "text", None, [1, 2]):
        with pytest.raises(AsperionResponseError):
            rows_of(wrong, "GET v1/articles")


def test_query_dates_are_utc_with_milliseconds():
    moment = datetime(2026, 12, 1, 11, 0, 0, 123456, tzinfo=UTC) + timedelta(hours=0)
    assert query_date(moment) == "2026-12-01T11:00:00.123Z"


def test_merged_keeps_the_records_spelling_and_merges_nested_objects():
    current = {"Code": "A", "address": {"city": "X", "street": "Y"}}
    changes = {"code": "B", "address": {"city": "Z"}, "new": 1}
    assert merged(current, changes) == {"Code": "B", "address": {"city": "Z", "street": "Y"}, "new": 1}


def test_config_check_names_what_an_asperion_system_lacks():
    from connectors import registry
    from gateway.config import parse_config

    config = parse_config({"systems": [
        {"id": "books", "kind": "asperion", "settings": {"timezone": "Mars/Base", "tenant_header": "Tenant"}},
        {"id": "ok", "kind": "asperion", "credentials": {"client_secret": "env:S"},
         "settings": {"client_id": "c", "tenant_id": "1001", "redirect_uri": "https://k.example/oauth/ok/callback"}},
    ], "gateway": {"admin_token": "env:S"}}, environ={"S": "x"}, kinds=registry.kinds())  # fmt: skip
    problems = registry.config_problems(config)
    text = "\n".join(problems)
    assert "systems[0] (books).credentials.client_secret: required" in text
    assert "settings.timezone: unknown time zone 'Mars/Base'" in text
    assert "settings.tenant_header" in text
    assert not [p for p in problems if "(ok)" in p]
    fixed = parse_config({"systems": [{"id": "b", "kind": "asperion", "credentials": {"client_secret": "env:S"}}]},
                         environ={"S": "x"}, kinds=registry.kinds())  # fmt: skip
    found = "\n".join(registry.config_problems(fixed))
    assert "settings.client_id: required" in found and "settings.tenant_id: required" in found
