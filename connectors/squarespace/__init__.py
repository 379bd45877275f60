"""Squarespace (Commerce API 1.0): its webhook notifications and `normalise` of its order JSON.

Notifications carry only the order id: reading the order needs the Commerce API client, which is
not built yet, so an order notification fails naming that (issue: Squarespace connector)."""

from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.contract import Canonical, Connector, Source
from connectors.squarespace.normalise import normalise_order
from gateway.config import Endpoint
from gateway.envelope import Envelope
from gateway.errors import PermanentError


def _check_endpoint(endpoint: Endpoint) -> list[str]:
    try:
        bytes.fromhex(endpoint.secret.get_secret_value())
    except ValueError:
        return ["secret: a Squarespace webhook secret is hex (as returned when the subscription is created)"]
    return []


class SquarespaceSource(Source):
    kind = "squarespace"
    title = "Squarespace"
    resources: ClassVar[dict[str, str]] = {"order": "orders"}

    def read(self, envelope: Envelope, flow: str) -> Any:
        payload = envelope.payload if isinstance(envelope.payload, dict) else {}
        data = payload.get("data")
        if isinstance(data, dict) and "lineItems" in data:
            return data  # a full order (as the API returns it)
        raise PermanentError(
            f"Squarespace order {envelope.resource_id}: the notification names the order only, and Koppel has no "
            "Squarespace API client yet to read it"
        )

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        if flow == "orders":
            return normalise_order(record)
        return super().normalise(flow, record, settings)


CONNECTOR = Connector(
    kind="squarespace",
    title="Squarespace",
    source=SquarespaceSource,
    handler="handlers.squarespace:handle",
    check_endpoint=_check_endpoint,
)

__all__ = ["CONNECTOR"]
