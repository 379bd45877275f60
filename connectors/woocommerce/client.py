"""WooCommerceClient: orders, products, variations, stock, customers and webhooks of one shop.

One `httpx.Client` per worker process (it holds the connection pool and is costly to create), passed
in; one light `WooCommerceClient` per shop on top of it. Requests, retries and errors: rest.py and
errors.py. Upserts look up the stable key first (SKU, e-mail), so a replayed job updates rather than
creates, and a create that loses a race to another worker turns into an update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from connectors.woocommerce.errors import SkuConflict, WooCommerceRequestError, WooCommerceResponseError
from connectors.woocommerce.rest import (
    API_PATH,
    BATCH_LIMIT,
    MAX_PER_PAGE,
    DateLike,
    Page,
    Record,
    RestClient,
    Retry,
    gmt,
    untagged,
)
from gateway.errors import KoppelError

ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "checkout-draft")


class Upsert(NamedTuple):
    record: Record
    created: bool


@dataclass(frozen=True)
class Stock:
    """Stock of a product or variation. `manage_stock` is "parent" for a variation whose parent keeps stock."""

    product_id: int
    variation_id: int | None
    sku: str
    manage_stock: bool | str
    stock_quantity: int | float | None
    stock_status: str

    @classmethod
    def of(cls, record: Mapping[str, Any], *, product_id: int | None = None) -> Stock:
        """From `/products/{id}` (a variation there has type "variation" and `parent_id`), or, given
        `product_id`, from `/products/{product_id}/variations/{id}`."""
        if product_id is None and record.get("type") == "variation":
            product_id = int(record.get("parent_id") or 0)
        own_id = int(record["id"])
        return cls(
            product_id=own_id if product_id is None else product_id,
            variation_id=None if product_id is None else own_id,
            sku=str(record.get("sku") or ""),
            manage_stock=record.get("manage_stock", False),
            stock_quantity=record.get("stock_quantity"),
            stock_status=str(record.get("stock_status") or ""),
        )


def parse_gmt(value: str | None) -> datetime | None:
    """A `*_gmt` field ("2026-03-14T13:02:11", UTC without offset) as an aware datetime; None stays None."""
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class WooCommerceClient(RestClient):
    """WooCommerce REST API v3 of one shop. Domain quirks:

    * Base `{base_url}/wp-json/wc/v3` (pretty permalinks on; `?rest_route=` sites are not supported).
      Auth is HTTP Basic with the consumer key/secret, which WooCommerce accepts only over HTTPS
      (over HTTP it wants OAuth 1.0a); plain HTTP is allowed to loopback hosts only — the sandbox.
    * Lists page by `per_page` (≤ 100; more is a 400 `rest_invalid_param`) and `page`; totals come in
      `X-WP-Total` / `X-WP-TotalPages`. Paging is by offset, not a snapshot: `orders()` sorts by id
      ascending, so records changing while we page can repeat but are not skipped (only deletions
      shift pages). Batch endpoints take ≤ 100 items in all (`woocommerce_rest_batch_items_limit`).
    * Money is strings with the shop's decimals ("42.02"), but a line item's `price` is a float,
      total / quantity (12.356666666666667): never use it as money. Dates: `date_*` are shop-local,
      `date_*_gmt` UTC, both without offset; `modified_after` with `dates_are_gmt=true` filters on UTC.
    * `GET /products?sku=` searches variations too (`type` "variation", `parent_id`); SKUs and e-mails
      match case-insensitively (MySQL collation). `GET /customers` lists role "customer" only unless
      `role=all`, so lookups by e-mail ask for every role (a shop manager who buys still has one e-mail).
    * Webhook secrets are write-only; the API never returns them.
    """

    # -- orders ------------------------------------------------------------------------------------

    def get_order(self, order_id: int) -> Record:
        return self._object("GET", f"orders/{int(order_id)}")

    def orders(
        self,
        *,
        status: str | Iterable[str] | None = None,
        modified_after: DateLike | None = None,
        modified_before: DateLike | None = None,
        after: DateLike | None = None,
        before: DateLike | None = None,
        per_page: int = MAX_PER_PAGE,
        **filters: object,
    ) -> Iterator[Record]:
        """Orders, oldest id first. Dates are sent as UTC with `dates_are_gmt=true` (naive datetimes are UTC)."""
        dates = {"modified_after": modified_after, "modified_before": modified_before, "after": after,
                 "before": before}  # fmt: skip
        params: dict[str, object] = {"orderby": "id", "order": "asc", **filters}
        params |= {name: gmt(value) for name, value in dates.items() if value is not None}
        if any(value is not None for value in dates.values()):
            params["dates_are_gmt"] = True
        if status is not None:
            params["status"] = [status] if isinstance(status, str) else list(status)
        return self.iterate("orders", params, per_page=per_page)

    def create_order(self, fields: Mapping[str, Any]) -> Record:
        """`POST /orders`. WooCommerce calculates the totals and taxes itself (from the line totals given,
        else the products' prices) and fires `order.created`; `set_paid` marks it paid (and processing)."""
        return self._object("POST", "orders", json=dict(fields))

    def update_order(self, order_id: int, fields: Mapping[str, Any]) -> Record:
        return self._object("PUT", f"orders/{int(order_id)}", json=dict(fields))

    def update_order_status(self, order_id: int, status: str) -> Record:
        """`PUT /orders/{id} {"status": …}`; a status without its "wc-" prefix, e.g. "completed"."""
        return self.update_order(order_id, {"status": status.removeprefix("wc-")})

    # -- products, variations, stock ---------------------------------------------------------------

    def get_product(self, product_id: int) -> Record:
        """A product; a variation id works too (type "variation", with `parent_id`)."""
        return self._object("GET", f"products/{int(product_id)}")

    def products(self, *, per_page: int = MAX_PER_PAGE, **filters: object) -> Iterator[Record]:
        return self.iterate("products", filters, per_page=per_page)

    def find_product_by_sku(self, sku: str) -> Record | None:
        """The product or variation with this SKU (exact match first, then case-insensitive), or None."""
        wanted = sku.strip()
        if not wanted:
            return None
        found = list(self.iterate("products", {"sku": wanted}))
        for record in found:
            if str(record.get("sku") or "") == wanted:
                return record
        folded = wanted.casefold()
        return next((r for r in found if str(r.get("sku") or "").casefold() == folded), None)

    def find_products_by_skus(self, skus: Iterable[str], *, chunk: int = 50) -> dict[str, Record]:
        """{sku as asked: product or variation} for the SKUs that exist; `chunk` SKUs per request
        (comma-separated; a SKU holding a comma is looked up alone)."""
        wanted = list(dict.fromkeys(s.strip() for s in skus if s and s.strip()))
        found: dict[str, Record] = {}
        plain = [s for s in wanted if "," not in s]
        for start in range(0, len(plain), chunk):
            part = plain[start : start + chunk]
            by_fold: dict[str, Record] = {}
            for record in self.iterate("products", {"sku": ",".join(part)}):
                by_fold.setdefault(str(record.get("sku") or "").casefold(), record)
            found |= {s: by_fold[s.casefold()] for s in part if s.casefold() in by_fold}
        for sku in (s for s in wanted if "," in s):
            if (alone := self.find_product_by_sku(sku)) is not None:
                found[sku] = alone
        return found

    def create_product(self, fields: Mapping[str, Any]) -> Record:
        return self._object("POST", "products", json=dict(fields))

    def update_product(self, product_id: int, fields: Mapping[str, Any]) -> Record:
        return self._object("PUT", f"products/{int(product_id)}", json=dict(fields))

    def update_many(self, path: str, updates: Sequence[Mapping[str, Any]]) -> list[Record | KoppelError]:
        """`POST {path}/batch {"update": [...]}` ("products", "products/{id}/variations"), `BATCH_LIMIT` updates
        a request; each update (with its "id") answered in order: the record as written, or the error WooCommerce
        gave that update alone (a NotFound for an id it no longer has). An error of a whole request (5xx, 401)
        is raised."""
        return self._many(path, "update", updates)

    def create_many(self, path: str, creations: Sequence[Mapping[str, Any]]) -> list[Record | KoppelError]:
        """`POST {path}/batch {"create": [...]}`, `BATCH_LIMIT` creations a request; each answered in order: the
        record created, or the error WooCommerce gave that creation alone (`{"id": 0, "error": …}`; a SKU another
        product holds is a `SkuTaken`). An error of a whole request (5xx, a timeout: its creations may have been
        made; 401) is raised."""
        return self._many(path, "create", creations)

    def _many(self, path: str, action: str, items: Sequence[Mapping[str, Any]]) -> list[Record | KoppelError]:
        out: list[Record | KoppelError] = []
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start : start + BATCH_LIMIT]
            body = self.batch(path, create=chunk) if action == "create" else self.batch(path, update=chunk)
            answers = body.get(action)
            if not isinstance(answers, list) or len(answers) != len(chunk):
                where = self.where("POST", path + "/batch")
                raise WooCommerceResponseError(f"{where}: expected one answer an {action}")
            out += [self._batch_item(path, action, sent, answer) for sent, answer in zip(chunk, answers, strict=True)]
        return out

    def _batch_item(self, path: str, action: str, sent: Mapping[str, Any], answer: Any) -> Record | KoppelError:
        one = self.where("PUT", f"{path}/{sent.get('id')}") if action == "update" else self.where("POST", path)
        where = f"{one} (in a batch)"
        if not isinstance(answer, dict):
            return WooCommerceResponseError(f"{where}: the answer is not an object")
        error = answer.get("error")
        if not isinstance(error, dict):
            return answer
        data = error.get("data")
        status = data.get("status") if isinstance(data, dict) else None
        status = status if isinstance(status, int) else 400
        return self.item_error(where, status, str(error.get("code") or ""), untagged(str(error.get("message") or "")))

    def variations(self, product_id: int, *, per_page: int = MAX_PER_PAGE, **filters: object) -> Iterator[Record]:
        return self.iterate(f"products/{int(product_id)}/variations", filters, per_page=per_page)

    def get_variation(self, product_id: int, variation_id: int) -> Record:
        return self._object("GET", f"products/{int(product_id)}/variations/{int(variation_id)}")

    def create_variation(self, product_id: int, fields: Mapping[str, Any]) -> Record:
        return self._object("POST", f"products/{int(product_id)}/variations", json=dict(fields))

    def update_variation(self, product_id: int, variation_id: int, fields: Mapping[str, Any]) -> Record:
        return self._object("PUT", f"products/{int(product_id)}/variations/{int(variation_id)}", json=dict(fields))

    def _create_once(self, sku: str, create: Callable[[], Record]) -> tuple[Record | None, Record | None]:
        """Create; when WooCommerce says the SKU is taken (another worker won the race) return the winner."""
        try:
            return create(), None
        except WooCommerceRequestError as exc:
            if exc.code != "product_invalid_sku":
                raise
            existing = self.find_product_by_sku(sku)
            if existing is None:
                raise
            return None, existing

    def upsert_product(self, fields: Mapping[str, Any]) -> Upsert:
        """Create the product when no product has `fields["sku"]`, else update it (looked up by SKU)."""
        sku = str(fields.get("sku") or "").strip()
        if not sku:
            raise ValueError("upsert_product needs a sku")
        existing = self.find_product_by_sku(sku)
        if existing is None:
            created, existing = self._create_once(sku, lambda: self.create_product(fields))
            if created is not None:
                return Upsert(created, True)
        assert existing is not None
        if existing.get("type") == "variation":
            raise SkuConflict(
                f"SKU {sku!r} belongs to variation {existing.get('id')} of product {existing.get('parent_id')}, "
                "not to a product"
            )
        return Upsert(self.update_product(int(existing["id"]), fields), False)

    def upsert_variation(self, product_id: int, fields: Mapping[str, Any]) -> Upsert:
        """Create or update the variation of variable product `product_id` with `fields["sku"]`."""
        sku = str(fields.get("sku") or "").strip()
        if not sku:
            raise ValueError("upsert_variation needs a sku")
        existing = self.find_product_by_sku(sku)
        if existing is None:
            created, existing = self._create_once(sku, lambda: self.create_variation(product_id, fields))
            if created is not None:
                return Upsert(created, True)
        assert existing is not None
        if existing.get("type") != "variation" or int(existing.get("parent_id") or 0) != int(product_id):
            raise SkuConflict(
                f"SKU {sku!r} belongs to {existing.get('type', 'product')} {existing.get('id')}, "
                f"not to a variation of product {int(product_id)}"
            )
        return Upsert(self.update_variation(product_id, int(existing["id"]), fields), False)

    def set_stock(self, product_id: int, quantity: int, *, variation_id: int | None = None) -> Record:
        """Turn stock management on and set the quantity of a product, or of one of its variations."""
        fields = {"manage_stock": True, "stock_quantity": int(quantity)}
        if variation_id is not None:
            return self.update_variation(product_id, variation_id, fields)
        return self.update_product(product_id, fields)

    def set_stock_by_sku(self, sku: str, quantity: int) -> Record | None:
        """`set_stock` on the product or variation with this SKU; None when no product has it."""
        record = self.find_product_by_sku(sku)
        if record is None:
            return None
        stock = Stock.of(record)
        return self.set_stock(stock.product_id, quantity, variation_id=stock.variation_id)

    def get_stock(self, product_id: int, *, variation_id: int | None = None) -> Stock:
        if variation_id is not None:
            return Stock.of(self.get_variation(product_id, variation_id), product_id=int(product_id))
        return Stock.of(self.get_product(product_id))

    def stock_by_sku(self, sku: str) -> Stock | None:
        record = self.find_product_by_sku(sku)
        return None if record is None else Stock.of(record)

    # -- customers ---------------------------------------------------------------------------------

    def get_customer(self, customer_id: int) -> Record:
        return self._object("GET", f"customers/{int(customer_id)}")

    def customers(self, *, per_page: int = MAX_PER_PAGE, **filters: object) -> Iterator[Record]:
        """Customers; WooCommerce lists role "customer" unless `role="all"` (or another role) is passed."""
        return self.iterate("customers", filters, per_page=per_page)

    def find_customer_by_email(self, email: str) -> Record | None:
        wanted = email.strip()
        if not wanted:
            return None
        folded = wanted.casefold()
        found = self.iterate("customers", {"email": wanted, "role": "all"})
        return next((c for c in found if str(c.get("email") or "").casefold() == folded), None)

    def create_customer(self, fields: Mapping[str, Any]) -> Record:
        return self._object("POST", "customers", json=dict(fields))

    def update_customer(self, customer_id: int, fields: Mapping[str, Any]) -> Record:
        return self._object("PUT", f"customers/{int(customer_id)}", json=dict(fields))

    def upsert_customer(self, fields: Mapping[str, Any]) -> Upsert:
        """Create the customer when no user has `fields["email"]`, else update that user."""
        email = str(fields.get("email") or "").strip()
        if not email:
            raise ValueError("upsert_customer needs an email")
        existing = self.find_customer_by_email(email)
        if existing is None:
            try:
                return Upsert(self.create_customer(fields), True)
            except WooCommerceRequestError as exc:
                if exc.code not in ("registration-error-email-exists", "existing_user_email"):
                    raise
                existing = self.find_customer_by_email(email)
                if existing is None:
                    raise
        return Upsert(self.update_customer(int(existing["id"]), fields), False)

    # -- webhooks ----------------------------------------------------------------------------------

    def create_webhook(
        self, *, topic: str, delivery_url: str, secret: str, name: str | None = None, status: str = "active"
    ) -> Record:
        """`POST /webhooks`. WooCommerce pings `delivery_url` (unsigned `webhook_id=<id>`) before answering 201."""
        if not secret:
            raise ValueError("a webhook secret is required: Koppel verifies every delivery with it")
        body = {"name": name or f"Koppel {topic}", "topic": topic, "delivery_url": delivery_url, "secret": secret,
                "status": status}  # fmt: skip
        return self._object("POST", "webhooks", json=body)

    def webhooks(self, *, status: str | None = None, per_page: int = MAX_PER_PAGE) -> Iterator[Record]:
        """Webhooks; `status` one of "active", "paused", "disabled" (all when None)."""
        return self.iterate("webhooks", {"status": status}, per_page=per_page)

    def get_webhook(self, webhook_id: int) -> Record:
        return self._object("GET", f"webhooks/{int(webhook_id)}")

    def update_webhook(self, webhook_id: int, fields: Mapping[str, Any]) -> Record:
        return self._object("PUT", f"webhooks/{int(webhook_id)}", json=dict(fields))

    def enable_webhook(self, webhook_id: int) -> Record:
        """Re-activate a webhook WooCommerce disabled after failed deliveries (`{"status": "active"}`).

        The REST update does not reset the failure count [U]: until one delivery succeeds, the next
        failure disables the webhook again.
        """
        return self.update_webhook(webhook_id, {"status": "active"})

    def delete_webhook(self, webhook_id: int) -> Record:
        """`DELETE /webhooks/{id}?force=true` (webhooks cannot be trashed); returns the deleted webhook."""
        return self._object("DELETE", f"webhooks/{int(webhook_id)}", params={"force": True})


__all__ = [
    "API_PATH",
    "BATCH_LIMIT",
    "MAX_PER_PAGE",
    "ORDER_STATUSES",
    "Page",
    "Record",
    "Retry",
    "Stock",
    "Upsert",
    "WooCommerceClient",
    "gmt",
    "parse_gmt",
]
