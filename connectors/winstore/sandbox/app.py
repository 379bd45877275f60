"""The Winstore sandbox app: the web service's routes under `/iposws/api/osd`, the control routes, a CLI."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.sandboxkit import (
    ALL_METHODS,
    Control,
    Fault,
    Pipeline,
    Sandbox,
    basic_credentials,
    request_fields,
    secret_equals,
)
from connectors.sandboxkit import sandbox_app as kit_app
from connectors.sandboxkit.routing import ErrorRenderer
from connectors.winstore.sandbox.store import OrderRefused, StockRefused, WinstoreStore, status_of

__all__ = ["PREFIX", "SandboxConfig", "WinstoreSandbox", "create_sandbox", "main"]

PREFIX = "/iposws/api/osd"
DATACONTRACT = "http://schemas.datacontract.org/2004/07/Winstore.Osd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True)
class SandboxConfig:
    username: str = "koppel"
    password: str = "winstore-sandbox"  # noqa: S105 - a sandbox's own password
    zone: str = "Europe/Amsterdam"
    branches: frozenset[int] = frozenset({1, 2})


class WinstoreSandbox(Sandbox):
    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.config = config
        self.store = WinstoreStore(clock, zone=config.zone, branches=config.branches)

    def state(self) -> dict[str, Any]:
        return super().state() | {"articles": len(self.store.articles), "stock_rows": len(self.store.stock),
                                  "orders": len(self.store.orders), "suppliers": len(self.store.suppliers),
                                  "customers": len(self.store.customers)}  # fmt: skip

    def reset(self, options: Mapping[str, Any] | None = None) -> None:
        super().reset(options)
        self.store = WinstoreStore(self.clock, zone=self.config.zone, branches=self.config.branches)


# -- answers: XML or JSON by the request's Accept ----------------------------------------------------------


class Refusal(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


async def _xml_body(request: Request) -> bytes:
    """The body of a POST that takes an XML document; 415 for any other media type."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/xml", "text/xml"):
        raise Refusal(415, f"The request entity's media type '{kind}' is not supported for this resource.")
    return await request.body()


def wants_xml(request: Request) -> bool:
    """ASP.NET Web API's choice: XML when the Accept header prefers it, else JSON (also for `*/*` or none)."""
    accept = request.headers.get("accept", "").lower()
    for part in accept.split(","):
        kind = part.split(";")[0].strip()
        if kind in ("application/json", "text/json"):
            return False
        if kind in ("application/xml", "text/xml"):
            return True
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_ITEM = {"positions": "position"}
"""A list in a record → the element each entry becomes (an order's positions, as in the posted document)."""


def _xml_value(name: str, value: Any) -> str:
    if value is None:
        return f'<{name} i:nil="true"/>'
    if isinstance(value, bool):
        return f"<{name}>{'true' if value else 'false'}</{name}>"
    if isinstance(value, dict):
        return f"<{name}>{''.join(_xml_value(k, v) for k, v in value.items())}</{name}>"
    if isinstance(value, list):
        return f"<{name}>{''.join(_xml_value(_ITEM.get(name, 'item'), v) for v in value)}</{name}>"
    return f"<{name}>{escape(str(_plain(value)))}</{name}>"


def answer(request: Request, data: Any, *, element: str, status: int = 200) -> Response:
    """A list of records (`ArrayOf<element>`) or one record (`<element>`) in the format the request accepts."""
    if not wants_xml(request):
        body = [{k: _plain(v) for k, v in r.items()} for r in data] if isinstance(data, list) else \
            {k: _plain(v) for k, v in data.items()}  # fmt: skip
        return JSONResponse(body, status_code=status)
    records = data if isinstance(data, list) else [data]
    parts = ["".join(_xml_value(k, v) for k, v in record.items()) for record in records]
    inner = "".join(f"<{element}>{part}</{element}>" for part in parts)
    namespaces = f'xmlns:i="{XSI}" xmlns="{DATACONTRACT}"'
    if isinstance(data, list):
        text = f"<ArrayOf{element} {namespaces}>{inner}</ArrayOf{element}>"
    else:
        text = f"<{element} {namespaces}>{parts[0]}</{element}>"
    return Response(text, status_code=status, media_type="application/xml; charset=utf-8")


