"""The sample config the tests and bench/ingest share: one endpoint of every kind, fixed test secrets.

No pytest here, so the benchmark can import it too.
"""

from __future__ import annotations

from gateway.config import Config, parse_config

SECRETS = {
    "WC_SECRET": "wc&amp;secret-\u00e9",
    "SQ_SECRET": "A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90",
    "BC_STATE": "bc-client-state-3f9a",
    "EXACT_SECRET": "exact-webhook-secret",
    "ADMIN_TOKEN": "admin-token-7c1e",
}


def make_config(**gateway: object) -> Config:
    data = {
        "gateway": {"max_body_bytes": 64 * 1024, **gateway},
        "endpoints": [
            {"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"},
            {"id": "sq", "kind": "squarespace", "secret": "env:SQ_SECRET"},
            {"id": "bc", "kind": "businesscentral", "secret": "env:BC_STATE"},
            {"id": "exact-hooks", "kind": "exactonline", "secret": "env:EXACT_SECRET"},
        ],
        "systems": [{"id": "exact", "kind": "exactonline"}],
        "integrations": [{"id": "shop-to-exact", "source": "shop", "target": "exact", "flows": ["orders"]}],
    }
    return parse_config(data, environ=SECRETS)
