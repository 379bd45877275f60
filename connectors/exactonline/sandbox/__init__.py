"""An in-memory Exact Online: OAuth2, the REST and Sync APIs the connector uses, rate limits, errors.

    python -m connectors.exactonline.sandbox --port 8082          # then point base_url at it

What it reproduces (see PLATFORMS.md §4):

* OAuth2 code flow: `/api/oauth2/auth` redirects back with `code` and `state` (auto-approve, or a
  consent page); `/api/oauth2/token` answers `expires_in` as a string ("600"); codes are single use
  (3 min); refresh tokens rotate — only the newest works, any older one answers 400 invalid_grant;
  refreshing while the access token has more than `refresh_window` s left answers 401 "Access token
  not expired". Token lifetime is configurable so tests can expire tokens quickly.
* `/api/v1/{division}/…` with bearer auth (401 when missing, unknown or expired), the entities in
  store.py (accounts, contacts, items, sales orders, sales invoices — direct ones from a warehouse —,
  sales entries, `inventory/Warehouses`, `financial/GLAccounts`, VAT codes, payment conditions) with
  GUID keys `(guid'…')`, OData envelopes, `$filter` (query.py subset; anything else is a 400),
  `$select`, `$top`, `$expand` of order/invoice lines, `__next` paging by 60 (standard) and 1 000 (sync)
  with `$skiptoken`, `/Date(ms)/` dates, `current/Me`.
* Sync API: `sync/CRM/Accounts`, `sync/Logistics/Items`, `sync/SalesOrder/SalesOrderHeaders`,
  `…/SalesOrderLines`, `sync/Inventory/StockPositions`, `sync/Deleted`, by `Timestamp gt {n}L`.
* Rate limits per division, fixed windows on the clock: minutely and daily counts, all six
  `X-RateLimit-*` headers (resets in epoch ms) on every call, only the minutely ones on a 429 for
  an exhausted minute. Configurable, switchable off (then no headers).
* Exact-shaped errors `{"error": {"code": "", "message": {"lang": "", "value": "…"}}}`.
* Webhooks (webhooks.py, which lists its sources and what they leave open): `webhooks/WebhookSubscriptions`
  per division (POST `{CallbackURL, Topic}` after an empty validation POST answered 200/201, GET, DELETE)
  for Accounts, Contacts, Items, SalesInvoices and SalesOrders; every create, update and delete of such a
  record — through the API or the control routes — POSTs `{"Content": {…}, "HashCode": …}`, signed with the
  app's webhook secret (`SandboxConfig.webhook_secret`); failures are retried 10 times, 2^n minutes apart.

Sandbox-only control routes (no auth; bind to localhost): `GET /sandbox/state` (its `oauth` part
counts refreshes and refused token requests by error, e.g. `{"invalid_grant": 1}`), `POST
/sandbox/reset`, `POST /sandbox/seed/items {"skus": [...]}`, `POST /sandbox/seed {"entity", "records"}`
(e.g. `{"entity": "financial/GLAccounts", "records": [{"Code": "8100", "Description": "Omzet DE", "Type": 110}]}`,
or a warehouse, `"Main": 1` to make it the main one), `POST /sandbox/update {"entity", "id", "fields"}` (a
change a person makes in Exact, e.g. an order delivered),
`POST /sandbox/ratelimit {"per_minute", "per_day", "enabled"}`, `GET /sandbox/calls`, `POST
/sandbox/expire-tokens`, `POST /sandbox/fail {"status": 503, "times": 1, "retry_after": 2}` (the next API
requests fail so; `retry_after` adds a `Retry-After` header), `GET /sandbox/webhooks` (subscriptions,
failures, waiting retries) and `POST /sandbox/webhooks {"secret"}` (the app's webhook secret), `POST
/sandbox/webhooks/retry` (send the waiting retries now), and the kit's `GET /sandbox/faults`, `GET
/sandbox/counters` and `GET /sandbox/deliveries?min=&timeout=&subscription=&topic=&action=&key=&attempt=`.

Modules: `app.py` (the app, its control routes, the command line), `api.py` (the REST and Sync routes),
`state.py`, `ratelimit.py`, `store.py`, `query.py`, `shapes.py`, `webhooks.py`; `consent.py` is Koppel's side
of the OAuth set-up against the sandbox. The shared parts come from `connectors.sandboxkit`.
"""



from connectors.exactonline.sandbox.api import exact_error
from connectors.exactonline.sandbox.app import create_sandbox, main
from connectors.exactonline.sandbox.consent import connect_sandbox
from connectors.exactonline.sandbox.state import ExactSandbox, SandboxConfig

__all__ = ["ExactSandbox", "SandboxConfig", "connect_sandbox", "create_sandbox", "exact_error", "main"]