def refusal(request: Request, exc: Refusal) -> Response:
    response = answer(request, {"Message": exc.message}, element="Error", status=exc.status)
    response.headers.update(exc.headers)
    return response


def order_refusal(request: Request, exc: OrderRefused) -> Response:
    return answer(request, {"StatusCode": exc.status, "Message": exc.message}, element="OrderResult",
                  status=exc.status)  # fmt: skip


def stock_refusal(request: Request, exc: StockRefused) -> Response:
    return answer(request, {"StatusCode": exc.status, "Message": exc.message}, element="StockResult",
                  status=exc.status)  # fmt: skip


def fault_response(fault: Fault) -> Response:
    message = "Too many requests" if fault.status == 429 else "An error has occurred."
    return JSONResponse({"Message": message}, status_code=fault.status or 503)


# -- the web service ----------------------------------------------------------------------------------------


class WebService:
    def __init__(self, sandbox: WinstoreSandbox) -> None:
        self.sandbox = sandbox

    @property
    def store(self) -> WinstoreStore:
        return self.sandbox.store

    async def authenticate(self, request: Request) -> Response | None:
        given = basic_credentials(request)
        config = self.sandbox.config
        if given is None or not (secret_equals(given[0], config.username) and secret_equals(given[1], config.password)):
            raise Refusal(401, "Authorization has been denied for this request.",
                          {"WWW-Authenticate": 'Basic realm="Winstore"'})  # fmt: skip
        return None

    def routes(self) -> list[Route]:
        sb = self.sandbox
        errors: dict[type[Exception], ErrorRenderer] = {Refusal: refusal, OrderRefused: order_refusal,
                                                        StockRefused: stock_refusal}  # fmt: skip
        api = Pipeline([sb.counters.step, self.authenticate, sb.faults.step(fault_response)], errors, prefix=PREFIX)
        unrouted = Pipeline([sb.counters.step], errors)
        return [
            api.route("/GetArticleDataChangesByDate", self.articles_changed),
            api.route("/GetStock", self.get_stock),
            api.route("/GetChangedStock", self.changed_stock),
            api.route("/GetChangedStockWithWarehouse", self.changed_stock_by_warehouse),
            api.route("/GetSuppliers", self.suppliers),
            api.route("/GetArticleDataBySupplierId", self.supplier_articles),
            api.route("/PostOrderWithStatusCode", self.post_order, methods=["POST"]),
            api.route("/PostStock", self.post_stock, methods=["POST"]),
            api.route("/GetOrdersByDate", self.orders_changed),
            api.route("/GetCustomerDataChangesByDate", self.customers_changed),
            api.route("/PostOrderStatus", self.post_order_status, methods=["POST"]),
            unrouted.route("/{path:path}", self.unknown, methods=ALL_METHODS, name="unknown"),
        ]

    def _since(self, request: Request) -> datetime:
        try:
            return self.store.parse_since(request.query_params.get("date"))
        except ValueError as exc:
            raise Refusal(400, f"The request is invalid: {exc}") from None

    def _integer(self, request: Request, name: str) -> int:
        value = request.query_params.get(name, "")
        if not value.strip().isdigit():
            raise Refusal(400, f"The request is invalid: {name} must be a whole number")
        return int(value)

    async def articles_changed(self, request: Request) -> Response:
        return answer(request, self.store.articles_since(self._since(request)), element="Article")

    async def get_stock(self, request: Request) -> Response:
        kind = request.query_params.get("type")
        if kind == "byArtikelKey":
            key = self._integer(request, "artkey")
            if key not in self.store.articles:
                raise Refusal(404, f"Article {key} not found")
            return answer(request, self.store.stock_of(key), element="Stock")
        if kind == "byGtin":
            gtin = request.query_params.get("gtin", "")
            article = next((a for a in self.store.articles.values() if gtin and a.get("Gtin") == gtin), None)
            if article is None:
                raise Refusal(404, f"Article with GTIN {gtin[:20]} not found")
            return answer(request, self.store.stock_of(article["ArtKey"]), element="Stock")
        raise Refusal(400, "The request is invalid: type must be byArtikelKey or byGtin")

    async def changed_stock(self, request: Request) -> Response:
        rows = self.store.changed_stock(self._since(request), per_warehouse=False, out_of_stock=True)
        return answer(request, rows, element="Stock")

    async def changed_stock_by_warehouse(self, request: Request) -> Response:
        flag = request.query_params.get("outOfStock", "0")
        if flag not in ("0", "1"):
            raise Refusal(400, "The request is invalid: outOfStock must be 0 or 1")
        rows = self.store.changed_stock(self._since(request), per_warehouse=True, out_of_stock=flag == "1")
        return answer(request, rows, element="Stock")

    async def suppliers(self, request: Request) -> Response:
        rows = [{"SupplierId": k, "Name": v} for k, v in sorted(self.store.suppliers.items())]
        return answer(request, rows, element="Supplier")

    async def supplier_articles(self, request: Request) -> Response:
        supplier = self._integer(request, "id")
        if supplier not in self.store.suppliers:
            raise Refusal(404, f"Supplier {supplier} not found")
        return answer(request, self.store.articles_of_supplier(supplier), element="Article")

    async def post_order(self, request: Request) -> Response:
        order = self.store.book(await _xml_body(request))
        result = {"StatusCode": 200, "Message": f"Order {order['ordernr']} imported", "OrderId": order["id"]}
        return answer(request, result, element="OrderResult")

    async def post_stock(self, request: Request) -> Response:
        """PostStock [U]: `<stock><artkey/><warehouse/><amount/></stock>`, the article's absolute level."""
        artkey, warehouse, entry = self.store.post_stock(await _xml_body(request))
        result = {"StatusCode": 200, "Message": f"Stock of article {artkey} in warehouse {warehouse} set to "
                  f"{entry.quantity}"}  # fmt: skip
        return answer(request, result, element="StockResult")

    async def orders_changed(self, request: Request) -> Response:
        return answer(request, self.store.orders_since(self._since(request)), element="Order")

    async def customers_changed(self, request: Request) -> Response:
        return answer(request, self.store.customers_since(self._since(request)), element="Customer")

    async def post_order_status(self, request: Request) -> Response:
        number, code = status_of(await _xml_body(request))
        order = self.store.set_status(number, code)
        result = {"StatusCode": 200, "Message": f"Order {number} status {code}", "OrderId": order["id"]}
        return answer(request, result, element="OrderResult")

    async def unknown(self, request: Request) -> Response:
        raise Refusal(404, f"No HTTP resource was found that matches the request URI '{request.url.path}'.")


