"""Phone numbers: one canonical form (E.164) inside the operator, digits only on the wire to Evolution.

Drivers' numbers arrive the way people type them, mostly Brazilian national numbers such as
``(11) 98765-4321``. They are parsed with Google's libphonenumber rules (the `phonenumbers` package),
Brazil being the default region, and anything that is not a real, dialable number is refused here
rather than by Evolution, which pastes whatever it gets into a WhatsApp JID.

Digits without a ``+`` are read as a national number of the region, except that digits starting with
the region's country code are read as already carrying it when the rest is a valid national number:
for Brazil, 12 or 13 digits starting with 55 (``5511987654321``) are +55 followed by a 10- or 11-digit
national number. Brazilian national numbers are at most 11 digits, so this is never ambiguous: an
11-digit ``55987654321`` is a mobile in area code 55 (+5555987654321).

libphonenumber alone would also read a number out of ``Phone: 11987654321`` or full-width digits, which
no schema pattern can foresee. So a number must also be written the way `CRD_PATTERN` allows, the
pattern the WhatsAppInstance CRD puts on ``spec.phoneNumber``: whatever this module accepts, the API
server has accepted too, and the schema alone refuses what has no chance here (docs/phone-numbers.md).
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

# E.164: a '+', a country code that never starts with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9]\d{6,14}")

# spec.phoneNumber's pattern in crds/whatsappinstances.yaml (a test keeps the two equal), in the
# syntax Go's regexp and Python's share: digits with spaces, dots, hyphens and parentheses between
# them, '+' only in front; after a '+', 7 to 15 digits (E.164), the first not 0; without one, 8 to 19
# (a national number with its trunk prefix and carrier code, or 00xx and an international number).
CRD_PATTERN = r"^[ .()-]*(\+[ .()-]*[1-9]([ .()-]*[0-9]){6,14}|[0-9]([ .()-]*[0-9]){7,18})[ .()-]*$"
_WRITTEN = re.compile(CRD_PATTERN)

_PARSE_PROBLEMS: dict[int, str] = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_LENGTH_PROBLEMS: dict[int, str] = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "missing the area code",
}


class InvalidPhoneNumber(ValueError):
    """A phone number that cannot be normalised; the message says what is wrong with the input."""

    def __init__(self, raw: str, problem: str) -> None:
        super().__init__(f"invalid phone number {raw!r}: {problem}")
        self.raw = raw
        self.problem = problem


def normalize_phone(raw: str, region: str = "BR") -> str:
    """Return `raw` as E.164 (``+5511987654321``), reading numbers without ``+`` as national to `region`."""
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(raw, _PARSE_PROBLEMS.get(exc.error_type, "cannot be parsed")) from None
    if number.extension:
        raise InvalidPhoneNumber(raw, "has an extension, which WhatsApp numbers cannot have")
    length = phonenumbers.is_possible_number_with_reason(number)
    if length != ValidationResult.IS_POSSIBLE:
        raise InvalidPhoneNumber(raw, _LENGTH_PROBLEMS.get(length, "not a possible number"))
    if not phonenumbers.is_valid_number(number):
        country = f"+{number.country_code} ({phonenumbers.region_code_for_country_code(number.country_code)})"
        raise InvalidPhoneNumber(raw, f"not a valid {country} number: check the area code and the digits")
    if not _WRITTEN.fullmatch(raw):
        raise InvalidPhoneNumber(raw, "may hold only digits, spaces, '.', '-', '(' and ')', and '+' only in front")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def evolution_number(e164: str) -> str:
    """Digits only, country code first: what Evolution's ``?number=`` and sendText expect.

    Only E.164 input is accepted, so that a national number can never reach Evolution as if it
    were international (it would silently pair or message the wrong country).
    """
    if not _E164.fullmatch(e164):
        raise InvalidPhoneNumber(e164, "not in E.164 form (+ and country code); normalise it first")
    return e164[1:]
