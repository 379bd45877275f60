"""Winstore's web service (`…/iposws/api/osd`) on the HTTP kit (connectors/http.py): HTTP Basic auth, XML or JSON.

    articles_changed(since)                 GET  GetArticleDataChangesByDate?date=<ATOM>
    stock_by_key(artkey) / stock_by_gtin()  GET  GetStock?type=byArtikelKey&artkey= / type=byGtin&gtin=
    stock_changed(since)                    GET  GetChangedStock?date=
    stock_changed_by_warehouse(since)       GET  GetChangedStockWithWarehouse?date=&outOfStock=1
    suppliers() / supplier_articles(id)     GET  GetSuppliers / GetArticleDataBySupplierId?id=
    post_order(payload)                     POST PostOrderWithStatusCode, the XML `<order>` document
    post_stock(artkey, warehouse, amount)   POST PostStock [U], the XML `<stock>` document (an absolute level)
    orders_changed(since)                   GET  GetOrdersByDate?date=<ATOM> [U]
    customers_changed(since)                GET  GetCustomerDataChangesByDate?date=<ATOM> [U]
    post_order_status(ordernr, code)        POST PostOrderStatus [U], XML `<order><ordernr/><statuscode/></order>`

Endpoints beyond the public client are assumed [U] (their names follow the known ones; see
connectors/winstore/connector.py): they live in `ASSUMED_ENDPOINTS` alone, and the system setting
`endpoints` renames any of them (`endpoints = { stock = "PostStockLevel" }`) without a release. Their
answers are read like the known ones (records found however wrapped, fields by any spelling);
`PostOrderStatus` is answered like an order post.

Query parameters are joined with `&` as HTTP has it (the public PHP client joins them with `?`, a bug of
its own, changelog 1.0.8). Dates go out as ATOM (`2026-03-14T13:02:11+00:00`, UTC).

Answers are read by their Content-Type: `application/xml`/`text/xml` through wire.parse_xml (hardened:
no DTDs, no entities), `application/json` as JSON, anything else by its first byte (`<` or `{`/`[`).
Koppel asks for JSON (`Accept: application/json`, as the PHP client does). An error body's message is
read from `Message`/`message`/`StatusMessage`/`error` (ASP.NET Web API's `{"Message": …}` and guesses).

`PostOrderWithStatusCode` answers with a status code (hence the name). The public client does not show
its shape; this client reads a status code from `StatusCode`/`Status`/`Code`/`ResultCode` and treats a
code of 400 and up (or a `Success`/`Result` of false) as a refusal even when the HTTP status is 200, and
takes the order's id from `OrderId`/`Id`/`OrderNr` when the answer gives one, else the ordernr sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from connectors.http import ApiClient, Retry
from connectors.winstore.errors import (
    WinstoreAuthError,
    WinstoreNotFound,
    WinstoreRateLimited,
    WinstoreRequestError,
    WinstoreResponseError,
    WinstoreUnavailable,
)
from connectors.winstore.wire import MalformedBody, document_xml, field, order_xml, parse_json, parse_xml, records
from gateway.errors import PermanentError

__all__ = ["ASSUMED_ENDPOINTS", "DUPLICATE_WORDS", "OrderAnswer", "WinstoreClient", "atom"]

XML_TYPES = ("application/xml", "text/xml")
DUPLICATE_WORDS = ("already exists", "bestaat al", "duplicate")
"""Words in a refusal of an order that say its ordernr is in Winstore already (guessed; see connector.py)."""

ASSUMED_ENDPOINTS: dict[str, str] = {
    "orders": "GetOrdersByDate",                 # GET ?date=<ATOM>: orders changed since
    "customers": "GetCustomerDataChangesByDate", # GET ?date=<ATOM>: customers changed since
    "order_status": "PostOrderStatus",           # POST XML <order><ordernr/><statuscode/></order>
    "stock": "PostStock",                        # POST XML <stock><artkey/><warehouse/><amount/></stock> (absolute level)  # noqa: E501
}  # fmt: skip
"""Endpoints Winstore's public client does not show, by what they do → their assumed names [U]; the
system setting `endpoints` overrides a name."""


def atom(moment: datetime) -> str:
    """A moment as ATOM in UTC, seconds precision (`2026-03-14T13:02:11+00:00`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


class XmlBody:
    """A request body that is an XML document already (the kit sends JSON otherwise)."""

    __slots__ = ("content",)

    def __init__(self, content: bytes) -> None:
        self.content = content


class OrderAnswer:
    """What Winstore said to an order: its id (the ordernr unless the answer names another) and its message."""

    def __init__(self, order_id: str, code: str, message: str) -> None:
        self.order_id = order_id
        self.code = code
        self.message = message


class WinstoreClient(ApiClient):
    system = "Winstore"
    unavailable_error = WinstoreUnavailable
    rate_limited_error = WinstoreRateLimited
    rejected_error = WinstoreRequestError
    not_found_error = WinstoreNotFound
    auth_error = WinstoreAuthError
    bad_response_error = WinstoreResponseError
    auth_statuses: ClassVar[frozenset[int]] = frozenset({401, 403})
    auth_advice = "check the system's credentials.username and credentials.password"

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str,
        username: str,
        password: str,
        retry: Retry | None = None,
        endpoints: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(http, api_root=base_url, auth=httpx.BasicAuth(username, password), retry=retry, **kw)
        self.endpoints = {**ASSUMED_ENDPOINTS, **(endpoints or {})}

    def endpoint(self, name: str) -> str:
        """The endpoint an assumed operation (a key of ASSUMED_ENDPOINTS) goes to, as the system names it."""
        return self.endpoints[name]

    # -- the kit's hooks ---------------------------------------------------------------------------------

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        try:
            data = self.read(response)
        except MalformedBody:
            data = None
        found = records(data)
        if found:
            code = field(found[0], "StatusCode", "Status", "Code", "ResultCode", "ErrorCode")
            message = field(found[0], "Message", "StatusMessage", "ExceptionMessage", "error", "Description")
            code = "" if str(code) == str(response.status_code) else code  # a status code repeating the HTTP one
            return str(code or ""), str(message or "")
        if isinstance(data, str):
            return "", data
        text = response.text.strip() if response.headers.get("content-type", "").startswith("text/plain") else ""
        return "", text

    def rejection(
        self, error: type[PermanentError], text: str, *, status: int, code: str, message: str
    ) -> PermanentError:
        if issubclass(error, WinstoreRequestError):
            return error(text, status=status, code=code, message=message)
        return super().rejection(error, text, status=status, code=code, message=message)

    def encode(self, body: object) -> bytes:
        """An XML document as written (`XmlBody`); anything else as the kit encodes JSON."""
        return body.content if isinstance(body, XmlBody) else super().encode(body)

    def query_value(self, value: object) -> str:
        if isinstance(value, datetime):
            return atom(value)
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(value)

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, response: httpx.Response) -> Any:
        """The body as plain Python, by its Content-Type; MalformedBody when it is not what it says."""
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        content = response.content
        if kind in XML_TYPES or kind.endswith("+xml"):
            return parse_xml(content)
        if kind == "application/json" or kind.endswith("+json"):
            return parse_json(content)
        start = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        if start == b"<":
            return parse_xml(content)
        if start in (b"{", b"[", b""):
            return parse_json(content)
        raise MalformedBody(f"a body of type {kind or 'unknown'} that is neither XML nor JSON")

    def decode(self, response: httpx.Response, where: str) -> Any:
        try:
            return self.read(response)
        except MalformedBody as exc:
            raise WinstoreResponseError(f"{where}: Winstore's answer is unreadable: {exc}") from None

    def get_records(self, endpoint: str, params: Mapping[str, object] | None = None) -> list[dict[str, Any]]:
        return records(self.request("GET", endpoint, params=params))

    def articles_changed(self, since: datetime) -> list[dict[str, Any]]:
        """Every article whose data changed since `since` (Winstore answers them all at once: no paging)."""
        return self.get_records("GetArticleDataChangesByDate", {"date": since})

    def stock_by_key(self, artkey: int | str) -> list[dict[str, Any]]:
        """The stock of one article (per warehouse, where Winstore says)."""
        return self.get_records("GetStock", {"type": "byArtikelKey", "artkey": artkey})

    def stock_by_gtin(self, gtin: str) -> list[dict[str, Any]]:
        return self.get_records("GetStock", {"type": "byGtin", "gtin": gtin})

    def stock_changed(self, since: datetime) -> list[dict[str, Any]]:
        """Articles whose stock changed since `since`, their total over all warehouses."""
        return self.get_records("GetChangedStock", {"date": since})

    def stock_changed_by_warehouse(self, since: datetime, *, out_of_stock: bool = True) -> list[dict[str, Any]]:
        """Stock changed since `since`, one record per article and warehouse (`outOfStock=1`: those at 0 too)."""
        return self.get_records("GetChangedStockWithWarehouse", {"date": since, "outOfStock": out_of_stock})

    def suppliers(self) -> list[dict[str, Any]]:
        return self.get_records("GetSuppliers")

    def supplier_articles(self, supplier_id: int | str) -> list[dict[str, Any]]:
        return self.get_records("GetArticleDataBySupplierId", {"id": supplier_id})

    def orders_changed(self, since: datetime) -> list[dict[str, Any]]:
        """Every order changed since `since`, its positions with it [U: `ASSUMED_ENDPOINTS["orders"]`]."""
        return self.get_records(self.endpoint("orders"), {"date": since})

    def customers_changed(self, since: datetime) -> list[dict[str, Any]]:
        """Every customer changed since `since` [U: `ASSUMED_ENDPOINTS["customers"]`]."""
        return self.get_records(self.endpoint("customers"), {"date": since})

    # -- orders ------------------------------------------------------------------------------------------

    def post_order_status(self, number: str, code: str) -> OrderAnswer:
        """Set the status code of the order `number` [U: `ASSUMED_ENDPOINTS["order_status"]`]; the answer is read
        like an order post's (a status code of 400 and up is a refusal)."""
        endpoint = self.endpoint("order_status")
        try:
            body = order_xml({"ordernr": number, "statuscode": code})
        except ValueError as exc:
            raise WinstoreRequestError(f"POST {endpoint}: the status cannot be sent: {exc}", status=0) from None
        return _order_answer(*self._post_xml(endpoint, body), number)

    def post_order(self, payload: Mapping[str, Any]) -> OrderAnswer:
        """POST the `<order>` document; the answer, or WinstoreRequestError when Winstore refused it."""
        try:
            body = order_xml(payload)
        except ValueError as exc:
            raise WinstoreRequestError(f"POST PostOrderWithStatusCode: the order cannot be sent: {exc}",
                                       status=0) from None  # fmt: skip
        return _order_answer(*self._post_xml("PostOrderWithStatusCode", body), str(payload.get("ordernr") or ""))

    def _post_xml(self, endpoint: str, body: bytes) -> tuple[dict[str, Any], str, str]:
        """POST an XML document; (the answer's record, its status code, its message), or WinstoreRequestError
        when the answer's status code (400 and up) or `Success`/`Result` false says Winstore refused it."""
        where = f"POST {endpoint}"
        response = self._send_xml(endpoint, body)
        found = records(self.decode(response, where))
        answer = found[0] if found else {}
        code = str(field(answer, "StatusCode", "Status", "Code", "ResultCode") or "")
        message = " ".join(str(field(answer, "Message", "StatusMessage", "Description") or "").split())[:300]
        success = field(answer, "Success", "Result")
        refused = (code.isdigit() and int(code) >= 400) or str(success).lower() == "false"
        if refused:
            text = f"{where}: Winstore answered {response.status_code} with status code {code or '?'}"
            raise WinstoreRequestError(text + (f": {message}" if message else ""), status=int(code) if code.isdigit()
                                       else 422, code=code, message=message)  # fmt: skip
        return answer, code, message

    def _send_xml(self, endpoint: str, body: bytes) -> httpx.Response:
        """POST an XML body through the kit's loop (budget, auth, errors; a POST is never retried in place)."""
        return self.send("POST", endpoint, json=XmlBody(body), headers={"Content-Type": "application/xml"})

    # -- stock -------------------------------------------------------------------------------------------

    def post_stock(self, artkey: str, warehouse: int | str, amount: Any, extra: Mapping[str, Any] | None = None) -> str:
        """Set an article's stock in a warehouse to `amount` (an absolute level, not a change) through the
        assumed `stock` endpoint [U]: the `<stock>` document; `extra` elements after Koppel's three. Winstore's
        message, or WinstoreRequestError (WinstoreNotFound for a 404: an article it no longer has)."""
        endpoint = self.endpoint("stock")
        payload = {"artkey": artkey, "warehouse": warehouse, "amount": amount, **(extra or {})}
        try:
            body = document_xml("stock", payload)
        except ValueError as exc:
            raise WinstoreRequestError(f"POST {endpoint}: the stock level cannot be sent: {exc}", status=0) from None
        return self._post_xml(endpoint, body)[2]


def _order_answer(answer: Mapping[str, Any], code: str, message: str, number: str) -> OrderAnswer:
    """An accepted order post's answer: the id Winstore gave (else the order number), its code and message."""
    order_id = field(answer, "OrderId", "Id", "OrderNr", "Ordernr")
    return OrderAnswer(str(order_id) if order_id is not None else number, code, message)
