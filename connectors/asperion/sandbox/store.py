"""The Asperion sandbox's records: articles, relations, sales orders, sales invoices and financial mutations of
its administrations (tenants), with ids, numbers and modification dates as Asperion gives them.

Shapes follow the connector's assumptions [U] (connectors/asperion/client.py, normalise.py): camelCase fields,
`modifiedDate` as wall-clock time in Europe/Amsterdam without an offset, milliseconds included.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

Record = dict[str, Any]
RESOURCES = ("articles", "relations", "salesorders", "salesinvoices", "financialmutations")
READ_ONLY = ("id", "currentStock", "modifiedDate", "createdDate")


class Problem(Exception):
    """An RFC 7807 problem: what the API answers for a request it refuses."""

    def __init__(self, status: int, title: str, detail: str = "", errors: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": f"https://httpstatuses.io/{self.status}", "title": self.title,
                               "status": self.status}  # fmt: skip
        if self.detail:
            out["detail"] = self.detail
        if self.errors:
            out["errors"] = self.errors
        return out


def invalid(errors: Mapping[str, list[str]]) -> Problem:
    return Problem(400, "One or more validation errors occurred.", errors=errors)


def _number(raw: Any, name: str) -> Decimal:
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise invalid({name: [f"The value '{str(raw)[:20]}' is not valid for {name}."]}) from None
    if not value.is_finite():
        raise invalid({name: [f"The value is not valid for {name}."]})
    return value


def _json_number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


class AsperionStore:
    """One sandbox's administrations; every record is a plain dict as the API answers it."""

    def __init__(self, clock: Callable[[], float], *, tenants: tuple[str, ...], zone: str = "Europe/Amsterdam") -> None:
        self.clock = clock
        self.zone = ZoneInfo(zone)
        self.offset = 0.0
        self.tenants = tenants
        self.records: dict[str, dict[str, dict[int, Record]]] = {t: {r: {} for r in RESOURCES} for t in tenants}
        self.next_id = 1000

    # -- time --------------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() + self.offset, UTC).astimezone(self.zone)

    def stamp(self) -> str:
        return self.now().replace(tzinfo=None).isoformat(timespec="milliseconds")

    def moment(self, stamp: str) -> datetime:
        parsed = datetime.fromisoformat(stamp)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=self.zone)

    def parse_since(self, raw: str) -> datetime:
        text = raw.strip()
        text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        try:
            return self.moment(text)
        except ValueError:
            raise invalid({"modifiedSince": [f"The value '{raw[:40]}' is not a valid date."]}) from None

    # -- records -----------------------------------------------------------------------------------------------

    def table(self, tenant: str, resource: str) -> dict[int, Record]:
        return self.records[tenant][resource]

    def find(self, tenant: str, resource: str, record_id: str) -> Record:
        found = self.table(tenant, resource).get(int(record_id)) if record_id.isdigit() else None
        if found is None:
            raise Problem(404, "Not Found", f"No {resource[:-1]} with id {record_id[:20]} exists.")
        return found

    def listing(self, tenant: str, resource: str, *, since: datetime | None = None, active: str = "Active",
                equal: Mapping[str, str] | None = None, by_modified: bool = False) -> list[Record]:  # fmt: skip
        rows = list(self.table(tenant, resource).values())
        if resource == "articles" and active != "All":
            rows = [r for r in rows if r["isActive"] == (active == "Active")]
        if since is not None:
            rows = [r for r in rows if self.moment(r["modifiedDate"]) >= since]
        for name, wanted in (equal or {}).items():
            rows = [r for r in rows if str(r.get(name) or "").casefold() == wanted.casefold()]
        if by_modified:
            return sorted(rows, key=lambda r: (self.moment(r["modifiedDate"]), r["id"]))
        return sorted(rows, key=lambda r: r["id"])

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def create(self, tenant: str, resource: str, fields: Mapping[str, Any]) -> Record:
        given = {k: copy.deepcopy(v) for k, v in fields.items() if k not in READ_ONLY}
        record = self._validator(resource)(tenant, given, None)
        record |= {"id": self._new_id(), "createdDate": self.stamp(), "modifiedDate": self.stamp()}
        self.table(tenant, resource)[record["id"]] = record
        return record

    def replace(self, tenant: str, resource: str, record_id: str, fields: Mapping[str, Any]) -> Record:
        current = self.find(tenant, resource, record_id)
        given = {k: copy.deepcopy(v) for k, v in fields.items() if k not in READ_ONLY}
        record = self._validator(resource)(tenant, given, current)
        kept = {k: current[k] for k in READ_ONLY if k in current}
        current.clear()
        current.update(record | kept | {"modifiedDate": self.stamp()})
        return current

    def _validator(self, resource: str) -> Callable[[str, Record, Record | None], Record]:
        found: Callable[[str, Record, Record | None], Record] = getattr(self, f"_valid_{resource}")
        return found

    def touch(self, record: Record, changes: Mapping[str, Any]) -> Record:
        """A change made in Asperion itself (a stock mutation, an edit in the UI): the modification date moves."""
        record.update(changes)
        record["modifiedDate"] = self.stamp()
        return record

    # -- validation per resource ------------------------------------------------------------------------------

    def _valid_articles(self, tenant: str, given: Record, current: Record | None) -> Record:
        errors: dict[str, list[str]] = {}
        code = str(given.get("code") or "").strip()
        if not code:
            errors["code"] = ["The code field is required."]
        elif len(code) > 30:
            errors["code"] = ["The field code must be a string with a maximum length of 30."]
        if not str(given.get("description") or "").strip():
            errors["description"] = ["The description field is required."]
        others = [a for a in self.table(tenant, "articles").values() if current is None or a["id"] != current["id"]]
        if code and any(a["code"].casefold() == code.casefold() for a in others):
            errors["code"] = [f"An article with code '{code}' already exists."]
        if errors:
            raise invalid(errors)
        price = _number(given.get("salesPrice", 0), "salesPrice")
        vat = _number(given.get("vatPercentage", 21), "vatPercentage")
        stock = current["currentStock"] if current is not None else 0
        return given | {"code": code, "salesPrice": _json_number(price), "vatPercentage": _json_number(vat),
                        "isActive": bool(given.get("isActive", True)), "currentStock": stock,
                        "isStockArticle": bool(given.get("isStockArticle", True))}  # fmt: skip

    def _valid_relations(self, tenant: str, given: Record, current: Record | None) -> Record:
        kind = str(given.get("relationType") or "Person")
        errors: dict[str, list[str]] = {}
        if kind not in ("Company", "Person"):
            errors["relationType"] = ["The relationType must be Company or Person."]
        if kind == "Company" and not str(given.get("companyName") or "").strip():
            errors["companyName"] = ["The companyName field is required for a company."]
        if kind == "Person" and not str(given.get("lastName") or given.get("companyName") or "").strip():
            errors["lastName"] = ["The lastName field is required for a person."]
        if given.get("address") is not None and not isinstance(given["address"], dict):
            errors["address"] = ["The address must be an object."]
        if errors:
            raise invalid(errors)
        number = current["code"] if current is not None else str(given.get("code") or 10000 + len(
            self.table(tenant, "relations")) + 1)  # fmt: skip
        return given | {"relationType": kind, "code": number, "isCustomer": bool(given.get("isCustomer", True))}

    def _lines(self, tenant: str, given: Record, *, items: bool) -> list[Record]:
        lines = given.get("lines")
        if not isinstance(lines, list) or not lines:
            raise invalid({"lines": ["At least one line is required."]})
        out = []
        for n, raw in enumerate(lines):
            if not isinstance(raw, dict):
                raise invalid({f"lines[{n}]": ["A line must be an object."]})
            line = dict(raw)
            if items:
                article = self._article_of(tenant, line, n)
                line |= {"articleId": article["id"], "articleCode": article["code"]}
                line.setdefault("description", article["description"])
                line.setdefault("vatPercentage", article["vatPercentage"])
                quantity = _number(line.get("quantity", 1), f"lines[{n}].quantity")
                price = _number(line.get("unitPrice", article["salesPrice"]), f"lines[{n}].unitPrice")
                percent = _number(line.get("discountPercentage", 0), f"lines[{n}].discountPercentage")
                total = _cents(quantity * price * (100 - percent) / 100)
                line |= {"quantity": _json_number(quantity), "unitPrice": _json_number(price),
                         "lineTotalExclVat": _json_number(total)}  # fmt: skip
            else:
                if not str(line.get("ledgerAccount") or "").strip():
                    raise invalid({f"lines[{n}].ledgerAccount": ["The ledgerAccount field is required."]})
                line["amount"] = _json_number(_number(line.get("amount"), f"lines[{n}].amount"))
            out.append(line)
        return out

    def _article_of(self, tenant: str, line: Mapping[str, Any], n: int) -> Record:
        articles = self.table(tenant, "articles")
        ident = line.get("articleId")
        if ident is not None:
            found = articles.get(int(ident)) if str(ident).isdigit() else None
        else:
            code = str(line.get("articleCode") or "").casefold()
            found = next((a for a in articles.values() if code and a["code"].casefold() == code), None)
        if found is None:
            raise invalid({f"lines[{n}].articleId": [f"Article {ident or line.get('articleCode')} does not exist."]})
        return found

    def _relation_check(self, tenant: str, given: Record, *, required: bool) -> None:
        ident = given.get("relationId")
        if ident is None and not required:
            return
        if ident is None or not str(ident).isdigit() or int(ident) not in self.table(tenant, "relations"):
            raise invalid({"relationId": [f"Relation {ident} does not exist."]})
        given["relationId"] = int(ident)

    def _document(self, tenant: str, given: Record, current: Record | None, prefix: str, number: str) -> Record:
        self._relation_check(tenant, given, required=True)
        lines = self._lines(tenant, given, items=True)
        excl = sum((Decimal(str(line["lineTotalExclVat"])) for line in lines), Decimal(0))
        vat = sum((_cents(Decimal(str(line["lineTotalExclVat"])) * Decimal(str(line["vatPercentage"])) / 100)
                   for line in lines), Decimal(0))  # fmt: skip
        count = len(self.table(tenant, "salesorders")) + len(self.table(tenant, "salesinvoices"))
        assigned = current[number] if current is not None else f"{prefix}{count + 1:05d}"
        totals = {"totalExclVat": _json_number(excl), "totalVat": _json_number(vat),
                  "totalInclVat": _json_number(excl + vat)}  # fmt: skip
        return given | totals | {number: assigned, "lines": lines, "status": str(given.get("status") or "Open"),
                                 "currency": given.get("currency") or "EUR"}  # fmt: skip

    def _valid_salesorders(self, tenant: str, given: Record, current: Record | None) -> Record:
        record = self._document(tenant, given, current, "VO", "orderNumber")
        return record | {"orderDate": str(given.get("orderDate") or self.now().date().isoformat())}

    def _valid_salesinvoices(self, tenant: str, given: Record, current: Record | None) -> Record:
        record = self._document(tenant, given, current, "F", "invoiceNumber")
        return record | {"invoiceDate": str(given.get("invoiceDate") or self.now().date().isoformat())}

    def _valid_financialmutations(self, tenant: str, given: Record, current: Record | None) -> Record:
        if not str(given.get("journalCode") or "").strip():
            raise invalid({"journalCode": ["The journalCode field is required."]})
        self._relation_check(tenant, given, required=False)
        lines = self._lines(tenant, given, items=False)
        return given | {"lines": lines, "date": str(given.get("date") or self.now().date().isoformat())}

    # -- seeding (control routes) -------------------------------------------------------------------------------

    def seed_articles(self, tenant: str, articles: list[Record]) -> list[Record]:
        done = []
        for fields in articles:
            stock = fields.get("currentStock", 0)
            record = self.create(tenant, "articles", fields)
            record["currentStock"] = _json_number(_number(stock, "currentStock"))
            done.append(record)
        return done

    def set_stock(self, tenant: str, code: str, quantity: Any) -> Record:
        found = next((a for a in self.table(tenant, "articles").values() if a["code"].casefold() == code.casefold()),
                     None)  # fmt: skip
        if found is None:
            raise Problem(404, "Not Found", f"No article with code {code[:30]} exists.")
        return self.touch(found, {"currentStock": _json_number(_number(quantity, "quantity"))})

    def advance(self, seconds: float) -> datetime:
        self.offset += seconds
        return self.now()
