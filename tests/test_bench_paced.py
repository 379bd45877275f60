"""bench/ingest/paced.py's pure helpers: the pacing schedule, percentiles and the encoded request."""

import pytest

from bench.ingest.paced import encode, percentile, schedule, spread


def test_schedule_spaces_requests_evenly_at_the_rate() -> None:
    offsets = schedule(4, 1.5)
    assert offsets == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def test_schedule_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="rate and duration"):
        schedule(0, 10)


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([], 99) == 0.0


def test_percentile_outside_0_to_100_is_an_error() -> None:
    with pytest.raises(ValueError, match="not within"):
        percentile([1.0], 101)


def test_spread_reports_milliseconds() -> None:
    figures = spread([0.001 * n for n in range(1, 101)])
    assert figures["p50"] == 50.5
    assert figures["max"] == 100.0
    assert figures["p90"] < figures["p99"] < figures["p99.9"] < figures["max"]


def test_encoded_request_carries_the_signature_and_exact_length() -> None:
    raw = encode("127.0.0.1", "/webhooks/shop", "c2ln", b'{"id": 1}')
    head, body = raw.split(b"\r\n\r\n", 1)
    assert body == b'{"id": 1}'
    assert b"X-WC-Webhook-Signature: c2ln" in head
    assert b"Content-Length: 9" in head
    assert head.startswith(b"POST /webhooks/shop HTTP/1.1\r\n")


def test_ingest_refuses_a_negative_rate() -> None:
    from bench.ingest.run import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--rate", "-1"])
    assert parse_args(["--rate", "2000"]).rate == 2000
