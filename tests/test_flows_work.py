"""`Work.record`: an event's record normalised once per raw record it has."""

from types import SimpleNamespace
from typing import Any

from workers.flows import Work


class CountingSource:
    """A source whose `expand` adds nothing (as WooCommerce's) or a field; counts its normalisations."""

    def __init__(self, *, expands: bool) -> None:
        self.expands = expands
        self.normalised = 0

    def read(self, envelope: Any, flow: str) -> dict[str, Any]:
        return {"id": 7}

    def expand(self, flow: str, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "lines": [1]} if self.expands else record

    def normalise(self, flow: str, record: dict[str, Any], settings: Any = None) -> dict[str, Any]:
        self.normalised += 1
        return {"normalised": dict(record)}


def work(source: CountingSource) -> Work:
    return Work(SimpleNamespace(settings={}), None, source, None, None)  # type: ignore[arg-type]


def test_a_record_expand_leaves_as_read_is_normalised_once() -> None:
    source = CountingSource(expands=False)
    w = work(source)
    assert w.record("orders") is w.record("orders", expanded=True)
    assert source.normalised == 1


def test_an_expanded_record_is_normalised_on_its_own() -> None:
    source = CountingSource(expands=True)
    w = work(source)
    plain, expanded = w.record("orders"), w.record("orders", expanded=True)
    assert plain == {"normalised": {"id": 7}} and expanded == {"normalised": {"id": 7, "lines": [1]}}
    assert w.record("orders", expanded=True) is expanded and source.normalised == 2
