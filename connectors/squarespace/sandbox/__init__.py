"""An in-memory Squarespace: the Commerce APIs the connector uses and webhook notifications as Squarespace
sends them.

    python -m connectors.squarespace.sandbox --port 8084 --api-key sq_x --oauth-token sq_y

What it reproduces (PLATFORMS.md §2):

* `/1.0/commerce/orders` (list, get, `POST …/{id}/fulfillments`), `/v2/commerce/products` (list, get by up to
  50 ids; variants embedded with their stock), `/1.0/commerce/inventory` (list, get by ids, `POST
  …/adjustments` with a required `Idempotency-Key`: a key replayed with the same body does nothing, with
  another body is a 400), `/1.0/profiles` (list with `filter=isCustomer,true;email,…`, get by ids) and
  `/1.0/webhook_subscriptions` (list, get, create — the answer carries the secret, 64 upper-case hex
  characters, once —, update, delete, `…/actions/sendTestNotification`, `…/actions/rotateSecret`).
* Auth: `Authorization: Bearer` with the API key or the OAuth token; webhook subscriptions take the OAuth
  token only (403 for the API key). Errors `{"type", "subtype", "message", "details", "contextId"}`.
* Lists page by an opaque cursor, 50 to a page, `pagination{hasNextPage, nextPageCursor, nextPageUrl}`;
  a request with `cursor` and another parameter is a 400, as are orders' `modifiedAfter` without
  `modifiedBefore` (or the reverse). Orders list in `modifiedOn` order.
* Rate limit: `rate_limit` requests a minute (300), then 429 `RATE_LIMIT_ERROR` with `Retry-After` for a
  minute's cool-down; the kit's faults (`POST /sandbox/fail`) on top.
* Notifications: `{id, websiteId, subscriptionId, topic, createdOn, data{orderId, update}}`, signed
  `Squarespace-Signature` = lower-case hex HMAC-SHA256 keyed with the hex-decoded secret, as the
  subscription's secret is when sent; a failed delivery is retried after each of `retry_delays` (Squarespace:
  for up to 48 hours). A checkout sends `order.create`, a fulfilment `order.update` (`FULFILLED`).

Unverified against the real API and so marked [U]: a 404's error `type` (`NOT_FOUND`), 429 answers
carrying `Retry-After`, the profiles `filter` syntax, by-id reads leaving unknown ids out, retried
notifications signed with the secret current when sent, a test notification's body (a random `orderId`).

Control routes besides the kit's (`/sandbox/state`, `reset`, `fail`, `faults`, `counters`, `deliveries
?subscription_id=&min=&timeout=`): `POST /sandbox/orders {"count", "seed", "email", "skus"}` (checkouts),
`POST /sandbox/orders/{id}/update {"update"}` (an admin's change), `POST /sandbox/products/seed {"skus",
"quantity", "price"}`, `POST /sandbox/notifications/drop {"count"}` (the next notifications are lost),
`POST /sandbox/uninstall` (`extension.uninstall`), `GET|POST /sandbox/subscriptions/{id}/secret`.
"""

from connectors.squarespace.sandbox.app import SandboxConfig, SquarespaceSandbox, create_sandbox, main

__all__ = ["SandboxConfig", "SquarespaceSandbox", "create_sandbox", "main"]
