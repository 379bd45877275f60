"""An in-memory Winstore: the web service the connector uses, as far as it is known (PLATFORMS.md §5).

    python -m connectors.winstore.sandbox --port 8083 --username koppel --password winstore-sandbox

What it reproduces, and what is guessed [U] (nothing public documents Winstore's answers):

* `/iposws/api/osd/`: GetArticleDataChangesByDate?date=, GetStock?type=byArtikelKey&artkey= /
  type=byGtin&gtin=, GetChangedStock?date=, GetChangedStockWithWarehouse?date=&outOfStock=0|1,
  GetSuppliers, GetArticleDataBySupplierId?id=, POST PostOrderWithStatusCode; and the assumed [U]
  (client.ASSUMED_ENDPOINTS) GetOrdersByDate?date=, GetCustomerDataChangesByDate?date=, POST
  PostOrderStatus and POST PostStock.
* HTTP Basic; anything else → 401 with ASP.NET Web API's "Authorization has been denied for this request."
  and `WWW-Authenticate: Basic`.
* Answers in JSON, or XML when the Accept header asks for it first (ASP.NET Web API's content
  negotiation): lists as `<ArrayOfArticle>`/`<ArrayOfStock>`/`<ArrayOfSupplier>` in a data-contract
  namespace, nulls as `i:nil="true"` [U]. Errors `{"Message": …}` (Web API's shape); 400 for a missing or
  unreadable `date` (so the PHP client's `?`-joined query string is refused, as it should be), 404 for
  an unknown article, supplier or route.
* Fields [U]: articles `ArtKey, ArtNr, Gtin, Description, SalesPrice (VAT incl.), VatPercentage,
  SupplierId, SupplierArtNr, Brand, Colour, Active, ChangeDate`; stock `ArtKey, ArtNr, Gtin, Warehouse,
  Stock, Reserved, ChangeDate`; suppliers `SupplierId, Name`. `ChangeDate` is local time (Europe/Amsterdam)
  without an offset, whole seconds; `date` filters on it inclusively (`>=`) [U].
* Orders: the `<order>` document is read strictly — the elements the public client writes (plus
  `invoice_add/city`, which that client means to write), nothing else; `ordernr` (≤ 50), `orderdate`
  `Y-m-d H:i:s`, whole-number `customerid`, `branch` (a known branch: 1 and 2 by default) and `amount`,
  amounts with at most 4 decimals, a well-formed e-mail when given, `currency` ISO 4217, `countryISO`
  ISO 3166, at least one position, `type` "S", each `product_id` an article key or GTIN it holds; a
  DOCTYPE is refused. Success: 200 `{"StatusCode": 200, "Message": "Order … imported", "OrderId": n}`;
  refusal: 400 (or 409 for an ordernr it holds already) `{"StatusCode", "Message"}` [U: shape and the
  duplicate rule]. A booked order takes its lines' stock from their branch's warehouse (change dates move).
* Stock levels [U]: PostStock takes `<stock><artkey/><warehouse/><amount/></stock>` (XML only, else 415),
  read strictly like the order; it sets the article's absolute level in that warehouse (reservations
  kept) and moves its change date, so GetChangedStock* report it. Success: 200 `{"StatusCode": 200,
  "Message"}`; refusal `{"StatusCode", "Message"}`: 404 for an unknown article, 400 for an unknown
  warehouse (one per branch, and any that holds stock), a missing or unknown element, an amount that
  is no number (at most 4 decimals; below zero allowed, as a till sells below zero).
* Orders, customers and statuses [U: the assumed endpoints, connectors/winstore/client.py
  `ASSUMED_ENDPOINTS`]: `GetOrdersByDate?date=` answers every order changed since (posted ones and those
  rung up through the control route), in the posted document's elements with `statuscode` and
  `changedate`, each position's `product_id` the article key and `artnr` its article number (nested
  `<invoice_add>` and `<positions><position>` in XML); `GetCustomerDataChangesByDate?date=` the customers
  changed since; `POST PostOrderStatus` (XML `<order><ordernr/><statuscode/></order>`) sets a status
  code (a whole number; 404 for an unknown ordernr) and moves the order's change date. A posted order
  starts at status 1, one rung up at 2 unless given.
* Control routes (`/sandbox/…`, no auth): `articles` (seed or change articles, with stock per warehouse),
  `stock` (a count or a sale), `suppliers`, `orders` (GET: what was posted), `orders/ring-up` (orders made
  in Winstore itself: the till, another channel; stock moves), `orders/status` (a user changes a status),
  `customers` (create or change), `clock` (time passes), and the kit's state, reset, fail (faults),
  faults and counters.
"""

from connectors.winstore.sandbox.app import create_sandbox

__all__ = ["create_sandbox"]
