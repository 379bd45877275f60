"""The sandbox's in-memory Exact Online administration: validation, Timestamps, deletions, totals over
the entities entities.py declares.

Each division holds its own tables. Every create, update or delete takes the next value of one
int64 `Timestamp` counter (a row version, as in Exact's Sync API); a change to an order line also
bumps its header. Deletions are kept for `sync/Deleted` with Exact's EntityType numbers.

Validation follows what the connector relies on: unknown properties, missing required fields and
references to GUIDs that do not exist answer 400 (an invoice's Warehouse, a sales entry line's
GLAccount, an order line's Item); Account codes are stored right-aligned in 18 characters; Item,
Warehouse and G/L account codes are unique; direct invoices (Type 8023/8024) need a Warehouse, normal
ones must not have one. Creating a sales order reserves stock (FreeStock down, PlanningOut up).

Order and invoice lines get their VATPercentage and VATAmountFC from their VATCode (else the item's
SalesVatCode), per line, rounded to cents half away from zero; a sales order's PaymentCondition must be a
payment condition's code. The Sync API's
SalesInvoices give one row per invoice (Exact gives one per invoice line, with the invoice's fields).
Addresses (crm/Addresses) belong to an account, `Type` 1-4 (4 delivery), one `Main` per account and
type; a sales order's DeliveryAddress (an invoice's DeliverToAddress) must be one of the delivery
account's. Account classifications, shipping methods (referenced by GUID from accounts and orders),
cost centres and cost units (referenced by `Code` from order, invoice and entry lines) have unique
codes; an unknown one answers 400.

Every division starts with VAT codes 0/1/2 (and OSS codes 6/7/19 for BE and DE), payment conditions
00/14/30, one main warehouse (code
"1"; `Main` is Edm.Byte, exactly one warehouse has 1) and the revenue G/L accounts 8000, 8010 and
8020 (`Type` 110). Entity and field names follow Exact's REST reference (InventoryWarehouses,
FinancialGLAccounts) as the picqer/exact-php-client models quote it.

`Store.on_change(division, path, action, key)`, when set, hears of every record created, updated or
deleted ("Create", "Update", "Delete") through `create`, `update` and `delete` — lines, stock positions
and reference data excepted: what the webhooks (webhooks.py) tell of.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors.exactonline.odata import EXACT_TZ, parse_date
from connectors.exactonline.sandbox.entities import (
    ADDRESS_TYPES,
    CODED,
    COMMON_FIELDS,
    CREDIT_TYPES,
    DATE_FIELDS,
    DIRECT_TYPES,
    FIRST_TIMESTAMP,
    GL_TYPES,
    ITEM_READ_ONLY,
    MAIN_WAREHOUSE,
    PICTURE_PATH,
    PROFIT_AND_LOSS,
    REVENUE_ACCOUNTS,
    SPECS,
    SYNC_VIEWS,
    VAT_CODES,
    ChangeHook,
    Record,
    SandboxError,
    Spec,
)


def _guid(value: object, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise SandboxError(400, f"Invalid GUID for {what}") from None


def _cents(value: Decimal) -> float:
    """An amount rounded to cents half away from zero, as Exact rounds (not binary float's half-even-ish)."""
    return float(value.quantize(Decimal("0.01"), ROUND_HALF_UP))


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SandboxError(400, f"Invalid number for {what}")
    try:
        return float(value)
    except ValueError:
        raise SandboxError(400, f"Invalid number for {what}") from None


def _date(value: object, what: str) -> datetime:
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is not None:
            return parsed.replace(tzinfo=None)
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            pass
    raise SandboxError(400, f"Invalid date for {what}")


class Store:
    """All divisions' data. Not thread-safe by itself: the sandbox mutates it from one event loop."""

    def __init__(self, divisions: Iterable[int], clock: Callable[[], float]) -> None:
        self.clock = clock
        self.divisions = list(divisions)
        self.timestamp = FIRST_TIMESTAMP
        self.tables: dict[int, dict[str, dict[str, Record]]] = {}
        self.deleted: dict[int, list[Record]] = {}
        self.numbers: dict[tuple[int, str], int] = {}
        self.pictures: dict[tuple[int, str], tuple[str, bytes]] = {}
        """(division, item ID) → (PictureName, bytes) of the items' pictures."""
        self.on_change: ChangeHook | None = None
        self._lines: dict[tuple[int, str, str], dict[str, int]] = {}
        """(division, line path, parent key) → {line key: insertion number}: `lines_of` without a scan of every
        line of the division (a scan per order made the sandbox's CPU per order grow with its orders)."""
        self._inserted = 0
        for division in self.divisions:
            self.tables[division] = {path: {} for path in SPECS}
            self.deleted[division] = []
            self._seed_reference_data(division)

    # -- helpers ------------------------------------------------------------------------------------

    def _changed(self, division: int, path: str, action: str, key: str) -> None:
        if self.on_change is not None:
            self.on_change(division, path, action, key)

    def now(self) -> datetime:
        """Exact's wall clock: Dutch local time, stored naive."""
        return datetime.fromtimestamp(self.clock(), UTC).astimezone(EXACT_TZ).replace(tzinfo=None)

    def _next_timestamp(self) -> int:
        self.timestamp += 1
        return self.timestamp

    def _next_number(self, division: int, series: str, start: int) -> int:
        value = self.numbers.get((division, series), start - 1) + 1
        self.numbers[(division, series)] = value
        return value

    def table(self, division: int, path: str) -> dict[str, Record]:
        if division not in self.tables:
            raise SandboxError(403, f"Forbidden: no access to division {division}")
        return self.tables[division][path]

    def _touch(self, division: int, record: Record, *, created: bool = False) -> None:
        now = self.now()
        if created:
            record["Created"] = now
        record["Modified"] = now
        record["Division"] = division
        record["Timestamp"] = self._next_timestamp()

    def _insert(self, division: int, path: str, record: Record) -> Record:
        spec = SPECS[path]
        key = record.get(spec.key)
        record[spec.key] = _guid(key, spec.key) if key else str(uuid.uuid4())
        if record[spec.key] in self.table(division, path):
            raise SandboxError(400, f"Duplicate key: {record[spec.key]}")
        self._touch(division, record, created=True)
        self.table(division, path)[record[spec.key]] = record
        self._inserted += 1
        self._index_line(division, path, record, self._inserted)
        return record

    def _seed_reference_data(self, division: int) -> None:
        main = {"ID": MAIN_WAREHOUSE, "Code": "1", "Description": "Hoofdmagazijn", "Main": 1}
        self._insert(division, "inventory/Warehouses", self._warehouse_defaults(main))
        for code, text in REVENUE_ACCOUNTS:
            account = {"Code": code, "Description": text, "Type": 110}
            self._insert(division, "financial/GLAccounts", self._gl_account_defaults(account))
        for code, text, pct in VAT_CODES:
            self._insert(division, "vat/VATCodes", {"Code": code, "Description": text, "Percentage": pct})
        for code, text, days in (("00", "Direct", 0), ("14", "14 dagen", 14), ("30", "30 dagen", 30)):
            self._insert(
                division, "cashflow/PaymentConditions", {"Code": code, "Description": text, "PaymentDays": days}
            )

    # -- reads ----------------------------------------------------------------------------------------

    def rows(self, division: int, path: str) -> list[Record]:
        return list(self.table(division, path).values())

    def get(self, division: int, path: str, key: str) -> Record:
        record = self.table(division, path).get(_guid(key, "key"))
        if record is None:
            raise SandboxError(404, "Record not found")
        return record

    def _index_line(self, division: int, path: str, record: Record, number: int) -> None:
        """Note a line under its parent (on insert, and again when a PUT gave it another parent)."""
        parent_key = SPECS[path].parent_key
        if parent_key is not None and record.get(parent_key) is not None:
            self._lines.setdefault((division, path, record[parent_key]), {})[record[SPECS[path].key]] = number

    def lines_of(self, division: int, spec: Spec, key: str) -> list[Record]:
        """The record's lines by LineNumber (ties in insertion order), from the index of lines by parent; a
        line removed or moved to another parent since it was noted is left out."""
        assert spec.line_path is not None
        line_spec = SPECS[spec.line_path]
        table = self.table(division, spec.line_path)
        noted = self._lines.get((division, spec.line_path, key), {})
        lines = [(table[k], number) for k, number in noted.items()
                 if k in table and table[k].get(line_spec.parent_key or "") == key]  # fmt: skip
        return [r for r, _ in sorted(lines, key=lambda pair: (pair[0].get("LineNumber", 0), pair[1]))]

    def sync_rows(self, division: int, view: str) -> list[Record]:
        if view == "sync/Deleted":
            return list(self.deleted.get(division, []))
        spec = SPECS[SYNC_VIEWS[view]]
        out = []
        for record in self.rows(division, spec.path):
            row = {k: v for k, v in record.items() if k != spec.lines}
            row["ID"] = record[spec.key]
            out.append(row)
        return out

    # -- writes ---------------------------------------------------------------------------------------

    def _check_fields(self, spec: Spec, body: Mapping[str, Any]) -> None:
        for name in body:
            if not name.startswith("__") and name not in spec.fields:
                raise SandboxError(400, f"Property '{name}' does not exist on type '{spec.type_name}'")

    def _check_required(self, spec: Spec, body: Mapping[str, Any], where: str = "") -> None:
        for name in spec.required:
            if body.get(name) in (None, ""):
                raise SandboxError(400, f"Mandatory field missing: {where}{name}")

    def _check_references(self, division: int, spec: Spec, body: Record) -> None:
        for name, target in spec.references.items():
            if body.get(name) not in (None, ""):
                body[name] = _guid(body[name], name)
                if body[name] not in self.table(division, target):
                    raise SandboxError(
                        400, f"Invalid reference: {name} ({SPECS[target].type_name.rsplit('.', 1)[-1]} not found)"
                    )
        for name, target in spec.code_references.items():
            if body.get(name) not in (None, ""):
                code = str(body[name]).strip().casefold()
                if not any(str(r.get("Code", "")).casefold() == code for r in self.rows(division, target)):
                    raise SandboxError(400, f"Invalid reference: {name} ({body[name]} not found)")
        for name in DATE_FIELDS & set(body):
            if body[name] is not None:
                body[name] = _date(body[name], name)

    def create(self, division: int, path: str, body: Mapping[str, Any]) -> Record:
        spec = SPECS[path]
        if not spec.writable or not spec.exposed:
            raise SandboxError(405, f"{path} does not support POST")
        self._check_fields(spec, body)
        record = {k: copy.deepcopy(v) for k, v in body.items() if not k.startswith("__")}
        lines = record.pop(spec.lines, None) if spec.lines else None
        self._check_required(spec, record)
        self._check_references(division, spec, record)
        prepared_lines = self._prepare_lines(division, spec, lines) if spec.lines else []
        prepare = {
            "crm/Accounts": self._prepare_account,
            "logistics/Items": self._prepare_item,
            "salesorder/SalesOrders": self._prepare_sales_order,
            "salesinvoice/SalesInvoices": self._prepare_sales_invoice,
            "salesentry/SalesEntries": self._prepare_sales_entry,
            "inventory/Warehouses": self._prepare_warehouse,
            "financial/GLAccounts": self._prepare_gl_account,
            "crm/Addresses": self._prepare_address,
            "logistics/ItemGroups": self._prepare_item_group,
        }.get(path)
        if path in CODED and prepare is None:
            self._unique_code(division, path, record)
        if prepare is not None:
            prepare(division, record, prepared_lines)
        self._insert(division, path, record)
        if spec.line_path is not None:
            for number, line in enumerate(prepared_lines, start=1):
                line[SPECS[spec.line_path].parent_key or ""] = record[spec.key]
                line.setdefault("LineNumber", number)
                self._insert(division, spec.line_path, line)
        self._changed(division, path, "Create", record[spec.key])
        return record

    def _prepare_lines(self, division: int, spec: Spec, lines: object) -> list[Record]:
        assert spec.line_path is not None
        line_spec = SPECS[spec.line_path]
        if not isinstance(lines, list) or not lines:
            raise SandboxError(400, f"Mandatory field missing: {spec.lines}")
        prepared = []
        for number, line in enumerate(lines, start=1):
            if not isinstance(line, dict):
                raise SandboxError(400, f"{spec.lines}[{number}] is not an object")
            self._check_fields(line_spec, line)
            record = {k: copy.deepcopy(v) for k, v in line.items() if not k.startswith("__")}
            self._check_required(line_spec, record, f"{spec.lines}[{number}].")
            self._check_references(division, line_spec, record)
            if "Item" in record:
                item = self.table(division, "logistics/Items")[record["Item"]]
                record["ItemCode"] = item["Code"]
                record.setdefault("Description", item.get("Description"))
                quantity = _number(record.setdefault("Quantity", 1), "Quantity")
                price = _number(record.get("NetPrice", record.get("UnitPrice", 0)), "UnitPrice")
                record["AmountFC"] = _cents(Decimal(repr(quantity)) * Decimal(repr(price)))
                if "VATPercentage" in line_spec.fields:
                    code = str(record.get("VATCode") or item.get("SalesVatCode") or "")
                    vat = next((v for v in self.rows(division, "vat/VATCodes") if v["Code"] == code), None)
                    record["VATCode"] = code or None
                    record["VATPercentage"] = vat["Percentage"] if vat is not None else 0.0
                    record["VATAmountFC"] = _cents(Decimal(repr(record["AmountFC"])) * Decimal(repr(vat["Percentage"]))
                                                   if vat is not None else Decimal(0))
            else:
                record["AmountFC"] = round(_number(record.get("AmountFC"), "AmountFC"), 2)
            record["AmountDC"] = record["AmountFC"]
            prepared.append(record)
        return prepared

    def _totals(self, record: Record, lines: list[Record]) -> None:
        record["AmountFC"] = round(sum(float(line.get("AmountFC") or 0) for line in lines), 2)
        record["AmountDC"] = record["AmountFC"]
        record.setdefault("Currency", "EUR")

    def _prepare_account(self, division: int, record: Record, lines: list[Record]) -> None:
        code = record.get("Code")
        code = str(code).strip() if code not in (None, "") else str(self._next_number(division, "account", 1))
        record["Code"] = code.rjust(18)
        if any(r.get("Code") == record["Code"] for r in self.rows(division, "crm/Accounts")):
            raise SandboxError(400, f"Code already exists: {code}")

    def _prepare_item(self, division: int, record: Record, lines: list[Record]) -> None:
        code = str(record["Code"])
        if any(str(r.get("Code", "")).casefold() == code.casefold() for r in self.rows(division, "logistics/Items")):
            raise SandboxError(400, f"Item code already exists: {code}")
        record.setdefault("IsSalesItem", True)
        record.setdefault("IsStockItem", True)
        record.setdefault("ID", str(uuid.uuid4()))
        self._item_details(division, record, record)

    def _item_details(self, division: int, record: Record, changes: Record) -> None:
        """Lengths checked; the group's code and description copied; a picture (base64) stored and served."""
        for name in ITEM_READ_ONLY:
            changes.pop(name, None)
        for name, limit in (("Description", 60), ("ExtraDescription", 255)):
            if len(str(changes.get(name) or "")) > limit:
                raise SandboxError(400, f"{name}: the value is longer than {limit} characters")
        if "StandardSalesPrice" in changes and changes["StandardSalesPrice"] is not None:
            changes["StandardSalesPrice"] = _number(changes["StandardSalesPrice"], "StandardSalesPrice")
        if "ItemGroup" in changes:
            group = self.table(division, "logistics/ItemGroups").get(str(changes["ItemGroup"] or ""))
            changes["ItemGroupCode"] = group["Code"] if group else None
            changes["ItemGroupDescription"] = group["Description"] if group else None
        picture = changes.pop("Picture", None)
        if picture is not None:
            file_name = changes.get("PictureName") or record.get("PictureName")
            if not file_name:
                raise SandboxError(400, "Mandatory field missing: PictureName (with Picture)")
            try:
                content = base64.b64decode(str(picture), validate=True)
            except ValueError:
                raise SandboxError(400, "Invalid value for Picture: not base64") from None
            key = str(record.get("ID") or "")
            self.pictures[(division, key)] = (str(file_name), content)
            changes["PictureUrl"] = f"{PICTURE_PATH}/{division}/{key}"
            changes["PictureThumbnailUrl"] = f"{PICTURE_PATH}/{division}/{key}?thumbnail=1"

    def _unique_code(self, division: int, path: str, record: Record, key: str | None = None) -> None:
        """`record["Code"]` stripped, and unique (case-insensitively) among the other records of `path`."""
        code = str(record["Code"]).strip()
        record["Code"] = code
        for other in self.rows(division, path):
            if other["ID"] != key and str(other.get("Code", "")).casefold() == code.casefold():
                raise SandboxError(400, f"{CODED[path]} code already exists: {code}")

    @staticmethod
    def _warehouse_defaults(record: Record) -> Record:
        """`Main` and `UseStorageLocations` are Edm.Byte in Exact: 0 or 1."""
        record["Main"] = 1 if record.get("Main") else 0
        record["UseStorageLocations"] = 1 if record.get("UseStorageLocations") else 0
        return record

    def _make_main(self, division: int, record: Record) -> None:
        """Exact has exactly one main warehouse per division: a new main one demotes the old."""
        for other in self.rows(division, "inventory/Warehouses"):
            if other is not record and other.get("Main"):
                other["Main"] = 0
                self._touch(division, other)

    def _prepare_warehouse(self, division: int, record: Record, lines: list[Record]) -> None:
        self._unique_code(division, "inventory/Warehouses", record)
        self._warehouse_defaults(record)
        if record["Main"]:
            self._make_main(division, record)

    @staticmethod
    def _gl_account_defaults(record: Record) -> Record:
        kind = record.setdefault("Type", 90)
        if isinstance(kind, bool) or not isinstance(kind, int) or kind < 0:
            raise SandboxError(400, f"Invalid value for Type: {kind}")
        record["TypeDescription"] = GL_TYPES.get(kind)
        record.setdefault("BalanceType", "W" if kind >= PROFIT_AND_LOSS else "B")
        record.setdefault("BalanceSide", "C" if kind in CREDIT_TYPES else "D")
        record.setdefault("IsBlocked", False)
        return record

    def _prepare_item_group(self, division: int, record: Record, lines: list[Record]) -> None:
        self._unique_code(division, "logistics/ItemGroups", record)

    def _prepare_gl_account(self, division: int, record: Record, lines: list[Record]) -> None:
        self._unique_code(division, "financial/GLAccounts", record)
        self._gl_account_defaults(record)

    def _prepare_address(self, division: int, record: Record, lines: list[Record]) -> None:
        kind = record["Type"]
        if isinstance(kind, bool) or kind not in ADDRESS_TYPES:
            raise SandboxError(400, f"Invalid value for Type: {kind}")
        record["AccountName"] = self.table(division, "crm/Accounts")[record["Account"]].get("Name")
        same = [a for a in self.rows(division, "crm/Addresses")
                if a["Account"] == record["Account"] and a["Type"] == kind]  # fmt: skip
        record["Main"] = bool(record.get("Main")) or not any(a.get("Main") for a in same)
        if record["Main"]:
            self._demote_addresses(division, record)

    def _demote_addresses(self, division: int, record: Record) -> None:
        """One main address per account and type: a new main one demotes the old."""
        for other in self.rows(division, "crm/Addresses"):
            same = other["Account"] == record["Account"] and other["Type"] == record["Type"]
            if same and other is not record and other.get("Main"):
                other["Main"] = False
                self._touch(division, other)

    def _check_delivery_address(self, division: int, record: Record, field: str, account: str) -> None:
        """Exact refuses a delivery address that is not one of the delivery account's addresses."""
        key = record.get(field)
        if key in (None, ""):
            return
        address = self.table(division, "crm/Addresses")[key]
        if address["Account"] != account:
            raise SandboxError(400, f"{field}: the address does not belong to the delivery account")

    def _prepare_sales_order(self, division: int, record: Record, lines: list[Record]) -> None:
        record["OrderNumber"] = self._next_number(division, "salesorder", 1)
        record.setdefault("OrderDate", self.now())
        record.setdefault("InvoiceTo", record["OrderedBy"])
        record.setdefault("DeliverTo", record["OrderedBy"])
        self._check_delivery_address(division, record, "DeliveryAddress", record["DeliverTo"])
        record["OrderedByName"] = self.table(division, "crm/Accounts")[record["OrderedBy"]].get("Name")
        if record.get("PaymentCondition"):
            condition = next((c for c in self.rows(division, "cashflow/PaymentConditions")
                              if c["Code"] == record["PaymentCondition"]), None)  # fmt: skip
            if condition is None:
                raise SandboxError(400, f"Invalid reference: PaymentCondition ({record['PaymentCondition']})")
            record["PaymentConditionDescription"] = condition["Description"]
        record.update(Status=12, DeliveryStatus=12, InvoiceStatus=12)
        self._totals(record, lines)
        for line in lines:
            self._reserve(division, line["Item"], _number(line["Quantity"], "Quantity"))

    def _prepare_sales_invoice(self, division: int, record: Record, lines: list[Record]) -> None:
        kind = record.setdefault("Type", 8020)
        if kind not in (8020, 8021, 8023, 8024):
            raise SandboxError(400, f"Invalid value for Type: {kind}")
        if kind in DIRECT_TYPES and not record.get("Warehouse"):
            raise SandboxError(400, "Mandatory field missing: Warehouse (direct sales invoice)")
        if kind not in DIRECT_TYPES and record.get("Warehouse"):
            raise SandboxError(400, "Warehouse can only be set for a direct sales invoice or credit note")
        record["InvoiceNumber"] = self._next_number(division, "salesinvoice", 24_000_001)
        record.setdefault("InvoiceDate", self.now())
        record.setdefault("InvoiceTo", record["OrderedBy"])
        deliver_to = record.get("DeliverTo") or record["OrderedBy"]
        self._check_delivery_address(division, record, "DeliverToAddress", deliver_to)
        record["Status"] = 20
        self._totals(record, lines)

    def _prepare_sales_entry(self, division: int, record: Record, lines: list[Record]) -> None:
        kind = record.setdefault("Type", 20)
        if kind not in (20, 21):
            raise SandboxError(400, f"Invalid value for Type: {kind}")
        record["EntryNumber"] = self._next_number(division, "salesentry", 24_500_001)
        record.setdefault("EntryDate", self.now())
        record["Status"] = 20
        self._totals(record, lines)
        # the header's AmountFC is the lines' amounts including their VAT (the lines' are without)
        vat = round(sum(_number(line.get("VATAmountFC") or 0, "VATAmountFC") for line in lines), 2)
        record["VATAmountFC"] = record["VATAmountDC"] = vat
        record["AmountFC"] = record["AmountDC"] = round(record["AmountFC"] + vat, 2)

    def _reserve(self, division: int, item_id: str, quantity: float) -> None:
        for position in self.rows(division, "inventory/StockPositions"):
            if position["ItemId"] == item_id:
                position["FreeStock"] = position["FreeStock"] - quantity
                position["PlanningOut"] = position["PlanningOut"] + quantity
                self._touch(division, position)
                return

    def update(self, division: int, path: str, key: str, body: Mapping[str, Any]) -> None:
        spec = SPECS[path]
        if not spec.writable or not spec.exposed:
            raise SandboxError(405, f"{path} does not support PUT")
        record = self.get(division, path, key)
        self._check_fields(spec, body)
        changes = {k: copy.deepcopy(v) for k, v in body.items() if not k.startswith("__")}
        if spec.lines and spec.lines in changes:
            raise SandboxError(400, f"{spec.lines} cannot be changed with PUT on {path}")
        for readonly in (spec.key, *COMMON_FIELDS):
            changes.pop(readonly, None)
        self._check_references(division, spec, changes)
        if path == "crm/Accounts" and "Code" in changes:
            changes["Code"] = str(changes["Code"]).strip().rjust(18)
        if path in CODED and "Code" in changes:
            self._unique_code(division, path, changes, record["ID"])
        if path == "logistics/Items":
            self._item_details(division, record, changes)
        if path == "financial/GLAccounts" and "Type" in changes:
            self._gl_account_defaults({**record, **changes})  # validates the type
            changes["TypeDescription"] = GL_TYPES.get(changes["Type"])
        if path == "inventory/Warehouses" and "Main" in changes:
            if record.get("Main") and not changes["Main"]:
                raise SandboxError(400, "There must be one main warehouse: make another warehouse the main one")
            changes["Main"] = 1 if changes["Main"] else 0
            if changes["Main"]:
                self._make_main(division, record)
        if path == "crm/Addresses":
            if "Type" in changes and changes["Type"] != record["Type"]:
                raise SandboxError(400, "The type of an address cannot be changed")
            if "Account" in changes and changes["Account"] != record["Account"]:
                raise SandboxError(400, "The account of an address cannot be changed")
            if changes.get("Main"):
                self._demote_addresses(division, record)
        moved = spec.parent_key is not None and spec.parent_key in changes
        if moved:  # a line given another parent keeps its place in the table: its insertion number
            number = self._lines.get((division, path, str(record.get(spec.parent_key or ""))), {}).get(record[spec.key])
        record.update(changes)
        self._check_required(spec, record)
        self._touch(division, record)
        if moved:
            self._index_line(division, path, record, self._inserted if number is None else number)
        self._changed(division, path, "Update", record[spec.key])

    def delete(self, division: int, path: str, key: str) -> None:
        spec = SPECS[path]
        if not spec.writable or not spec.exposed:
            raise SandboxError(405, f"{path} does not support DELETE")
        record = self.get(division, path, key)
        if path == "inventory/Warehouses" and record.get("Main"):
            raise SandboxError(400, "The main warehouse cannot be deleted: make another warehouse the main one first")
        if spec.line_path is not None:
            for line in self.lines_of(division, spec, record[spec.key]):
                self._remove(division, spec.line_path, line[SPECS[spec.line_path].key])
        self._remove(division, path, record[spec.key])
        if path == "logistics/Items":
            self.pictures.pop((division, record["ID"]), None)
            for position in self.rows(division, "inventory/StockPositions"):
                if position["ItemId"] == record["ID"]:
                    self._remove(division, "inventory/StockPositions", position["ID"])
        self._changed(division, path, "Delete", record[spec.key])

    def _remove(self, division: int, path: str, key: str) -> None:
        spec = SPECS[path]
        self.table(division, path).pop(key)
        if spec.deleted_type is not None:
            self.deleted[division].append({
                "Timestamp": self._next_timestamp(), "ID": str(uuid.uuid4()), "EntityKey": key,
                "EntityType": spec.deleted_type, "DeletedBy": None, "DeletedDate": self.now(), "Division": division,
            })  # fmt: skip

    # -- seeding --------------------------------------------------------------------------------------

    def seed_items(self, division: int, skus: Iterable[str], *, stock: float | None = 100.0) -> dict[str, str]:
        """Items by SKU (existing ones are kept), each with a stock position — or, with `stock` None, as
        items that are no stock items (services: shipping, fees), without one. Returns {sku: item ID}."""
        out: dict[str, str] = {}
        for sku in skus:
            existing = next((r for r in self.rows(division, "logistics/Items") if r["Code"] == sku), None)
            if existing is None:
                existing = self.create(
                    division,
                    "logistics/Items",
                    {"Code": sku, "Description": f"Item {sku}", "Unit": "pc", "SalesVatCode": "2",
                     "IsStockItem": stock is not None},
                )  # fmt: skip
                if stock is None:
                    out[sku] = existing["ID"]
                    continue
                self._insert(division, "inventory/StockPositions", {
                    "ItemId": existing["ID"], "ItemCode": sku, "CurrentStock": stock, "FreeStock": stock,
                    "PlanningIn": 0.0, "PlanningOut": 0.0, "ReservedStock": 0.0, "Warehouse": MAIN_WAREHOUSE,
                    "WarehouseCode": "1",
                })  # fmt: skip
            out[sku] = existing["ID"]
        return out

    def count_stock(self, division: int, sku: str, quantity: float) -> Record:
        """A stock count in Exact: the item's stock position (created when it has none) holds `quantity`
        now, its reservations kept. SandboxError 404 when no item has this code."""
        item = next((r for r in self.rows(division, "logistics/Items") if r["Code"] == sku), None)
        if item is None:
            raise SandboxError(404, f"no item with code {sku!r}")
        position = next((r for r in self.rows(division, "inventory/StockPositions") if r["ItemId"] == item["ID"]), None)
        if position is None:
            position = self._insert(division, "inventory/StockPositions", {
                "ItemId": item["ID"], "ItemCode": sku, "CurrentStock": 0.0, "FreeStock": 0.0, "PlanningIn": 0.0,
                "PlanningOut": 0.0, "ReservedStock": 0.0, "Warehouse": MAIN_WAREHOUSE, "WarehouseCode": "1",
            })  # fmt: skip
        position["CurrentStock"] = float(quantity)
        position["FreeStock"] = float(quantity) - position["PlanningOut"]
        self._touch(division, position)
        return position
