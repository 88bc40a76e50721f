"""SMS segments, countries of phone numbers and per-segment rates."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from botmeter.process.sms import SmsRates, country_of, sms_parts

# -- an independent reference for segment counts -----------------------------------------------
# Written from the GSM 03.38 table layout (rows of the 128-position default alphabet) rather than
# from the module's sets, and split the slow way: build the list of septets/code units, then cut
# parts, moving a dangling escape or high surrogate to the next part.

_GSM_TABLE_ROWS = (
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
)
_GSM_POSITIONS = {ch: i for i, ch in enumerate("".join(_GSM_TABLE_ROWS)) if ch != "\x1b"}
_GSM_ESCAPED = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
                "|": 0x40, "€": 0x65}  # fmt: skip
_ESC = 0x1B


def _cut(units: list[int], single: int, part: int, dangling) -> int:
    if len(units) <= single:
        return 1
    parts = 0
    rest = units
    while rest:
        chunk = rest[:part]
        if len(rest) > part and dangling(chunk[-1]):
            chunk = chunk[:-1]
        rest = rest[len(chunk) :]
        parts += 1
    return parts


def reference_parts(text: str) -> tuple[int, str]:
    if all(ch in _GSM_POSITIONS or ch in _GSM_ESCAPED for ch in text):
        septets: list[int] = []
        for ch in text:
            septets.extend([_ESC, _GSM_ESCAPED[ch]] if ch in _GSM_ESCAPED else [_GSM_POSITIONS[ch]])
        # The escape is the first of a pair; a part may not end on it.
        pair_starts = {i for i in range(len(septets)) if septets[i] == _ESC}
        indexed = list(range(len(septets)))
        return _cut(indexed, 160, 153, lambda i: i in pair_starts), "GSM-7"
    raw = text.encode("utf-16-be")
    units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return _cut(units, 70, 67, lambda u: 0xD800 <= u <= 0xDBFF), "UCS-2"


# -- segments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (1, "GSM-7")),
        ("a", (1, "GSM-7")),
        ("a" * 160, (1, "GSM-7")),
        ("a" * 161, (2, "GSM-7")),
        ("a" * 306, (2, "GSM-7")),
        ("a" * 307, (3, "GSM-7")),
        ("a" * 459, (3, "GSM-7")),
        ("a" * 460, (4, "GSM-7")),
        # extension characters cost 2 septets
        ("a" * 158 + "{", (1, "GSM-7")),
        ("a" * 159 + "{", (2, "GSM-7")),
        ("€" * 80, (1, "GSM-7")),
        ("€" * 81, (2, "GSM-7")),
        ("a" * 159 + "\f", (2, "GSM-7")),
        # 306 septets, but the escape pair would straddle parts 1 and 2: it moves, so 3 parts
        ("a" * 152 + "{" + "a" * 152, (3, "GSM-7")),
        ("a" * 151 + "{" + "a" * 153, (2, "GSM-7")),
        # non-ASCII GSM characters stay GSM-7
        ("Ça coute 5€ @ £1", (1, "GSM-7")),
        ("ΩΔΦ äöü ñ à é", (1, "GSM-7")),
        # outside GSM-7: UCS-2
        ("ж" * 70, (1, "UCS-2")),
        ("ж" * 71, (2, "UCS-2")),
        ("ж" * 134, (2, "UCS-2")),
        ("ж" * 135, (3, "UCS-2")),
        ("a" * 69 + "ç", (1, "UCS-2")),  # small c cedilla is not in the basic set
        ("`", (1, "UCS-2")),  # backtick is not GSM
        ("ω", (1, "UCS-2")),  # lower-case Greek is not GSM
        # an emoji is 2 UTF-16 code units
        ("😀" * 35, (1, "UCS-2")),
        ("😀" * 36, (2, "UCS-2")),
        ("ж" * 69 + "😀", (2, "UCS-2")),
        # 134 units, but the surrogate pair would straddle parts 1 and 2: it moves, so 3 parts
        ("ж" * 66 + "😀" + "ж" * 66, (3, "UCS-2")),
        ("ж" * 65 + "😀" + "ж" * 67, (2, "UCS-2")),
    ],
)
def test_sms_parts_at_boundaries(text: str, expected: tuple[int, str]) -> None:
    assert sms_parts(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a" * 152 + "{" + "a" * 152,
        "a" * 160,
        "a" * 159 + "€",
        "ж" * 66 + "😀" + "ж" * 66,
        "😀" * 36,
        "[" * 153,
        "",
    ],
)
def test_boundary_counts_match_reference(text: str) -> None:
    assert sms_parts(text) == reference_parts(text)


def test_random_texts_match_reference() -> None:
    rng = random.Random(20261101)
    alphabets = (
        "abcXYZ 019.,!?\n",  # plain ASCII GSM
        "abc {}[]~^|\\€\f",  # extension characters
        "abc éèÄÖ ΩΔ £¥§",  # non-ASCII GSM basic
        "abc жд é",  # forces UCS-2
        "ab 😀🎉 ж",  # surrogate pairs
    )
    for _ in range(600):
        alphabet = rng.choice(alphabets)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 420)))
        assert sms_parts(text) == reference_parts(text), text


def test_repeated_text_gives_the_same_answer() -> None:
    text = "Grüße aus Köln 😀 " * 7
    assert sms_parts(text) == sms_parts(text) == reference_parts(text)


# -- countries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "country"),
    [
        ("+1 (416) 555-0123", "CA"),
        ("14165550123", "CA"),
        ("+1 604 555 0123", "CA"),
        ("+1 212 555 0123", "US"),
        ("+1-415-555-0123", "US"),
        ("+1 809 555 0123", "DO"),
        ("+1 876 555 0123", "JM"),
        ("+1 787 555 0123", "PR"),
        ("+44 7911 123456", "GB"),
        ("+44 1624 123456", "IM"),
        ("0044 20 7946 0958", "GB"),
        ("+49 30 1234567", "DE"),
        ("+33 6 12 34 56 78", "FR"),
        ("+353 85 123 4567", "IE"),
        ("+91 98765 43210", "IN"),
        ("+234 803 123 4567", "NG"),
        ("+254 712 345678", "KE"),
        ("+7 916 123 4567", "RU"),
        ("+7 701 123 4567", "KZ"),
        ("+61 412 345 678", "AU"),
        ("+55 11 91234 5678", "BR"),
        ("+52 55 1234 5678", "MX"),
        ("+63 917 123 4567", "PH"),
        ("+81 90 1234 5678", "JP"),
        ("+27 82 123 4567", "ZA"),
        ("+65 8123 4567", "SG"),
    ],
)
def test_country_of(phone: str, country: str) -> None:
    assert country_of(phone) == country


@pytest.mark.parametrize(
    "value",
    [
        "U123",
        "slack:abc",
        "",
        "+",
        "12345",
        "+1234567890123456",
        "+44 7911 12345a",
        "bob@example.com",
        None,
        4155550123,
    ],
)
def test_country_of_non_numbers(value: object) -> None:
    assert country_of(value) is None  # type: ignore[arg-type]


# -- rates ------------------------------------------------------------------------------------


def test_shipped_rates() -> None:
    rates = SmsRates.default()
    assert rates.version == "sms-rates 2026-11"
    assert rates.rate("US", "out") == pytest.approx(0.0083)
    assert rates.rate("gb", "out") == rates.rate("GB", "out")
    assert rates.rate(None, "out") == rates.rate("ZZ", "out") == pytest.approx(0.05)
    assert rates.rate(None, "in") == pytest.approx(0.01)
    wanted = {"US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "IE", "AU", "NZ", "IN", "BR", "MX", "ZA", "NG",
              "KE", "PH", "SG", "JP"}  # fmt: skip
    assert wanted <= set(rates.countries)
    for country in rates.countries:
        for direction in ("out", "in"):
            assert 0 <= rates.rate(country, direction) < 1


def test_rate_rejects_unknown_direction() -> None:
    with pytest.raises(ValueError, match="sideways"):
        SmsRates.default().rate("US", "sideways")


def test_override_file(tmp_path: Path) -> None:
    path = tmp_path / "rates.toml"
    path.write_text(
        'version = "acme-2026"\n[GB]\nout = 0.04\n[default]\nout = 0.07\nin = 0.02\n[ZW]\nin = 0.5\n'
    )
    shipped = SmsRates.default()
    rates = SmsRates.load(path)
    assert rates.rate("GB", "out") == pytest.approx(0.04)
    assert rates.rate("GB", "in") == shipped.rate("GB", "in")  # the direction left out keeps its price
    assert rates.rate("US", "out") == shipped.rate("US", "out")  # other countries untouched
    assert rates.rate("XX", "out") == pytest.approx(0.07)
    assert rates.rate("ZW", "in") == pytest.approx(0.5)
    assert rates.rate("ZW", "out") == pytest.approx(0.07)  # falls back to the overridden default
    assert rates.version == "sms-rates custom:" + hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    assert shipped.rate("GB", "out") != pytest.approx(0.04)  # the shipped table is not modified


def test_from_mapping() -> None:
    rates = SmsRates.from_mapping({"US": {"out": 0.01}, "default": {"in": 0}})
    assert rates.rate("US", "out") == pytest.approx(0.01)
    assert rates.rate("ZZ", "in") == 0
    assert rates.version.startswith("sms-rates custom:")
    assert rates.version == SmsRates.from_mapping({"US": {"out": 0.01}, "default": {"in": 0}}).version
    assert rates.version != SmsRates.from_mapping({"US": {"out": 0.02}}).version


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("[GB]\nout = -0.01\n", ("[GB]", "out", "-0.01", "negative")),
        ('[GB]\nout = "cheap"\n', ("[GB]", "out", "'cheap'")),
        ("[GB]\nout = true\n", ("[GB]", "out", "True")),
        ("[GB]\nboth = 0.01\n", ("[GB]", "both", "0.01", "direction")),
        ("[USA]\nout = 0.01\n", ("USA", "0.01")),
        ("GB = 0.01\n", ("GB", "0.01")),
        ('currency = "EUR"\n', ("currency", "'EUR'")),
        ("[GB\nout = 0.01\n", ("TOML",)),
    ],
)
def test_bad_rate_files_name_file_key_and_value(
    tmp_path: Path, content: str, fragments: tuple[str, ...]
) -> None:
    path = tmp_path / "bad_rates.toml"
    path.write_text(content)
    with pytest.raises(ValueError) as caught:
        SmsRates.load(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_bad_mapping_names_key_and_value() -> None:
    with pytest.raises(ValueError, match=r"\[FR\] in = -1"):
        SmsRates.from_mapping({"FR": {"in": -1}})
