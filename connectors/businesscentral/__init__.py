"""Microsoft Dynamics 365 Business Central (API v2.0): its webhook notifications, and `normalise` of its
salesOrder, customer and item JSON into the canonical model.

Notifications are thin (a resource URL and a change type): reading the record needs the API client,
which is not built yet, so such an event fails naming that (issue: Business Central connector)."""

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from connectors.businesscentral.normalise import (
    normalise_customer,
    normalise_item,
    normalise_item_stock,
    normalise_sales_order,
)
from connectors.contract import Canonical, Connector, Source
from gateway.envelope import Envelope
from gateway.errors import PermanentError


class BusinessCentralSource(Source):
    kind = "businesscentral"
    title = "Business Central"
    resources: ClassVar[dict[str, str]] = {"salesOrders": "orders", "customers": "customers", "items": "products"}

    def read(self, envelope: Envelope, flow: str) -> Any:
        raise PermanentError(
            f"Business Central {envelope.resource} {envelope.resource_id or '(collection)'}: notifications name the "
            "record only, and Koppel has no Business Central API client yet to read it"
        )

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        readers: dict[str, Callable[[Any], Canonical]] = {
            "orders": normalise_sales_order,
            "customers": normalise_customer,
            "products": normalise_item,
            "stock": normalise_item_stock,
        }
        if flow in readers:
            return readers[flow](record)
        return super().normalise(flow, record, settings)


CONNECTOR = Connector(
    kind="businesscentral",
    title="Business Central",
    source=BusinessCentralSource,
    handler="handlers.businesscentral:handle",
)

__all__ = ["CONNECTOR"]