# -- control routes -----------------------------------------------------------------------------------------


def control_routes(sb: WinstoreSandbox) -> Control:
    control = Control(sb, errors={KeyError: lambda _r, e: JSONResponse({"error": str(e).strip("'\"")}, 404)})

    async def articles(request: Request) -> Response:
        """{"articles": [{ArtNr, Description, SalesPrice, Gtin, …, "stock": {"<warehouse>": qty}}]}: created, or
        changed (found by ArtKey, else ArtNr) as a user would in Winstore; their change dates move."""
        body = await request_fields(request)
        given = body.get("articles")
        if not isinstance(given, list) or not all(isinstance(a, dict) for a in given):
            raise ValueError("articles must be a list of article objects")
        done = [sb.store.upsert_article(fields) for fields in given]
        return JSONResponse({"articles": [{"ArtKey": a["ArtKey"], "ArtNr": a["ArtNr"]} for a in done]})

    async def stock(request: Request) -> Response:
        """{"ArtKey" or "ArtNr", "warehouse", "quantity", "reserved"?}: a stock count or a sale at the till."""
        body = await request_fields(request)
        key = body.get("ArtKey")
        if key is None:
            found = sb.store.article_by_number(str(body.get("ArtNr") or ""))
            if found is None:
                raise KeyError(f"no article {body.get('ArtNr')!r}")
            key = found["ArtKey"]
        entry = sb.store.set_stock(int(key), int(body["warehouse"]), body["quantity"], body.get("reserved"))
        return JSONResponse({"ArtKey": int(key), "Stock": str(entry.quantity), "ChangeDate": entry.changed.isoformat()})

    async def suppliers(request: Request) -> Response:
        body = await request_fields(request)
        for supplier in body.get("suppliers") or []:
            sb.store.suppliers[int(supplier["SupplierId"])] = str(supplier["Name"])
        return JSONResponse({"suppliers": len(sb.store.suppliers)})

    async def orders(request: Request) -> Response:
        listed = [{k: _plain(v) for k, v in o.items() if k != "positions"} |
                  {"positions": [{k: _plain(v) for k, v in p.items()} for p in o["positions"]]}
                  for o in sb.store.orders.values()]  # fmt: skip
        return Response(json.dumps({"orders": listed}, default=str), media_type="application/json")

    async def clock(request: Request) -> Response:
        """{"advance": seconds}: time passes in Winstore (change dates are whole seconds)."""
        body = await request_fields(request)
        sb.store.offset += float(body.get("advance", 0))
        return JSONResponse({"now": sb.store.now().isoformat()})

    control.route("/articles", articles)
    control.route("/stock", stock)
    control.route("/suppliers", suppliers)
    control.route("/orders", orders, methods=["GET"])
    control.route("/clock", clock)

    async def ring_up(request: Request) -> Response:
        """{"orders": [{ordernr?, customerid?, email?, channel?, statuscode?, invoice_add?, positions: [{ArtNr or
        product_id, amount, single_price?, reduction?}]}]}: orders made in Winstore itself (the till, another
        channel); their stock moves. Default channel "till", status code "2"."""
        body = await request_fields(request)
        given = body.get("orders")
        if not isinstance(given, list) or not all(isinstance(o, dict) for o in given):
            raise ValueError("orders must be a list of order objects")
        done = [sb.store.ring_up(fields) for fields in given]
        return JSONResponse({"orders": [{"ordernr": o["ordernr"], "id": o["id"]} for o in done]})

    async def order_status(request: Request) -> Response:
        """{"ordernr", "statuscode"}: a user changes an order's status in Winstore."""
        body = await request_fields(request)
        try:
            order = sb.store.set_status(str(body["ordernr"]), str(body["statuscode"]))
        except OrderRefused as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        return JSONResponse({"ordernr": order["ordernr"], "statuscode": order["statuscode"]})

    async def customers(request: Request) -> Response:
        """{"customers": [{customerid?, company, fname, lname, email, phone, street, streetnr, zip, city,
        countryISO}]}: created, or changed (by customerid) as a user would; their change dates move."""
        body = await request_fields(request)
        given = body.get("customers")
        if not isinstance(given, list) or not all(isinstance(c, dict) for c in given):
            raise ValueError("customers must be a list of customer objects")
        done = [sb.store.upsert_customer(fields) for fields in given]
        return JSONResponse({"customers": [c["customerid"] for c in done]})

    control.route("/orders/ring-up", ring_up)
    control.route("/orders/status", order_status)
    control.route("/customers", customers)
    return control


def create_sandbox(
    config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Starlette:
    """The sandbox app. `overrides` set SandboxConfig fields (`username=…`, `password=…`, `zone=…`)."""
    from dataclasses import replace

    sandbox = WinstoreSandbox(replace(config or SandboxConfig(), **overrides), clock)
    return kit_app(sandbox, [control_routes(sandbox).mount(), *WebService(sandbox).routes()])


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m connectors.winstore.sandbox",
                                     description="An in-memory Winstore web service (iposws/api/osd).")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--username", default=SandboxConfig.username)
    parser.add_argument("--password", default=SandboxConfig.password)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    app = create_sandbox(username=args.username, password=args.password)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
