"""The Exact Online Sync API: changes since a `Timestamp` cursor, page by page.

Sync endpoints (`/api/v1/{division}/sync/...`) return every record changed after a cursor,
`$filter=Timestamp gt {cursor}L` (an Int64 literal), 1 000 per page, `__next` for more. `Timestamp`
is a row version (int64, no relation to clock time) and may arrive as a JSON number or a string;
records come back with it as an int. Deletions of all entity types come from one stream,
`sync/Deleted`, with an `EntityType` number (2 Accounts, 9 Items, 13 SalesInvoices, 15 StockPositions, 32
SalesOrderHeaders, 33 SalesOrderLines …). Exact asks apps to use these endpoints instead of
filtering the standard ones by date wherever a sync endpoint exists.

Cursor persistence belongs to the poller: `read_since` yields after every page, so the poller can
store the page's cursor once it has enqueued that page, and a crash re-reads at most one page.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

from connectors.exactonline.client import ExactClient
from connectors.exactonline.endpoints import Endpoint
from connectors.exactonline.normalise import ITEM_ATTRIBUTE_FIELDS
from connectors.exactonline.odata import Record, as_timestamp, timestamp_after


class SyncStream(Endpoint):
    """A sync endpoint: `Timestamp` is its cursor and ordering key; pages hold 1 000 records."""

    key = "Timestamp"
    page_size = 1000
    entity_type: ClassVar[int | None] = None
    """This entity's number in `sync/Deleted`."""


class SyncSalesOrderHeaders(SyncStream):
    """Order headers; a change to a line also bumps its header. (`sync/SalesOrder/SalesOrders` is deprecated.)"""

    path = "sync/SalesOrder/SalesOrderHeaders"
    entity_type = 32
    select = (
        "Timestamp", "ID", "OrderID", "OrderNumber", "YourRef", "OrderedBy", "Description", "OrderDate", "Currency",
        "Status", "DeliveryStatus", "InvoiceStatus", "AmountFC", "Modified", "OrderedByName", "PaymentCondition",
        "PaymentConditionDescription", "ShippingMethod", "ShippingMethodCode", "ShippingMethodDescription",
        "Remarks", "DeliverTo", "DeliveryAddress",
    )  # fmt: skip


class SyncSalesInvoices(SyncStream):
    """Sales invoices, one row per invoice line carrying the invoice's header fields (`InvoiceID` names
    the invoice, `ID` the line). Status 10 draft, 20 open, 50 processed; Type 8020 invoice, 8021 credit
    note, 8023/8024 their direct forms."""

    path = "sync/SalesInvoice/SalesInvoices"
    entity_type = 13
    select = (
        "Timestamp", "ID", "InvoiceID", "InvoiceNumber", "Type", "YourRef", "OrderedBy", "Description",
        "InvoiceDate", "Currency", "Status", "AmountFC", "Modified",
    )  # fmt: skip


class SyncAccounts(SyncStream):
    path = "sync/CRM/Accounts"
    entity_type = 2
    select = (
        "Timestamp",
        "ID",
        "Code",
        "Name",
        "Email",
        "Status",
        "IsSales",
        "VATNumber",
        "AddressLine1",
        "Postcode",
        "City",
        "Country",
        "Modified",
    )


class SyncItems(SyncStream):
    """Items with their group, picture, texts, item classes and free fields (the attributes). No sales
    price: neither this endpoint nor bulk/Logistics/Items has one, so the source reads `StandardSalesPrice`
    from logistics/Items per page (connector.py, `ExactSource.changes`)."""

    path = "sync/Logistics/Items"
    entity_type = 9
    select = (
        "Timestamp", "ID", "Code", "Description", "ExtraDescription", "Notes", "IsSalesItem", "IsStockItem",
        "SalesVatCode", "Unit", "Barcode", "ItemGroupCode", "ItemGroupDescription", "PictureUrl", "Modified",
        *ITEM_ATTRIBUTE_FIELDS,
    )  # fmt: skip


class SyncStockPositions(SyncStream):
    """Stock per item and warehouse: `FreeStock` is what can still be sold."""

    path = "sync/Inventory/StockPositions"
    entity_type = 15
    select = (
        "Timestamp",
        "ID",
        "ItemId",
        "ItemCode",
        "CurrentStock",
        "FreeStock",
        "PlanningIn",
        "PlanningOut",
        "ReservedStock",
        "Warehouse",
        "WarehouseCode",
    )


class SyncDeleted(SyncStream):
    """Deletions of every entity type; `EntityKey` is the deleted record's GUID."""

    path = "sync/Deleted"
    select = ("Timestamp", "ID", "EntityKey", "EntityType", "DeletedDate", "Division")


class SyncReader:
    """Reads one sync stream of one division through an ExactClient (budget, auth and retries included)."""

    def __init__(self, client: ExactClient, stream: type[SyncStream], *, select: Iterable[str] | None = None) -> None:
        self.client = client
        self.stream = stream
        self.select = tuple(select) if select is not None else stream.select

    def read_since(self, cursor: int) -> Iterator[tuple[list[Record], int]]:
        """(records, new cursor) per non-empty page; the new cursor is the largest Timestamp seen so far."""
        params = {"$filter": timestamp_after(cursor)}
        if self.select:
            params["$select"] = ",".join(self.select)
        highest = int(cursor)
        for page in self.client.iter_pages(self.stream.path, params):
            if not page:
                continue
            for record in page:
                record["Timestamp"] = as_timestamp(record.get("Timestamp"))
                highest = max(highest, record["Timestamp"])
            yield page, highest
