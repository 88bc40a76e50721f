"""SMS facts: how many segments a text bills as, which country a number is in, what a segment costs.

* ``sms_parts`` counts segments the way carriers bill them (GSM 03.38 / 3GPP TS 23.038): GSM-7 when
  every character is in the basic set or the extension table, UCS-2 otherwise. National language
  shift tables (Turkish, Spanish, Portuguese, Indian) and provider "smart encoding" that swaps
  look-alike characters are not applied: a text is counted as it is given.
* ``country_of`` maps an E.164 number to its ISO 3166 alpha-2 country by calling code.
* ``SmsRates`` is a per-country, per-direction price per segment in USD.

MMS and WhatsApp are out of scope: they are billed per message or per conversation, not per segment.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..exceptions import ConfigError, InputError
from ..validation import Amount, Problem, first_problem, refuse

GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

# -- segments ---------------------------------------------------------------------------------

# GSM 03.38 basic character set. ESC (0x1B) is left out: it only introduces extension characters.
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs an escape septet plus its own, so 2 septets.
_GSM_EXTENSION: Final = frozenset("\f^{}\\[~]|€")

_GSM_SINGLE: Final = 160
_GSM_PART: Final = 153  # 7 septets of each part go to the concatenation header
_UCS2_SINGLE: Final = 70
_UCS2_PART: Final = 67

# ASCII characters that are plain GSM basic characters (1 septet each). Deleting them with
# bytes.translate leaves the rest (controls other than LF/CR, the backtick, DEL, extension characters):
# a C loop over the bytes, several times faster than a regex scan.
_ASCII_PLAIN: Final = bytes(sorted(ord(c) for c in _GSM_BASIC if c.isascii()))
_NOT_GSM: Final = re.compile("[^" + "".join(re.escape(c) for c in sorted(_GSM_BASIC | _GSM_EXTENSION)) + "]")
_EXTENSION_CHARS: Final = tuple(_GSM_EXTENSION)


def sms_parts(text: str) -> tuple[int, str]:
    """Returns (segments, encoding) for ``text``; encoding is "GSM-7" or "UCS-2".

    GSM-7: 1 segment up to 160 septets, else parts of 153, never splitting an escape pair.
    UCS-2: 1 segment up to 70 UTF-16 code units, else parts of 67, never splitting a surrogate pair.
    Empty text is 1 segment: carriers bill it.
    """
    # Fast path: most bot replies are plain ASCII; no per-character Python work, no cache traffic.
    if text.isascii() and not text.encode("ascii").translate(None, _ASCII_PLAIN):
        n = len(text)
        return (1 if n <= _GSM_SINGLE else -(-n // _GSM_PART)), GSM7
    return _sms_parts_general(text)


@lru_cache(maxsize=4096)  # replies are often templated, so the same non-ASCII texts recur
def _sms_parts_general(text: str) -> tuple[int, str]:
    if _NOT_GSM.search(text) is None:
        escapes = sum(text.count(c) for c in _EXTENSION_CHARS)
        septets = len(text) + escapes
        if septets <= _GSM_SINGLE:
            return 1, GSM7
        if not escapes:
            return -(-septets // _GSM_PART), GSM7
        return _pack([2 if c in _GSM_EXTENSION else 1 for c in text], _GSM_PART), GSM7
    units = len(text.encode("utf-16-le")) // 2
    if units <= _UCS2_SINGLE:
        return 1, UCS2
    if units == len(text):  # no surrogate pairs
        return -(-units // _UCS2_PART), UCS2
    return _pack([2 if ord(c) > 0xFFFF else 1 for c in text], _UCS2_PART), UCS2


try:
    from .._fastpath import sms_segments as _c_sms_segments
except ImportError:  # the C fast path is not built
    _c_sms_segments = None

# GSM-7 cost of each BMP code point for the C counter: 0 not GSM-7, 1 basic, 2 extension.
_GSM_WIDTHS: Final = bytearray(65536)
for _c in _GSM_BASIC:
    _GSM_WIDTHS[ord(_c)] = 1
for _c in _GSM_EXTENSION:
    _GSM_WIDTHS[ord(_c)] = 2
_GSM_WIDTHS_BYTES: Final = bytes(_GSM_WIDTHS)


def segments_column(texts: list[str | None]) -> list[float]:
    """Segments for many texts at once (the writer's batches), as ``sms_parts`` counts them."""
    if _c_sms_segments is not None:
        counted = _c_sms_segments(texts, _GSM_WIDTHS_BYTES)
        if counted is not None:
            return counted
    return [float(sms_parts(t or "")[0]) for t in texts]


def _pack(costs: list[int], size: int) -> int:
    """Parts needed when each item costs 1 or 2 slots and a 2-slot item may not straddle parts."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > size:
            parts += 1
            used = 0
        used += cost
    return parts


# Look-alikes for characters outside GSM-7 that replies commonly carry. One such character turns
# a whole SMS into UCS-2, which holds 70 characters a segment instead of 160.
_GSM_LOOKALIKES: Final = {
    "\u2014": "-", "\u2013": "-", "\u2212": "-", "\u00b7": "-", "\u2022": "-", "\u2026": "...",
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "`": "'", "\u00d7": "x",
    "\u2265": ">=", "\u2264": "<=", "\u2192": "->", "\u25b2": "^", "\u00a0": " ", "\t": " ",
}  # fmt: skip


def gsm7_text(text: str) -> str:
    """``text`` in GSM-7 characters only: look-alikes swapped in, accents dropped where the accented
    letter is not in the GSM set, anything else as "?". An SMS reply built with it stays GSM-7."""
    if _NOT_GSM.search(text) is None:
        return text
    out = []
    for ch in text:
        if ch in _GSM_BASIC or ch in _GSM_EXTENSION:
            out.append(ch)
        elif ch in _GSM_LOOKALIKES:
            out.append(_GSM_LOOKALIKES[ch])
        else:
            plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            ok = plain and all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in plain)
            out.append(plain if ok else "?")
    return "".join(out)


# -- countries ---------------------------------------------------------------------------------

# ITU-T E.164 country calling codes -> ISO 3166 alpha-2. Longest prefix wins, so shared codes are
# split by listing their longer prefixes (KZ within +7, GG/JE/IM within +44, the NANP below).
_CALLING_CODES: Final[dict[str, str]] = {
    "1": "US",
    "7": "RU", "76": "KZ", "77": "KZ",
    "20": "EG", "211": "SS", "212": "MA", "213": "DZ", "216": "TN", "218": "LY", "220": "GM",
    "221": "SN", "222": "MR", "223": "ML", "224": "GN", "225": "CI", "226": "BF", "227": "NE",
    "228": "TG", "229": "BJ", "230": "MU", "231": "LR", "232": "SL", "233": "GH", "234": "NG",
    "235": "TD", "236": "CF", "237": "CM", "238": "CV", "239": "ST", "240": "GQ", "241": "GA",
    "242": "CG", "243": "CD", "244": "AO", "245": "GW", "246": "IO", "248": "SC", "249": "SD",
    "250": "RW", "251": "ET", "252": "SO", "253": "DJ", "254": "KE", "255": "TZ", "256": "UG",
    "257": "BI", "258": "MZ", "260": "ZM", "261": "MG", "262": "RE", "262269": "YT", "262639": "YT",
    "263": "ZW", "264": "NA", "265": "MW", "266": "LS", "267": "BW", "268": "SZ", "269": "KM",
    "27": "ZA", "290": "SH", "291": "ER", "297": "AW", "298": "FO", "299": "GL",
    "30": "GR", "31": "NL", "32": "BE", "33": "FR", "34": "ES", "350": "GI", "351": "PT",
    "352": "LU", "353": "IE", "354": "IS", "355": "AL", "356": "MT", "357": "CY", "358": "FI",
    "35818": "AX", "359": "BG", "36": "HU", "370": "LT", "371": "LV", "372": "EE", "373": "MD",
    "374": "AM", "375": "BY", "376": "AD", "377": "MC", "378": "SM", "380": "UA", "381": "RS",
    "382": "ME", "383": "XK", "385": "HR", "386": "SI", "387": "BA", "389": "MK", "39": "IT",
    "40": "RO", "41": "CH", "420": "CZ", "421": "SK", "423": "LI", "43": "AT",
    "44": "GB", "441481": "GG", "441534": "JE", "441624": "IM",
    "45": "DK", "46": "SE", "47": "NO", "48": "PL", "49": "DE",
    "500": "FK", "501": "BZ", "502": "GT", "503": "SV", "504": "HN", "505": "NI", "506": "CR",
    "507": "PA", "508": "PM", "509": "HT", "51": "PE", "52": "MX", "53": "CU", "54": "AR",
    "55": "BR", "56": "CL", "57": "CO", "58": "VE", "590": "GP", "591": "BO", "592": "GY",
    "593": "EC", "594": "GF", "595": "PY", "596": "MQ", "597": "SR", "598": "UY",
    "599": "CW", "5993": "BQ", "5994": "BQ", "5997": "BQ",
    "60": "MY", "61": "AU", "62": "ID", "63": "PH", "64": "NZ", "65": "SG", "66": "TH",
    "670": "TL", "672": "NF", "673": "BN", "674": "NR", "675": "PG", "676": "TO", "677": "SB",
    "678": "VU", "679": "FJ", "680": "PW", "681": "WF", "682": "CK", "683": "NU", "685": "WS",
    "686": "KI", "687": "NC", "688": "TV", "689": "PF", "690": "TK", "691": "FM", "692": "MH",
    "81": "JP", "82": "KR", "84": "VN", "850": "KP", "852": "HK", "853": "MO", "855": "KH",
    "856": "LA", "86": "CN", "880": "BD", "886": "TW",
    "90": "TR", "91": "IN", "92": "PK", "93": "AF", "94": "LK", "95": "MM", "960": "MV",
    "961": "LB", "962": "JO", "963": "SY", "964": "IQ", "965": "KW", "966": "SA", "967": "YE",
    "968": "OM", "970": "PS", "971": "AE", "972": "IL", "973": "BH", "974": "QA", "975": "BT",
    "976": "MN", "977": "NP", "98": "IR", "992": "TJ", "993": "TM", "994": "AZ", "995": "GE",
    "996": "KG", "998": "UZ",
}  # fmt: skip

# Canadian area codes (geographic and the Canadian non-geographic 600 and 622).
_CANADIAN_NPAS: Final = (
    "204", "226", "236", "249", "250", "257", "263", "289", "306", "343", "354", "365", "367", "368",
    "382", "403", "416", "418", "428", "431", "437", "438", "450", "460", "468", "474", "506", "514",
    "519", "548", "579", "581", "584", "587", "600", "604", "613", "622", "639", "647", "672", "683",
    "705", "709", "742", "753", "778", "780", "782", "807", "819", "825", "867", "873", "879", "902",
    "905", "942",
)  # fmt: skip

# Other NANP members with their own ISO code: the Caribbean, plus the US Pacific territories.
_NANP_MEMBERS: Final[dict[str, str]] = {
    "242": "BS", "246": "BB", "264": "AI", "268": "AG", "284": "VG", "340": "VI", "345": "KY",
    "441": "BM", "473": "GD", "649": "TC", "658": "JM", "876": "JM", "664": "MS", "721": "SX",
    "758": "LC", "767": "DM", "784": "VC", "787": "PR", "939": "PR", "809": "DO", "829": "DO",
    "849": "DO", "868": "TT", "869": "KN", "670": "MP", "671": "GU", "684": "AS",
}  # fmt: skip

_PREFIXES: Final[dict[str, str]] = {
    **_CALLING_CODES,
    **{"1" + npa: "CA" for npa in _CANADIAN_NPAS},
    **{"1" + npa: country for npa, country in _NANP_MEMBERS.items()},
}
_LONGEST_PREFIX: Final = max(map(len, _PREFIXES))
_PHONE_SEPARATORS: Final = str.maketrans("", "", " \t-().\u00a0\u2010\u2011\u2012\u2013")
_E164_MIN_DIGITS: Final = 7  # Niue and Tokelau: 3-digit code + 4-digit number
_E164_MAX_DIGITS: Final = 15


def country_of(phone: str) -> str | None:
    """ISO 3166 alpha-2 country of an E.164 number, or None when ``phone`` is not a phone number.

    The leading "+" is optional ("00" is accepted in its place); spaces, dashes, dots and parentheses
    are ignored. +1 is "US" except Canadian area codes ("CA") and other NANP members.
    """
    if not isinstance(phone, str):
        return None
    return _country_of(phone)


@lru_cache(maxsize=8192)  # the same users text again and again
def _country_of(phone: str) -> str | None:
    digits = phone.translate(_PHONE_SEPARATORS)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if not (_E164_MIN_DIGITS <= len(digits) <= _E164_MAX_DIGITS and digits.isascii() and digits.isdigit()):
        return None
    for length in range(min(_LONGEST_PREFIX, len(digits)), 0, -1):
        country = _PREFIXES.get(digits[:length])
        if country is not None:
            return country
    return None


# -- prices -----------------------------------------------------------------------------------

_DIRECTIONS: Final = ("out", "in")
_DEFAULT_KEY: Final = "default"
_SHIPPED_FILE: Final = "sms_rates.toml"
_COUNTRY_KEY: Final = re.compile(r"[A-Z]{2}")


class SmsRatesError(ConfigError):
    """An SMS rate table that cannot be used; the message names the file, the entry and the value."""


class SmsRates:
    """Price per SMS segment in USD by country and direction ("out" to the user, "in" from them).

    A user table overrides the shipped one country by country and direction by direction: a direction
    it leaves out keeps the shipped price. Unknown countries use the ``default`` entry.
    """

    __slots__ = ("_in", "_out", "version")

    def __init__(self, out_rates: Mapping[str, float], in_rates: Mapping[str, float], version: str):
        if _DEFAULT_KEY not in out_rates or _DEFAULT_KEY not in in_rates:
            raise SmsRatesError(f"SmsRates: the '{_DEFAULT_KEY}' entry needs both 'out' and 'in' rates")
        self._out = dict(out_rates)
        self._in = dict(in_rates)
        self.version = version

    @classmethod
    def default(cls) -> SmsRates:
        """The shipped table (``sms_rates.toml`` beside this module)."""
        return _shipped()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SmsRates:
        """Shipped table overridden by the user TOML file at ``path`` (same format)."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise SmsRatesError(f"{source}: cannot read the SMS rate table: {exc.strerror or exc}") from exc
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SmsRatesError(f"{source}: not a valid TOML file: {exc}") from exc
        digest = hashlib.sha256(raw).hexdigest()[:8]
        return _shipped()._overridden(_parse(data, source), f"sms-rates custom:{digest}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SmsRates:
        """Shipped table overridden by ``mapping`` (the parsed form of a rates file)."""
        source = "SmsRates.from_mapping"
        if not isinstance(mapping, Mapping):
            raise SmsRatesError(f"{source}: expected a mapping, got {mapping!r}")
        parsed = _parse(mapping, source)
        digest = hashlib.sha256(json.dumps(parsed, sort_keys=True).encode()).hexdigest()[:8]
        return _shipped()._overridden(parsed, f"sms-rates custom:{digest}")

    def rate(self, country: str | None, direction: str) -> float:
        """USD per segment; an unknown or missing country gets the table's ``default`` entry."""
        if direction == "out":
            table = self._out
        elif direction == "in":
            table = self._in
        else:
            raise InputError(f"SmsRates.rate: direction must be 'out' or 'in', got {direction!r}")
        if country:
            price = table.get(country)
            if price is None and isinstance(country, str):
                price = table.get(country.upper())
            if price is not None:
                return price
        return table[_DEFAULT_KEY]

    @property
    def countries(self) -> tuple[str, ...]:
        """Countries with their own price, sorted."""
        return tuple(sorted((self._out.keys() | self._in.keys()) - {_DEFAULT_KEY}))

    def _overridden(self, parsed: dict[str, dict[str, float]], version: str) -> SmsRates:
        out_rates, in_rates = dict(self._out), dict(self._in)
        for key, rates in parsed.items():
            if "out" in rates:
                out_rates[key] = rates["out"]
            if "in" in rates:
                in_rates[key] = rates["in"]
        return SmsRates(out_rates, in_rates, version)

    def __repr__(self) -> str:
        return f"SmsRates(version={self.version!r}, countries={len(self.countries)})"


class _Rates(BaseModel):
    """One country's (or the default's) table: USD per segment for each direction it sets."""

    model_config = ConfigDict(extra="forbid")
    out: Amount | None = None
    in_: Amount | None = Field(default=None, alias="in")


def _country(key: Any) -> Any:
    if not isinstance(key, str) or not (key == _DEFAULT_KEY or _COUNTRY_KEY.fullmatch(key.upper())):
        raise refuse("expected 'default' or an ISO 3166 alpha-2 country code")
    return key if key == _DEFAULT_KEY else key.upper()


def _usd(value: Any) -> Any:
    if value != "USD":
        raise refuse("only 'USD' is supported")
    return value


def _version(value: Any) -> Any:
    if not isinstance(value, str):
        raise refuse("must be a string")
    return value


class _RatesFile(BaseModel):
    """A rates file: an optional version and currency, then a table per country and ``default``."""

    model_config = ConfigDict(extra="allow")
    version: Annotated[str, BeforeValidator(_version)] | None = None
    currency: Annotated[str, BeforeValidator(_usd)] | None = None
    __pydantic_extra__: dict[Annotated[str, BeforeValidator(_country)], _Rates] = Field(init=False)


def _parse(data: Mapping[str, Any], source: str) -> dict[str, dict[str, float]]:
    """Validates a rates mapping; errors name the source, the key and the value."""
    try:
        checked = _RatesFile.model_validate(dict(data))
    except ValidationError as exc:
        raise _rates_error(first_problem(exc), data, source) from None
    parsed: dict[str, dict[str, float]] = {}
    for key, rates in (checked.model_extra or {}).items():
        given = rates.model_dump(by_alias=True, exclude_none=True)
        parsed[key] = {d: float(given[d]) for d in _DIRECTIONS if d in given}  # key checked, upper-cased
    return parsed


def _rates_error(problem: Problem, data: Mapping[str, Any], source: str) -> SmsRatesError:
    where, value = problem.where, problem.value
    if where[:1] in (("version",), ("currency",)):
        return SmsRatesError(f"{source}: {where[0]} = {value!r}: {problem.reason}")
    key = where[0]
    if len(where) == 1 or where[1] == "[key]":  # the key itself, or what it names is not a table
        if problem.reason.startswith("expected 'default'"):
            return SmsRatesError(f"{source}: [{key}] = {data.get(key)!r}: {problem.reason}")
        return SmsRatesError(f"{source}: {key} = {value!r}: expected a table with 'out' and/or 'in' rates")
    direction = where[-1]
    if problem.kind == "unknown":
        return SmsRatesError(
            f"{source}: [{key}] {direction} = {value!r}: unknown direction (expected 'out' or 'in')"
        )
    if problem.kind == "greater_than_equal":
        return SmsRatesError(f"{source}: [{key}] {direction} = {value!r}: rate must not be negative")
    return SmsRatesError(f"{source}: [{key}] {direction} = {value!r}: rate must be a number")


@lru_cache(maxsize=1)
def _shipped() -> SmsRates:
    source = f"botmeter/process/{_SHIPPED_FILE}"
    shipped = resources.files(__package__ or "botmeter.process").joinpath(_SHIPPED_FILE)
    data = tomllib.loads(shipped.read_text("utf-8"))
    rates = _parse(data, source)
    out_rates = {k: v["out"] for k, v in rates.items() if "out" in v}
    in_rates = {k: v["in"] for k, v in rates.items() if "in" in v}
    return SmsRates(out_rates, in_rates, f"sms-rates {data.get('version', 'unknown')}")
