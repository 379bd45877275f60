"""Address helpers for mappings: street / house number split and ISO country codes.

Dutch and Belgian ERPs keep street, house number and addition in separate fields while webshops
hold one line. `split_street` handles the forms seen in practice:

    Keizersgracht 123-A           -> Keizersgracht | 123 | A
    Laan van Meerdervoort 1a      -> Laan van Meerdervoort | 1 | a
    2e Hugo de Grootstraat 7 hs   -> 2e Hugo de Grootstraat | 7 | hs
    Kerkstraat 12 II              -> Kerkstraat | 12 | II
    Rue de la Loi 16 bte 3        -> Rue de la Loi | 16 | bte 3
    Rue du 11 Novembre 5          -> Rue du 11 Novembre | 5 | (none)
    16, rue de la Loi             -> rue de la Loi | 16 | (none)
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import cache
from typing import NamedTuple

__all__ = ["Street", "country_code", "split_street"]

_ADDITION = r"(?:(?:bte|bus|boîte|boite|box|bis|ter|app|apt)\.?\s*)?[A-Za-z0-9]{0,5}(?:[-/ ][A-Za-z0-9]{1,5})?"
_TRAILING = re.compile(rf"^(?P<street>.*?\D)[\s,]+(?P<number>\d{{1,6}})\s*[-/]?\s*(?P<addition>{_ADDITION})\s*$")
_LEADING = re.compile(r"^(?P<number>\d{1,6})(?P<addition>[A-Za-z]{0,2})\s*,\s*(?P<street>\D.*)$")
_LEADING_FR = re.compile(
    r"^(?P<number>\d{1,6})(?P<addition>[A-Za-z]{0,2})\s+(?P<street>(?:rue|avenue|av\.|boulevard|bd|place|chaussée"
    r"|chemin|allée|impasse|route|quai|square|drève)\b.*)$",
    re.IGNORECASE,
)


class Street(NamedTuple):
    street: str
    number: str | None
    addition: str | None


def split_street(line: str) -> Street:
    """Split an address line into street, house number and addition (see module docstring)."""
    text = " ".join(line.split())
    if len(text) > 200:
        return Street(text, None, None)
    match = _TRAILING.match(text)
    if match and match.group("street").strip(" ,"):
        addition = match.group("addition").strip() or None
        return Street(match.group("street").strip(" ,"), match.group("number"), addition)
    match = _LEADING.match(text) or _LEADING_FR.match(text)
    if match:
        return Street(match.group("street").strip(), match.group("number"), match.group("addition") or None)
    return Street(text, None, None)


def _fold(name: str) -> str:
    """Case, accents, punctuation and spacing removed: "België" and "belgie" meet."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "", letters)


_EXTRA_NAMES = {
    "holland": "NL",
    "thenetherlands": "NL",
    "nederland": "NL",
    "paysbas": "NL",
    "belgique": "BE",
    "belgien": "BE",
    "deutschland": "DE",
    "uk": "GB",
    "greatbritain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "unitedstates": "US",
    "usa": "US",
    "america": "US",
    "el": "GR",  # the EU's VAT prefix for Greece
}


@cache
def _names() -> dict[str, str]:
    """folded name / alpha-3 / alpha-2 -> alpha-2, in English, Dutch, French and German."""
    import pycountry  # imported on first use: it loads the ISO 3166 database

    table: dict[str, str] = {}
    translations = [gettext.NullTranslations()]
    for language in ("nl", "fr", "de"):
        try:
            translations.append(gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[language]))
        except OSError:  # pragma: no cover - pycountry ships these catalogues
            continue
    for country in pycountry.countries:
        code = country.alpha_2
        table[_fold(country.alpha_3)] = code
        names = {country.name, getattr(country, "common_name", None), getattr(country, "official_name", None)}
        for name in (name for name in names if name is not None):
            for translation in translations:
                table.setdefault(_fold(translation.gettext(name)), code)
    for code in {c.alpha_2 for c in pycountry.countries}:
        table[_fold(code)] = code  # alpha-2 last: "BE" means Belgium even if a name folds the same
    table.update(_EXTRA_NAMES)
    return table


def country_code(value: str) -> str | None:
    """ISO 3166-1 alpha-2 for an alpha-2 or alpha-3 code or an English, Dutch, French or German
    country name; None when unknown."""
    folded = _fold(value)
    if not folded:
        return None
    return _names().get(folded)
