"""An in-memory Business Central: Microsoft's token endpoint and the API v2.0 the connector uses.

    python -m connectors.businesscentral.sandbox --port 8083 --client-secret s3cret --page-size 100

What it reproduces (PLATFORMS.md §3, Microsoft's API v2.0 reference):

* `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant with the Business Central scope; refusals
  in Entra ID's shape with their AADSTS codes (unknown tenant 90002, unknown client 700016, wrong secret
  7000215, no secret 7000218, wrong scope 1002012, another grant 70003). Tokens live `token_lifetime` s.
* `/v2.0/{environment}/api/v2.0/companies`, and under `companies({id})/`: customers, items (`inventory`
  read-only; `items({id})/picture` and its `pictureContent`, PATCHed as bytes), itemCategories, salesOrders
  and salesInvoices with `salesOrderLines` / `salesInvoiceLines` (POSTed one by one; a line takes its
  item's number, name and price; amounts and the document's totals computed; a deep insert is refused
  because Koppel does not rely on it). Item and customer numbers are upper-cased codes of at most 20
  characters and unique; a document needs an existing customer (`customerId` or `customerNumber`); a
  `currencyCode` must be a foreign currency the company knows (`currencies`; its own is empty, as in BC).
  A document's `pricesIncludeTax` is read-only (Microsoft's API pages: `Editable = false`): a POST or PATCH
  carrying it is refused 400 `BadRequest` "The property 'pricesIncludeTax' is read-only." [U: real BC may
  instead ignore the value; Koppel never sends it]; it is copied from the customer's "Prices Including VAT",
  a customer-card setting not in API v2.0 (kept beside the customer; `prices_including_vat` in SandboxConfig
  is the customer template's, default false), set through the control routes. Line amounts follow it, with
  the VAT computed on the running total of the document's lines at the same rate [U: as BC's sales lines
  do]; a line's VAT rate is its item's `_taxPercent` (sandbox-only, set by `/sandbox/change`; default 21).
  The setup lists taxAreas, paymentTerms, paymentMethods and shipmentMethods (upper-cased unique `code`,
  `$filter=code eq '…'`); a customer's `taxAreaId`, `paymentTermsId`, `paymentMethodId`, `shipmentMethodId`
  must name one of them (BC's "does not exist" otherwise) and `taxAreaDisplayName` follows its tax area.
* Queries: `$filter` (`eq ne gt ge lt le` joined by `and`/`or`; text compares as stored: Code fields — `number`,
  `code`, `externalDocumentNumber` — are stored upper-case, e-mails as typed),
  `$select`, `$expand` (lines, `customer`, `picture`; with `($select=…)`), `$orderby`, `$top`; pages of
  `page_size` records with `@odata.nextLink` (a `$skiptoken`).
* ETags: `@odata.etag` W/"…" new on every write with `lastModifiedDateTime` (strictly increasing). PATCH
  and DELETE need `If-Match`: none → 400 `BadRequest_InvalidToken` "Could not validate the client concurrency
  token…" (as BC answers, reported in MicrosoftDocs/dynamics365smb-devitpro-pb#813), a stale one → 412
  `Request_EntityChanged`; `*` matches any.
* `POST $batch` (OData's JSON batch; `Accept: application/json`): each request run as if sent alone, answered
  by its `id` with its own `status`, `headers` and `body` (an error of one leaves the others; `Isolation:
  snapshot` is not served); more than 100 requests → 400 [U: the code BC gives]. It counts as one request.
* Errors `{"error": {"code", "message"}}` (`BadRequest_NotFound`, `Internal_RecordNotFound`,
  `Internal_EntityWithSameKeyExists`, `BadRequest_PropertyNotFound`, …); a missing or expired token →
  401 `Authentication_InvalidCredentials`; an unknown environment → 404.

Sandbox-only control routes (no auth; bind to localhost): the kit's (`/sandbox/state`, `/sandbox/reset`,
`POST /sandbox/fail {"status": 429, "times": 2, "retry_after": 1}` — injected 429s and 503s answer in
BC's shape —, `/sandbox/faults`, `/sandbox/counters`), `POST /sandbox/seed {"entity", "records": […]}` (a
document's record may carry its lines, added after the header),
`POST /sandbox/seed/items {"skus": […]}`, `GET /sandbox/records?entity=` (what is stored; customers with
their card's `pricesIncludingVat`) and `POST /sandbox/change {"entity", "id", "fields"}`: a user's
change in BC (its time moves; an `inventory` change alone does not move it, as a posting does not). A
customer's seeded record or change may carry `pricesIncludingVat` (the card's Prices Including VAT), a
seeded document `pricesIncludeTax` (BC's UI lets a user change it on the document).

* Webhooks (`webhooks.py`): `subscriptions` created and renewed only after the notification URL echoed a
  `validationToken`, three-day expiry on the sandbox clock, batched notifications with the clientState,
  `collection` over `collection_threshold` changes, deletion after a failed delivery (408/429/5xx retried).
  Control routes `GET|POST /sandbox/subscriptions`, `POST /sandbox/subscriptions/drop {"id"}`,
  `POST /sandbox/notify` (send the batch now), `POST /sandbox/clock {"offset"}`, `GET /sandbox/deliveries`.

Modules: `app.py` (the routes, the control routes, the command line), `store.py` (records, ETags, totals,
filters), `webhooks.py` (subscriptions and notifications), `harness.py` (the contract tests' harness).
"""

from connectors.businesscentral.sandbox.app import BusinessCentralSandbox, SandboxConfig, create_sandbox, main

__all__ = ["BusinessCentralSandbox", "SandboxConfig", "create_sandbox", "main"]
