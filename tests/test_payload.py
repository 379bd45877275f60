"""gateway/payload.py: target payloads as JSON with exact numbers. The per-call path (the stdlib's C encoder
with marked Decimals) must write the very text the exact encoder writes: fingerprints of payloads (the
customers' and products' caches) made before and after stay equal."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway import payload
from gateway.payload import dumps


def exact(value: object, default=None) -> str:
    return "".join(payload._encode(value, None, 0, default))


_leaves = (
    st.none() | st.booleans() | st.integers() | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["\x00koppel-decimal:1", '"\x00koppel-decimal:2.5', "\x00", "\\u0000", ":1.5,", "[2e5]"])
)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.sampled_from(["true", "null", "\x00koppel-decimal:3"]), inner,
                      max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(_values)
@example({"Amount": Decimal("12.40"), "Lines": [{"Qty": Decimal("1E+2"), "Note": "a:1.5,b"}], "n": 3})
@example(Decimal("-0.00"))
def test_the_fast_text_is_the_exact_encoders(value):
    assert dumps(value) == exact(value)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.lists(st.floats(), min_size=1, max_size=3).map(
    lambda floats: {"x": [Decimal(1), *floats]}))  # fmt: skip
def test_a_float_is_refused_as_before(value):
    with pytest.raises(TypeError, match="money must stay Decimal"):
        dumps(value)


def test_word_keys_nonfinite_decimals_and_defaults_go_as_the_exact_encoder_says():
    assert dumps({True: 1, None: 2, 3: Decimal("4.50")}) == '{"True":1,"None":2,"3":4.50}'
    with pytest.raises(ValueError, match="no such number"):
        dumps({"x": Decimal("NaN")})
    with pytest.raises(TypeError):
        dumps({"when": date(2026, 12, 4)})
    value = {"when": date(2026, 12, 4), "amount": Decimal("1.10")}
    assert dumps(value, default=date.isoformat) == '{"when":"2026-12-04","amount":1.10}' == exact(value, date.isoformat)
