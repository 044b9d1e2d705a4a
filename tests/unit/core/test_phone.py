import pytest

from whatsapp_operator.core.phone import InvalidPhoneNumber, evolution_number, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Brazilian mobiles (9th digit), as people type them.
        ("(11) 98765-4321", "+5511987654321"),
        ("11987654321", "+5511987654321"),
        ("011 98765-4321", "+5511987654321"),  # trunk prefix 0
        ("0 15 11 98765-4321", "+5511987654321"),  # trunk prefix and carrier code
        ("+55 11 98765-4321", "+5511987654321"),
        ("+5511987654321", "+5511987654321"),
        ("(+55) 11 98765-4321", "+5511987654321"),
        ("11.98765.4321", "+5511987654321"),
        ("0014 55 11 98765 4321", "+5511987654321"),  # international prefix 00 and a carrier code
        # Digits that already carry the country code (12 or 13 digits starting with 55).
        ("5511987654321", "+5511987654321"),
        ("5511 98765 4321", "+5511987654321"),
        ("551123456789", "+551123456789"),
        # 11 digits starting with 55 is a mobile in area code 55, not a country code.
        ("55987654321", "+5555987654321"),
        # Landlines (8 digits after the area code).
        ("(11) 2345-6789", "+551123456789"),
        ("+55 (21) 3333-4444", "+552133334444"),
        # International numbers keep their own country.
        ("+1 415 555 2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+351 912 345 678", "+351912345678"),
    ],
)
def test_normalises_to_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "Phone: 11987654321",
        "tel:+55-11-98765-4321",
        "\uff11\uff11\uff19\uff18\uff17\uff16\uff15\uff14\uff13\uff12\uff11",  # full-width digits
        "11987654321\n",
        "++5511987654321",
        "11/98765-4321",
    ],
)
def test_a_number_libphonenumber_would_dig_out_of_other_text_is_refused(raw: str) -> None:
    """libphonenumber reads all of these as +5511987654321; the CRD's pattern refuses them, and so does
    the operator, so that what it accepts is always what the API server accepted."""
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_phone(raw)
    assert info.value.problem == "may hold only digits, spaces, '.', '-', '(' and ')', and '+' only in front"


def test_region_decides_how_national_numbers_are_read() -> None:
    assert normalize_phone("(415) 555-2671", region="US") == "+14155552671"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "invalid phone number '': not a phone number"),
        ("motorista", "invalid phone number 'motorista': not a phone number"),
        ("123", "invalid phone number '123': too short"),
        ("+55 11 98765-43210", "invalid phone number '+55 11 98765-43210': too long"),
        ("+999 1234 5678", "invalid phone number '+999 1234 5678': unknown country code"),
        # A mobile without its 9th digit, a number without area code, a US number without '+'.
        (
            "(11) 8765-4321",
            "invalid phone number '(11) 8765-4321': not a valid +55 (BR) number: check the area code and the digits",
        ),
        (
            "3333-4444",
            "invalid phone number '3333-4444': not a valid +55 (BR) number: check the area code and the digits",
        ),
        (
            "14155552671",
            "invalid phone number '14155552671': not a valid +55 (BR) number: check the area code and the digits",
        ),
        (
            "11 98765-4321 ext. 12",
            "invalid phone number '11 98765-4321 ext. 12': has an extension, which WhatsApp numbers cannot have",
        ),
    ],
)
def test_rejects_with_a_message_naming_the_problem(raw: str, message: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_phone(raw)
    assert str(info.value) == message
    assert info.value.raw == raw


def test_invalid_phone_number_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too short"):
        normalize_phone("12")


def test_evolution_number_is_digits_with_country_code() -> None:
    assert evolution_number("+5511987654321") == "5511987654321"
    assert evolution_number(normalize_phone("(11) 98765-4321")) == "5511987654321"


@pytest.mark.parametrize("raw", ["5511987654321", "11987654321", "+55 11 98765-4321", "+0123456789", ""])
def test_evolution_number_refuses_anything_but_e164(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=r"not in E\.164 form"):
        evolution_number(raw)
