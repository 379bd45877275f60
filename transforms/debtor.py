"""Who the debtor is: the SPEC's company-versus-person rule and the default debtor option.

- A customer with a company name becomes a *company* debtor, with the person as its contact.
- Without one, a *person* debtor (named by the person, or by the e-mail address when nameless).
- With the integration setting `default_debtor = "<target customer code>"`, every order goes to
  that one debtor instead (customers themselves still sync as they are). `default_customer` says the
  same of a shop customer (a WooCommerce customer id or e-mail) when orders are booked into a shop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.model import Customer, Person

__all__ = ["Debtor", "decide_debtor"]


@dataclass(frozen=True)
class Debtor:
    kind: Literal["company", "person", "default"]
    name: str | None
    """Company name, person's full name, or None for the default debtor (the target knows it)."""
    code: str | None
    """The default debtor's code in the target, else the source's customer number, if any."""
    email: str | None
    contact: Person | None
    """The contact person of a company debtor; None for persons and the default debtor."""

    @property
    def is_company(self) -> bool:
        return self.kind == "company"

    def as_input(self) -> dict[str, Any]:
        """The `debtor` object mapping expressions read (null fields left out)."""
        data: dict[str, Any] = {"kind": self.kind, "is_company": self.kind == "company"}
        for key in ("name", "code", "email"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        if self.contact is not None:
            person = self.contact
            contact = {
                k: v
                for k, v in (
                    ("first_name", person.first_name),
                    ("last_name", person.last_name),
                    ("email", person.email),
                    ("phone", person.phone),
                )
                if v is not None
            }
            name = " ".join(p for p in (person.first_name, person.last_name) if p)
            if name:
                contact["name"] = name
            data["contact"] = contact
        return data


def decide_debtor(customer: Customer, settings: Mapping[str, Any] | None = None, *, flow: str = "orders") -> Debtor:
    """The debtor for `customer` under the integration's settings (see module docstring)."""
    default = (settings or {}).get("default_debtor") or (settings or {}).get("default_customer")
    if flow == "orders" and isinstance(default, str | int) and not isinstance(default, bool) and str(default).strip():
        return Debtor("default", None, str(default).strip(), None, None)
    person_name = " ".join(p for p in (customer.contact.first_name, customer.contact.last_name) if p) or None
    email = customer.email or customer.contact.email
    if customer.company_name:
        has_contact = bool(person_name or customer.contact.email)
        return Debtor(
            "company", customer.company_name, customer.number, email, customer.contact if has_contact else None
        )
    return Debtor("person", person_name or email, customer.number, email, None)
