"""What WordPress and PHP do to the bytes WooCommerce sends, reproduced for the sandbox.

* `php_json_encode`: PHP `json_encode` with default flags, as `wp_json_encode` calls it — compact,
  `/` escaped as `\\/`, every non-ASCII character as `\\uXXXX` (surrogate pairs above U+FFFF), DEL left
  alone, floats in their shortest form without a `.0` (`12`, `12.356666666666667`, `1.0e-5`).
* `wp_specialchars_decode`: WordPress `wp_specialchars_decode($text, ENT_QUOTES)`; it decodes only
  `&amp; &lt; &gt; &quot; &#039;` and their numeric forms, so Python's `html.unescape` is not it.
  (handlers/woocommerce.py has the receiving side's copy; connectors import only gateway core.)
* `webhook_signature`: `base64(HMAC-SHA256(wp_specialchars_decode(secret), body))`.
* `wp_hash_delivery_id`: `wp_hash($webhook_id . time())` — HMAC-MD5 hex, one value per webhook per second.
* `wp_generate_password`: the 50-character default webhook secret (`wp_generate_password(50, true, true)`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from decimal import Decimal
from typing import Any

_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile('["\\\\/\x00-\x1f\u0080-\U0010ffff]')


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _JSON_ESCAPES:
        return _JSON_ESCAPES[char]
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _php_string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def _php_float(value: float) -> str:
    """PHP's `serialize_precision = -1` output: shortest round-trip digits, `php_gcvt` layout."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("PHP json_encode cannot encode NAN or INF")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)  # position of the decimal point after the first digit run
    if point < -3 or point > 17:
        mantissa = digits[0] + "." + (digits[1:] or "0")
        power = point - 1
        return f"{sign}{mantissa}e{'-' if power < 0 else '+'}{abs(power)}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if len(digits) <= point:
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_php_float(value))
    elif isinstance(value, str):
        out.append(_php_string(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(_php_string(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def php_json_encode(value: Any) -> bytes:
    """The bytes `trim(wp_json_encode($value))` produces (dicts are PHP objects, lists PHP arrays)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("ascii")


# wp_specialchars_decode($text, ENT_QUOTES), wp-includes/formatting.php: zero-padded numeric forms
# are first normalised, then one strtr() pass (longest key first, replaced text never rescanned).
_ZERO_PADDED = (
    (re.compile(r"&#0*39;"), "&#039;"),
    (re.compile(r"&#x0*27;", re.IGNORECASE), "&#x27;"),
    (re.compile(r"&#0*34;"), "&#034;"),
    (re.compile(r"&#x0*22;", re.IGNORECASE), "&#x22;"),
    (re.compile(r"&#0*60;"), "&#060;"),
    (re.compile(r"&#0*62;"), "&#062;"),
    (re.compile(r"&#0*38;"), "&#038;"),
    (re.compile(r"&#x0*26;", re.IGNORECASE), "&#x26;"),
)
_TRANSLATION = {
    "&#039;": "'",
    "&#x27;": "'",
    "&quot;": '"',
    "&#034;": '"',
    "&#x22;": '"',
    "&lt;": "<",
    "&#060;": "<",
    "&gt;": ">",
    "&#062;": ">",
    "&amp;": "&",
    "&#038;": "&",
    "&#x26;": "&",
}
_STRTR = re.compile("|".join(re.escape(key) for key in sorted(_TRANSLATION, key=len, reverse=True)))


def wp_specialchars_decode(text: str) -> str:
    """WordPress `wp_specialchars_decode($text, ENT_QUOTES)`: `&eacute;`, `&nbsp;`, `&#60` stay as they are."""
    if "&" not in text:
        return text
    for pattern, replacement in _ZERO_PADDED:
        text = pattern.sub(replacement, text)
    return _STRTR.sub(lambda match: _TRANSLATION[match.group(0)], text)


def webhook_signature(body: bytes, secret: str) -> str:
    """`X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the sent bytes, keyed with the decoded secret."""
    key = wp_specialchars_decode(secret).encode("utf-8")
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def wp_hash_delivery_id(salt: bytes, webhook_id: int, unix_seconds: int) -> str:
    """`X-WC-Webhook-Delivery-ID` = `wp_hash($id . strtotime('now'))`: repeats within one second."""
    return hmac.new(salt, f"{webhook_id}{unix_seconds}".encode(), hashlib.md5).hexdigest()


_PASSWORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#$%^&*()-_ []{}<>~`+=,.;:/?|"  # noqa: S105 - an alphabet


def wp_generate_password(length: int = 50) -> str:
    """`wp_generate_password($length, true, true)`: letters, digits, special and extra-special characters."""
    return "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(length))


__all__ = [
    "php_json_encode",
    "webhook_signature",
    "wp_generate_password",
    "wp_hash_delivery_id",
    "wp_specialchars_decode",
]
