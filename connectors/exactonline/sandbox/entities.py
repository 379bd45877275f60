"""The Exact sandbox's entities: which records it holds (`SPECS`: path, key, fields, references,
required fields, lines), the Sync API views over them, and the reference data every division starts
with. The behaviour over them — validation, Timestamps, deletions, totals — is store.py's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.exactonline.normalise import ITEM_ATTRIBUTE_FIELDS

Record = dict[str, Any]
ChangeHook = Callable[[int, str, str, str], None]
"""(division, entity path, "Create" | "Update" | "Delete", the record's key)"""
FIRST_TIMESTAMP = 4_300_000_000_000  # above 2**32: clients must treat Timestamp as int64
DATE_FIELDS = frozenset({"OrderDate", "InvoiceDate", "EntryDate", "DeliveryDate", "DueDate"})
COMMON_FIELDS = ("Created", "Modified", "Division")


class SandboxError(Exception):
    """A request the sandbox refuses the way Exact would: HTTP status plus Exact's error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Spec:
    path: str
    key: str
    fields: frozenset[str]
    type_name: str
    required: tuple[str, ...] = ()
    references: Mapping[str, str] = field(default_factory=dict)
    code_references: Mapping[str, str] = field(default_factory=dict)
    """Fields that hold another entity's `Code` (a line's CostCenter), not its GUID."""
    lines: str | None = None
    line_path: str | None = None
    parent_key: str | None = None
    writable: bool = True
    exposed: bool = True
    deleted_type: int | None = None
    write_only: frozenset[str] = frozenset()
    """Properties a POST or PUT takes but no GET returns (an item's `Picture`)."""


def _spec(path: str, key: str, names: str, type_name: str, **options: Any) -> Spec:
    fields = frozenset((key, *COMMON_FIELDS, *names.split()))
    return Spec(path=path, key=key, fields=fields, type_name=f"Exact.Web.Api.Models.{type_name}", **options)


_CLASSIFICATIONS = tuple(f"Classification{n}" for n in range(1, 9))
"""An account's classifications 1..8: each a GUID of crm/AccountClassifications."""
_COST_CODES = {"CostCenter": "hrm/Costcenters", "CostUnit": "hrm/Costunits"}
"""Transaction lines name cost centres and cost units by `Code`."""
VAT_CODES = (
    ("0", "0% geen btw", 0.0), ("1", "BTW laag 9%", 0.09), ("2", "BTW hoog 21%", 0.21),
    ("6", "OSS BE 6%", 0.06), ("7", "OSS DE 7%", 0.07), ("19", "OSS DE 19%", 0.19),
)  # fmt: skip
"""Every division's VAT codes: the Dutch ones, and one-stop-shop codes for Belgian and German consumers."""
ADDRESS_TYPES = {1: "Visit", 2: "Postal", 3: "Invoice", 4: "Delivery"}
"""crm/Addresses `Type` (Edm.Int16)."""

SPECS: dict[str, Spec] = {
    spec.path: spec
    for spec in (
        _spec(
            "crm/Accounts",
            "ID",
            "Code Name Email Status IsSales IsSupplier VATNumber ChamberOfCommerce "
            "AddressLine1 AddressLine2 AddressLine3 Postcode City State Country SalesVATCode Phone Website Language "
            "PaymentConditionSales GLAccountSales ShippingMethod Remarks " + " ".join(_CLASSIFICATIONS),
            "Account",
            required=("Name",),
            references={
                "GLAccountSales": "financial/GLAccounts",
                "ShippingMethod": "sales/ShippingMethods",
                **dict.fromkeys(_CLASSIFICATIONS, "crm/AccountClassifications"),
            },
            deleted_type=2,
        ),
        _spec(
            "crm/Contacts",
            "ID",
            "Account FirstName LastName FullName Email Phone",
            "Contact",
            required=("Account",),
            references={"Account": "crm/Accounts"},
            deleted_type=5,
        ),
        _spec(
            "crm/Addresses",
            "ID",
            "Account AccountName Type Main AddressLine1 AddressLine2 AddressLine3 Postcode City State Country "
            "Contact Phone Notes",
            "Address",
            required=("Account", "Type"),
            references={"Account": "crm/Accounts", "Contact": "crm/Contacts"},
        ),
        _spec(
            "crm/AccountClassifications",
            "ID",
            "Code Description AccountClassificationName AccountClassificationNameDescription",
            "AccountClassification",
            required=("Code",),
        ),
        _spec("sales/ShippingMethods", "ID", "Code Description Active Notes", "ShippingMethod", required=("Code",)),
        _spec("hrm/Costcenters", "ID", "Code Description Active", "Costcenter", required=("Code",)),
        _spec("hrm/Costunits", "ID", "Code Description", "Costunit", required=("Code",)),
        _spec(
            "logistics/Items",
            "ID",
            "Code Description ExtraDescription Notes IsSalesItem IsStockItem SalesVatCode Unit Barcode "
            "StandardSalesPrice ItemGroup ItemGroupCode ItemGroupDescription Picture PictureName PictureUrl "
            "PictureThumbnailUrl " + " ".join(ITEM_ATTRIBUTE_FIELDS),
            "Item",
            required=("Code", "Description"),
            references={"ItemGroup": "logistics/ItemGroups"},
            deleted_type=9,
            write_only=frozenset({"Picture"}),
        ),
        _spec(
            "logistics/ItemGroups",
            "ID",
            "Code Description Notes GLCosts GLRevenue GLStock",
            "ItemGroup",
            required=("Code", "Description"),
        ),
        _spec(
            "salesorder/SalesOrders",
            "OrderID",
            "OrderNumber YourRef OrderedBy OrderedByName DeliverTo InvoiceTo "
            "Description OrderDate DeliveryDate Currency Status DeliveryStatus InvoiceStatus AmountFC AmountDC "
            "PaymentCondition PaymentConditionDescription ShippingMethod ShippingMethodCode ShippingMethodDescription "
            "Remarks WarehouseID SalesOrderLines DeliveryAddress",
            "SalesOrder",
            required=("OrderedBy",),
            references={"OrderedBy": "crm/Accounts", "WarehouseID": "inventory/Warehouses",
                        "ShippingMethod": "sales/ShippingMethods", "DeliveryAddress": "crm/Addresses"},
            lines="SalesOrderLines",
            line_path="salesorder/SalesOrderLines",
            deleted_type=32,
        ),
        _spec(
            "salesorder/SalesOrderLines",
            "ID",
            "OrderID LineNumber Item ItemCode ItemDescription Description "
            "Quantity UnitPrice NetPrice Discount VATCode VATPercentage VATAmountFC AmountFC AmountDC DeliveryDate "
            "CostCenter CostUnit",
            "SalesOrderLine",
            required=("Item",),
            references={"Item": "logistics/Items"},
            code_references=_COST_CODES,
            parent_key="OrderID",
            writable=False,
            deleted_type=33,
        ),
        _spec(
            "salesinvoice/SalesInvoices",
            "InvoiceID",
            "InvoiceNumber Type YourRef OrderedBy InvoiceTo DeliverTo "
            "Journal Description InvoiceDate OrderDate DueDate Currency Status AmountFC AmountDC PaymentCondition "
            "Warehouse Remarks SalesInvoiceLines DeliverToAddress",
            "SalesInvoice",
            required=("OrderedBy", "Journal"),
            references={"OrderedBy": "crm/Accounts", "Warehouse": "inventory/Warehouses",
                        "DeliverToAddress": "crm/Addresses"},
            lines="SalesInvoiceLines",
            line_path="salesinvoice/SalesInvoiceLines",
            deleted_type=13,
        ),
        _spec(
            "salesinvoice/SalesInvoiceLines",
            "ID",
            "InvoiceID LineNumber Item ItemCode Description Quantity UnitPrice NetPrice VATCode VATPercentage "
            "VATAmountFC AmountFC AmountDC CostCenter CostUnit",
            "SalesInvoiceLine",
            required=("Item",),
            references={"Item": "logistics/Items"},
            code_references=_COST_CODES,
            parent_key="InvoiceID",
            writable=False,
        ),
        _spec(
            "salesentry/SalesEntries",
            "EntryID",
            "EntryNumber Customer Journal YourRef Description EntryDate "
            "DueDate Currency AmountFC AmountDC VATAmountFC VATAmountDC Status Type PaymentCondition SalesEntryLines",
            "SalesEntry",
            required=("Customer", "Journal"),
            references={"Customer": "crm/Accounts"},
            lines="SalesEntryLines",
            line_path="salesentry/SalesEntryLines",
        ),
        _spec(
            "salesentry/SalesEntryLines",
            "ID",
            "EntryID LineNumber GLAccount AmountFC AmountDC VATCode VATAmountFC Description CostCenter CostUnit",
            "SalesEntryLine",
            required=("GLAccount", "AmountFC"),
            references={"GLAccount": "financial/GLAccounts"},
            code_references=_COST_CODES,
            parent_key="EntryID",
            writable=False,
        ),
        _spec(
            "inventory/Warehouses",
            "ID",
            "Code Description Main EMail ManagerUser UseStorageLocations DefaultStorageLocation "
            "DefaultStorageLocationCode DefaultStorageLocationDescription",
            "Warehouse",
            required=("Code",),
        ),
        _spec(
            "financial/GLAccounts",
            "ID",
            "Code Description SearchCode Type TypeDescription BalanceSide BalanceType IsBlocked VATCode "
            "VATDescription Costcenter Costunit",
            "GLAccount",
            required=("Code",),
        ),
        _spec("vat/VATCodes", "ID", "Code Description Percentage", "VATCode", writable=False),
        _spec("cashflow/PaymentConditions", "ID", "Code Description PaymentDays", "PaymentCondition", writable=False),
        _spec(
            "inventory/StockPositions",
            "ID",
            "ItemId ItemCode CurrentStock FreeStock PlanningIn PlanningOut ReservedStock Warehouse WarehouseCode",
            "StockPosition",
            writable=False,
            exposed=False,
            deleted_type=15,
        ),
    )
}

SYNC_VIEWS: dict[str, str] = {
    "sync/CRM/Accounts": "crm/Accounts",
    "sync/Logistics/Items": "logistics/Items",
    "sync/SalesOrder/SalesOrderHeaders": "salesorder/SalesOrders",
    "sync/SalesOrder/SalesOrderLines": "salesorder/SalesOrderLines",
    "sync/SalesInvoice/SalesInvoices": "salesinvoice/SalesInvoices",
    "sync/Inventory/StockPositions": "inventory/StockPositions",
}
PICTURE_PATH = "/docs/ItemPicture"
"""Where the sandbox serves an item's picture: `{PICTURE_PATH}/{division}/{item ID}` (PictureUrl)."""
ITEM_READ_ONLY = ("ItemGroupCode", "ItemGroupDescription", "PictureUrl", "PictureThumbnailUrl")
DELETED_FIELDS = frozenset({"Timestamp", "ID", "EntityKey", "EntityType", "DeletedBy", "DeletedDate", "Division"})
MAIN_WAREHOUSE = "5b1f1f80-6d5e-4c39-9a8e-000000000001"
"""The main warehouse every division starts with (code "1"); stock positions are kept there."""
DIRECT_TYPES = {8023, 8024}
GL_TYPES = {
    10: "Cash", 12: "Bank", 20: "Accounts receivable", 22: "Accounts payable", 24: "VAT", 40: "Inventory",
    90: "General", 110: "Revenue", 111: "Cost of goods", 120: "Other costs", 140: "Exceptional income",
    160: "Interest income",
}  # fmt: skip
"""Some of Exact's G/L account `Type`s (Edm.Int32) with their `TypeDescription`."""
PROFIT_AND_LOSS = 110
"""G/L types from 110 (Revenue) on are profit & loss accounts (BalanceType W); lower ones balance sheet (B)."""
CREDIT_TYPES = {22, 24, 110, 140, 160}
CODED = {
    "inventory/Warehouses": "Warehouse", "financial/GLAccounts": "G/L account", "logistics/ItemGroups": "Item group",
    "crm/AccountClassifications": "Account classification", "sales/ShippingMethods": "Shipping method",
    "hrm/Costcenters": "Cost center", "hrm/Costunits": "Cost unit",
}  # fmt: skip
"""Entities whose `Code` is unique; the name their error messages use."""
REVENUE_ACCOUNTS = (("8000", "Omzet binnenland"), ("8010", "Omzet EU"), ("8020", "Omzet buiten EU"))
"""The revenue G/L accounts (Type 110) every division starts with."""


def sync_fields(view: str) -> frozenset[str]:
    if view == "sync/Deleted":
        return DELETED_FIELDS
    spec = SPECS[SYNC_VIEWS[view]]
    return (spec.fields - {spec.lines}) | {"Timestamp", "ID"}
