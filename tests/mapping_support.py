"""Helpers shared by the model, normaliser and datamapper tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.config import Integration

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text(encoding="utf-8"))


def integration(**fields: Any) -> Integration:
    data = {
        "id": "shop-to-erp",
        "source": "shop",
        "target": "erp",
        "flows": ["orders", "customers", "products", "stock"],
    }
    data.update(fields)
    return Integration.model_validate(data)
