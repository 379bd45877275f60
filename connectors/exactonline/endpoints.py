"""Exact Online REST resources, declared: one base class, a few attributes per endpoint.

`ExactClient` does the work (auth, budget, paging, retries); an endpoint only says where it lives,
its key, what to `$select`, and which fields Exact requires on POST. Required fields are checked
before sending because Exact temporarily blocks an app after ~10 errors per endpoint per hour.
"""

from __future__ import annotations

from typing import ClassVar


class Endpoint:
    """A resource under `/api/v1/{division}/`. Standard endpoints page by 60 (also with `$expand`)."""

    path: ClassVar[str]
    key: ClassVar[str] = "ID"
    select: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()
    lines: ClassVar[str | None] = None
    """Name of the embedded line collection posted with the header, if any."""
    line_required: ClassVar[tuple[str, ...]] = ()
    page_size: ClassVar[int] = 60


class Accounts(Endpoint):
    """crm/Accounts: customers and suppliers.

    `Status` 'C' = customer (A accountant, S suspect, P prospect). `Code` is stored right-aligned in
    18 characters: filter with the leading spaces (`odata.pad_code`). E-mail is not unique in Exact.
    """

    path = "crm/Accounts"
    select = (
        "ID", "Code", "Name", "Email", "Status", "IsSales", "VATNumber", "ChamberOfCommerce",
        "AddressLine1", "Postcode", "City", "Country", "SalesVATCode", "Modified",
    )  # fmt: skip
    required = ("Name",)


class Contacts(Endpoint):
    """crm/Contacts: persons, each belonging to an Account."""

    path = "crm/Contacts"
    select = ("ID", "Account", "FirstName", "LastName", "Email", "Phone")
    required = ("Account",)


class Items(Endpoint):
    """logistics/Items: `Code` is the SKU; match case-insensitively (SQL collation). `Description` holds
    60 characters, `ExtraDescription` 255; `ItemGroup` is the group's GUID. A picture is sent as
    `PictureName` plus `Picture` (the file's bytes, base64; write-only); `PictureUrl` and
    `PictureThumbnailUrl` are read-only."""

    path = "logistics/Items"
    select = ("ID", "Code", "Description", "IsSalesItem", "IsStockItem", "SalesVatCode", "Unit", "Barcode")
    required = ("Code", "Description")


class ItemGroups(Endpoint):
    """logistics/ItemGroups: `Code` and `Description` (both required on POST); items refer to the ID."""

    path = "logistics/ItemGroups"
    select = ("ID", "Code", "Description")
    required = ("Code", "Description")


class SalesOrders(Endpoint):
    """salesorder/SalesOrders with embedded SalesOrderLines. Status 12 open, 20 partial, 21 complete,
    45 cancelled. `YourRef` holds the webshop's order number: the idempotency key of the order flow."""

    path = "salesorder/SalesOrders"
    key = "OrderID"
    select = (
        "OrderID",
        "OrderNumber",
        "YourRef",
        "OrderedBy",
        "Description",
        "OrderDate",
        "Currency",
        "Status",
        "AmountFC",
    )
    required = ("OrderedBy",)
    lines = "SalesOrderLines"
    line_required = ("Item",)


class SalesOrderLines(Endpoint):
    """salesorder/SalesOrderLines: read the lines of an order with `OrderID eq guid'…'`."""

    path = "salesorder/SalesOrderLines"
    select = (
        "ID",
        "OrderID",
        "LineNumber",
        "Item",
        "ItemCode",
        "Quantity",
        "UnitPrice",
        "NetPrice",
        "VATCode",
        "Description",
        "AmountFC",
    )


class SalesInvoices(Endpoint):
    """salesinvoice/SalesInvoices with embedded SalesInvoiceLines.

    `Type`: 8020 sales invoice (default), 8021 credit note, 8023 *direct* sales invoice, 8024 direct
    credit note. Direct types need a `Warehouse` (and are only available in the Wholesale &
    Distribution / Manufacturing Advanced and Premium editions); normal invoices must not carry one.
    Source: picqer/exact-php-client `SalesInvoice.php` (Exact's property docs), not verified live.
    """

    path = "salesinvoice/SalesInvoices"
    key = "InvoiceID"
    select = (
        "InvoiceID",
        "InvoiceNumber",
        "Type",
        "YourRef",
        "OrderedBy",
        "InvoiceTo",
        "Journal",
        "Description",
        "InvoiceDate",
        "Currency",
        "Status",
        "AmountFC",
        "Warehouse",
    )
    required = ("OrderedBy", "Journal")
    lines = "SalesInvoiceLines"
    line_required = ("Item",)


SALES_INVOICE = 8020
DIRECT_SALES_INVOICE = 8023


class SalesEntries(Endpoint):
    """salesentry/SalesEntries: a financial sales mutation (no items): lines carry GLAccount and AmountFC."""

    path = "salesentry/SalesEntries"
    key = "EntryID"
    select = (
        "EntryID",
        "EntryNumber",
        "Customer",
        "Journal",
        "YourRef",
        "Description",
        "EntryDate",
        "Currency",
        "AmountFC",
        "Status",
        "Type",
    )
    required = ("Customer", "Journal")
    lines = "SalesEntryLines"
    line_required = ("GLAccount", "AmountFC")


class VATCodes(Endpoint):
    """vat/VATCodes: order and invoice lines reference the `Code` (e.g. '2'), not the ID."""

    path = "vat/VATCodes"
    select = ("ID", "Code", "Description", "Percentage")


class PaymentConditions(Endpoint):
    """cashflow/PaymentConditions: `Code` is what orders and invoices reference."""

    path = "cashflow/PaymentConditions"
    select = ("ID", "Code", "Description", "PaymentDays")


class Addresses(Endpoint):
    """crm/Addresses: an account's addresses. `Type` 1 visit (the account's own address fields), 2 postal,
    3 invoice, 4 delivery; `Main` marks the one of its type Exact proposes. Sales orders name a delivery
    address by its ID (`DeliveryAddress`), sales invoices likewise (`DeliverToAddress`)."""

    path = "crm/Addresses"
    select = ("ID", "Account", "Type", "Main", "AddressLine1", "AddressLine2", "AddressLine3", "Postcode", "City",
              "State", "Country")  # fmt: skip
    required = ("Account", "Type")


DELIVERY_ADDRESS = 4


class ShippingMethods(Endpoint):
    """sales/ShippingMethods: sales orders and accounts reference the ID; users know the `Code`."""

    path = "sales/ShippingMethods"
    select = ("ID", "Code", "Description", "Active")


class AccountClassifications(Endpoint):
    """crm/AccountClassifications: the values of an account's Classification1..8 (IDs); users know the `Code`."""

    path = "crm/AccountClassifications"
    select = ("ID", "Code", "Description", "AccountClassificationName")


class CostCenters(Endpoint):
    """hrm/Costcenters: transaction lines name a cost centre by its `Code` (CostCenter)."""

    path = "hrm/Costcenters"
    select = ("ID", "Code", "Description", "Active")


class CostUnits(Endpoint):
    """hrm/Costunits: transaction lines name a cost unit by its `Code` (CostUnit)."""

    path = "hrm/Costunits"
    select = ("ID", "Code", "Description")
