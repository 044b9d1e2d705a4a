"""Who may post webhooks: Evolution's HS256 bearer token (its `jwt_key`) or the X-Webhook-Secret header."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from tests.support.webhook_samples import SECRET, token
from whatsapp_operator.devkit.simulator.webhooks import _webhook_jwt
from whatsapp_operator.webhooks.auth import HEADER, BadCredentials, NoSecretYet, authenticate

OTHER_SECRET = "another-evolution-server-secret-of-32b"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def refusal(headers: dict[str, str], secrets: list[str]) -> str:
    with pytest.raises(BadCredentials) as caught:
        authenticate(headers, secrets)
    return str(caught.value)


# ------------------------------------------------------------------------------------------ accepted


def test_the_token_evolution_signs_with_jwt_key_is_accepted() -> None:
    authenticate(bearer(_webhook_jwt(SECRET)), [SECRET])


def test_the_bearer_scheme_is_case_insensitive() -> None:
    authenticate({"Authorization": f"bearer {token()}"}, [SECRET])
    authenticate({"Authorization": f"BEARER {token()}"}, [SECRET])


def test_a_token_signed_with_any_running_servers_secret_is_accepted() -> None:
    authenticate(bearer(token(OTHER_SECRET)), [SECRET, OTHER_SECRET])


def test_a_slightly_early_or_just_expired_token_passes_within_the_clock_skew_leeway() -> None:
    now = int(time.time())
    authenticate(bearer(token(iat=now + 30, exp=now + 630)), [SECRET])
    authenticate(bearer(token(iat=now - 630, exp=now - 30)), [SECRET])


def test_the_header_secret_is_accepted() -> None:
    authenticate({HEADER: SECRET}, [OTHER_SECRET, SECRET])


def test_empty_secrets_are_ignored_next_to_real_ones() -> None:
    authenticate({HEADER: SECRET}, ["", SECRET])


# ------------------------------------------------------------------------------------------ refused


def test_an_expired_token_is_refused() -> None:
    now = int(time.time())
    refusal(bearer(token(iat=now - 900, exp=now - 300)), [SECRET])


def test_a_token_signed_with_an_unknown_key_is_refused() -> None:
    refusal(bearer(token(OTHER_SECRET)), [SECRET])


@pytest.mark.parametrize("missing", ["iat", "exp", "app", "action"])
def test_a_token_missing_a_claim_is_refused(missing: str) -> None:
    refusal(bearer(token(**{missing: None})), [SECRET])


@pytest.mark.parametrize(("claim", "value"), [("app", "evolution-manager"), ("action", "login"), ("app", None)])
def test_a_token_for_another_app_or_action_is_refused(claim: str, value: Any) -> None:
    refusal(bearer(token(**{claim: value})), [SECRET])


def test_an_unsigned_none_algorithm_token_is_refused() -> None:
    now = int(time.time())
    claims = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    refusal(bearer(unsigned), [SECRET])
    refusal(bearer(jwt.encode(claims, None, algorithm="none")), [SECRET])


def test_a_token_signed_with_another_hmac_algorithm_is_refused() -> None:
    now = int(time.time())
    claims = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}
    refusal(bearer(jwt.encode(claims, SECRET * 2, algorithm="HS512")), [SECRET * 2])


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "é.é.é"])
def test_garbage_bearer_tokens_are_refused(garbage: str) -> None:
    refusal(bearer(garbage), [SECRET])


def test_credentials_that_are_not_utf8_are_refused_not_crashed_on() -> None:
    # aiohttp decodes header bytes that are not UTF-8 to lone surrogates.
    refusal({HEADER: "\udcff\udcfe"}, [SECRET])
    refusal(bearer("\udcff.\udcfe.x"), [SECRET])


def test_a_wrong_header_secret_is_refused() -> None:
    refusal({HEADER: SECRET[:-1]}, [SECRET])
    refusal({HEADER: ""}, [SECRET])


def test_an_invalid_bearer_token_is_not_saved_by_a_valid_header_secret_next_to_it() -> None:
    # One credential is judged: the bearer token, when there is one.
    refusal({**bearer(token(OTHER_SECRET)), HEADER: SECRET}, [SECRET])


def test_the_secret_as_a_bearer_token_is_refused() -> None:
    refusal(bearer(SECRET), [SECRET])


def test_no_credentials_are_refused() -> None:
    message = refusal({"Content-Type": "application/json"}, [SECRET])

    assert "no credentials" in message


def test_other_authorization_schemes_are_refused() -> None:
    refusal({"Authorization": f"Basic {base64.b64encode(SECRET.encode()).decode()}"}, [SECRET])


@pytest.mark.parametrize("secrets", [[], [""]])
def test_without_any_known_secret_a_request_cannot_be_judged_yet(secrets: list[str]) -> None:
    """Neither accepted nor refused: the receiver answers 503 and Evolution retries."""
    with pytest.raises(NoSecretYet):
        authenticate({HEADER: SECRET, **bearer(token(SECRET))}, secrets)


def test_refusals_never_quote_what_was_presented() -> None:
    wrong_secret = "presented-header-secret-value"
    wrong_token = token(OTHER_SECRET)
    expired = token(iat=int(time.time()) - 900, exp=int(time.time()) - 300)

    messages = [
        refusal({HEADER: wrong_secret}, [SECRET]),
        refusal(bearer(wrong_token), [SECRET]),
        refusal(bearer(expired), [SECRET]),
    ]

    for message in messages:
        assert message
        for presented in (wrong_secret, wrong_token, expired, SECRET, OTHER_SECRET):
            assert presented not in message
        for segment in (*wrong_token.split("."), *expired.split(".")):
            assert segment not in message
