"""An in-memory WooCommerce: the REST API v3 the connector uses, and webhooks sent as WooCommerce sends them.

    python -m connectors.woocommerce.sandbox --port 8081 --consumer-key ck_x --consumer-secret cs_y

What it reproduces (PLATFORMS.md §1):

* `/wp-json/wc/v3/` orders (list, get, update), products (simple and variable; list, get, create, update,
  delete, batch), variations (same), customers (list, get, create, update) and webhooks (list, get,
  create, update, delete with `force=true`). JSON in WooCommerce's key order, encoded as PHP encodes it
  (`\\/`, `\\uXXXX`); money as strings, line `price` a float; `date_*` shop-local, `*_gmt` UTC.
* Auth: HTTP Basic with the consumer key and secret, or `?consumer_key=&consumer_secret=` — over plain
  HTTP too (real WooCommerce wants OAuth 1.0a there). Missing or unknown key → 401
  `woocommerce_rest_cannot_view` (`_create`, `_edit`, `_delete` by method); known key with a wrong secret
  → 401 `woocommerce_rest_authentication_error`; a read-only key asked to write → 401.
* Lists: `per_page` (default 10, 1-100, else 400 `rest_invalid_param`), `page`, `X-WP-Total`,
  `X-WP-TotalPages`, `Link` rel prev/next; filters `sku` (comma-separated; variations included),
  `email`, `role` (customers default to role "customer"), `status`, `after`/`before`,
  `modified_after`/`modified_before` with `dates_are_gmt` (not on customers, as in WooCommerce), `include`,
  `search`, `orderby`, `order`.
* Errors `{"code", "message", "data": {"status"}}` with WooCommerce's codes: `..._shop_order_invalid_id`,
  `..._product_invalid_id`, `product_invalid_sku` (duplicate SKU, `data` naming the holder's
  `resource_id` and a `unique_sku`; SKUs and e-mails compare case-insensitively, as MySQL does),
  `registration-error-email-exists`, `rest_invalid_param`, `rest_no_route`,
  `woocommerce_rest_trash_not_supported` (501), batches over 100 → 413. A batch answers 200 with one result
  per item in order; a failed create is `{"id": 0, "error": {…}}` (as WooCommerce's `batch_items`), a failed
  update or delete carries the item's id.
* Webhooks: see webhooks.py. Checkout orders also fire `order.updated` (payment completion saves
  the order again) and `product.updated` for the stock they reduce [U: both as observed, not from code].

Sandbox-only control routes (no auth; bind to localhost): the kit's (`GET /sandbox/state`, `POST
/sandbox/reset`, `POST /sandbox/fail {"status": 503, "times": 1, "retry_after": 2}` — the next API
requests fail so —, `GET /sandbox/faults`, `GET /sandbox/counters`, `GET
/sandbox/deliveries?webhook_id=&min=&timeout=`, waiting up to `timeout` s for `min` entries) and
`POST /sandbox/orders {"count", "seed", "status", "coupon"}` (coupon: `welkom10` 10 %, `zomer5` € 5 off),
`POST /sandbox/products/seed`.

Modules: `app.py` (the app, its control routes, the command line), `api.py` (the REST routes), `state.py`,
`store.py`, `shapes.py`, `query.py`, `seed.py`, `webhooks.py`; the shared parts come from `connectors.sandboxkit`.
"""



from connectors.woocommerce.sandbox.app import create_sandbox, main
from connectors.woocommerce.sandbox.query import wc_response
from connectors.woocommerce.sandbox.state import SandboxConfig, WooCommerceSandbox

__all__ = ["SandboxConfig", "WooCommerceSandbox", "create_sandbox", "main", "wc_response"]
