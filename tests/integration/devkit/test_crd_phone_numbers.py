"""spec.phoneNumber: the CRD accepts every number the operator normalises, and refuses what it cannot.

The rule (docs/phone-numbers.md): the CRD's pattern is `core.phone.CRD_PATTERN`, which `normalize_phone`
also requires, so whatever the operator accepts the API server has accepted; the schema refuses what
cannot be a number, and a number that passes it but is not a valid one is the operator's to report.
Checked in-process with the emulator's `Schema` (hypothesis, many forms), and over HTTP (the API
server's 422).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.core.phone import CRD_PATTERN, InvalidPhoneNumber, normalize_phone
from whatsapp_operator.devkit.crds import load_crds
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster, KubeApiError, Schema

(CRD,) = (crd for crd in load_crds() if crd["spec"]["names"]["kind"] == "WhatsAppInstance")
(SERVED,) = CRD["spec"]["versions"]
SCHEMA = Schema(SERVED["schema"]["openAPIV3Schema"])
PHONE_SCHEMA = SERVED["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["phoneNumber"]

# The issue's forms and their neighbours: all normalise to E.164, so all must be accepted.
ACCEPTED = {
    "5511987654321": "+5511987654321",
    "+55 11 98765-4321": "+5511987654321",
    "011 98765-4321": "+5511987654321",
    "(11) 98765-4321": "+5511987654321",
    "+5511987654321": "+5511987654321",
    "11987654321": "+5511987654321",
    "11 98765-4321": "+5511987654321",
    "(11)98765-4321": "+5511987654321",
    "+55 (11) 98765-4321": "+5511987654321",
    "(+55) 11 98765-4321": "+5511987654321",
    "11.98765.4321": "+5511987654321",
    "0 15 11 98765-4321": "+5511987654321",
    "0014 55 11 98765 4321": "+5511987654321",
    "(11) 3456-7890": "+551134567890",
    "551134567890": "+551134567890",
    "+1 415 555 2671": "+14155552671",
    "+44 20 7946 0958": "+442079460958",
}
# What cannot be a number: refused by the API server already.
REFUSED = [
    "",
    "abc",
    "call me",
    "123",
    "1234567",  # 7 digits without '+'
    "+123456",  # 6 digits after '+'
    "+0123456789",  # a country code never starts with 0
    "+5511",
    "+55119876543210000",  # 17 digits after '+'
    "11987654321987654321",  # 20 digits
    "Phone: 11987654321",
    "tel:+55-11-98765-4321",
    "11 98765-4321 ext. 12",
    "55+11987654321",
    "11/98765-4321",
    "\uff11\uff11\uff19\uff18\uff17\uff16\uff15\uff14\uff13\uff12\uff11",  # full-width digits
]
# Written as a number may be, but not a valid one: the schema lets them through, the operator says
# why (condition PhoneNumberValid, tests/integration/engine/test_operator_phone.py).
OPERATORS_TO_REFUSE = ["(11) 98765-43210", "(1) 98765-4321", "(11) 8765-4321", "14155552671", "+999 1234 5678"]


def instance(phone: str, name: str = "maria") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WhatsAppInstance",
        "metadata": {"name": name},
        "spec": {"driverId": "driver-1", "phoneNumber": phone},
    }


def schema_accepts(phone: str) -> bool:
    causes = SCHEMA.validate(copy.deepcopy(instance(phone)))
    assert {c.field for c in causes} <= {"spec.phoneNumber"}
    return not causes


def normalized(phone: str) -> str | None:
    try:
        return normalize_phone(phone)
    except InvalidPhoneNumber:
        return None


def test_the_crds_pattern_is_the_operators() -> None:
    assert PHONE_SCHEMA["pattern"] == CRD_PATTERN
    assert "PhoneNumberValid=False" in PHONE_SCHEMA["description"]


@pytest.mark.parametrize(("phone", "e164"), sorted(ACCEPTED.items()))
def test_the_issues_forms_are_accepted_and_normalised(phone: str, e164: str) -> None:
    assert schema_accepts(phone)
    assert normalize_phone(phone) == e164


@pytest.mark.parametrize("phone", REFUSED)
def test_what_cannot_be_a_number_is_refused_by_both(phone: str) -> None:
    assert not schema_accepts(phone)
    assert normalized(phone) is None


@pytest.mark.parametrize("phone", OPERATORS_TO_REFUSE)
def test_a_well_written_invalid_number_passes_the_schema_for_the_operator_to_report(phone: str) -> None:
    assert schema_accepts(phone)
    assert normalized(phone) is None


# Brazilian numbers as people type them: area code, a mobile (9 and 8 digits) or a landline (2-5 and
# 7 digits), optionally with the country code, the trunk prefix and a carrier, the international
# prefix, with any of the separators people use.
AREA_CODES = [a for a in range(11, 100) if phonenumbers.is_valid_number(phonenumbers.parse(f"{a}987654321", "BR"))]
CARRIERS = ["12", "14", "15", "21", "23", "31", "41", "43"]


@st.composite
def brazilian_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A number as typed, and its E.164."""
    area = str(draw(st.sampled_from(AREA_CODES)))
    first = draw(st.sampled_from(["9", "2", "3", "4", "5"]))
    rest = draw(st.text("0123456789", min_size=8 if first == "9" else 7, max_size=8 if first == "9" else 7))
    subscriber = first + rest
    carrier = draw(st.sampled_from(CARRIERS))
    prefix = draw(st.sampled_from(["", "0", f"0 {carrier} ", "55", "+55", "+55 ", f"00{carrier} 55 "]))
    area_as = draw(st.sampled_from([area, f"({area})", f"{area} ", f"({area}) "]))
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    typed = f"{prefix}{area_as}{subscriber[:-4]}{sep}{subscriber[-4:]}"
    return typed, f"+55{area}{subscriber}"


