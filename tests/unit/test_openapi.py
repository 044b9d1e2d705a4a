import re

from whatsapp_operator import openapi
from whatsapp_operator.webhooks import envelope


def test_the_documented_event_pattern_is_the_one_the_receiver_checks():
    assert re.compile(openapi.EVENT_PATTERN.strip("^$")).pattern == envelope._EVENT.pattern


def test_the_webhook_routes_are_documented_only_where_they_exist():
    status_api = {"/api/v1/drivers/{driverId}/whatsapp/status", "/api/v1/openapi.json"}
    assert set(openapi.document(webhooks=False)["paths"]) == status_api
    webhooks = {"/webhooks/evolution", "/webhooks/evolution/{event}"}
    assert set(openapi.document(webhooks=True)["paths"]) == status_api | webhooks