@given(brazilian_numbers())
@settings(max_examples=400, deadline=None)
@example(("011 98765-4321", "+5511987654321"))
def test_every_brazilian_form_passes_both(number: tuple[str, str]) -> None:
    typed, e164 = number
    assert normalize_phone(typed) == e164
    assert schema_accepts(typed)


def example_numbers() -> list[str]:
    """libphonenumber's example numbers of every region, as E.164 and in its international format."""
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                numbers += [
                    phonenumbers.format_number(number, f)
                    for f in (PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL)
                ]
    return numbers


def test_every_regions_example_numbers_pass_both() -> None:
    numbers = example_numbers()
    assert len(numbers) > 800
    refused = [n for n in numbers if normalized(n) is None or not schema_accepts(n)]
    assert refused == []


# Anything at all, biased towards what looks like a number: the property holds for every string.
ALPHABET = "0123456789" * 4 + " .()-+" * 2 + "/x#*ae\n\t\uff11\u0661"


@given(st.text(ALPHABET, max_size=24))
@settings(max_examples=1000, deadline=None)
@example("Phone: 11987654321")
@example("+1 800 FLOWERS")
def test_whatever_the_operator_normalises_the_schema_accepted(raw: str) -> None:
    if normalized(raw) is not None:
        assert schema_accepts(raw)


async def test_the_api_server_creates_each_accepted_form(kube: EmulatedCluster) -> None:
    for index, phone in enumerate(sorted(ACCEPTED) + OPERATORS_TO_REFUSE):
        created = await kube.create(instance(phone, name=f"driver-{index}"))
        assert created["spec"]["phoneNumber"] == phone


async def test_the_api_server_refuses_each_refused_form_with_its_422(kube: EmulatedCluster) -> None:
    for phone in REFUSED:
        with pytest.raises(KubeApiError) as refused:
            await kube.create(instance(phone))
        assert (refused.value.status, refused.value.reason) == (422, "Invalid")
        assert refused.value.message == (
            'WhatsAppInstance.whatsapp.evolution-operator.io "maria" is invalid: spec.phoneNumber: Invalid value: '
            f"{json.dumps(phone, ensure_ascii=False)}: spec.phoneNumber in body should match '{CRD_PATTERN}'"
        )
        assert [c["field"] for c in refused.value.causes] == ["spec.phoneNumber"]
        assert kube.emulator.read("wai", "maria") is None
    kube.emulator.write_log.clear()  # refused on purpose
