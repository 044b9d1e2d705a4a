"""The OpenAPI document of the operator's HTTP server, served at `GET /api/v1/openapi.json`: the
status API, and Evolution's webhook receiver when the server has it (with a database)."""

from __future__ import annotations

from typing import Any

from whatsapp_operator import status_api
from whatsapp_operator.core.phases import HookState, Phase
from whatsapp_operator.webhooks import receiver
from whatsapp_operator.webhooks.auth import HEADER as WEBHOOK_SECRET_HEADER
from whatsapp_operator.webhooks.envelope import MAX_INSTANCE_NAME

VERSION = "1.0.0"
REF = "#/components/"
JSON = "application/json"
EVENT_PATTERN = r"^[a-z]+(?:[._-][a-z]+)*$"  # an event name, as webhooks.envelope checks it


HEADERS: dict[str, Any] = {
    "Cache-Control": {"description": "always no-store", "schema": {"type": "string", "enum": ["no-store"]}},
    "Retry-After": {"description": "seconds to wait before asking again", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "Bearer (RFC 6750)", "schema": {"type": "string"}},
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"{REF}{kind}/{name}"}


def _json(schema: str, description: str, **headers: bool) -> dict[str, Any]:
    """A JSON answer; `headers`: its headers (`Retry_After` for Retry-After), True when always there."""
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref("schemas", schema)}}}
    if headers:
        answer["headers"] = dict(_header(name, required) for name, required in headers.items())
    return answer


def _header(name: str, required: bool) -> tuple[str, dict[str, Any]]:
    name = name.replace("_", "-")
    return name, HEADERS[name] | {"required": required}


SCHEMAS: dict[str, Any] = {
    "DriverStatus": {
        "type": "object",
        "description": "A driver's WhatsApp link, in the shape of the application's useWhatsappStatus hook.",
        "required": ["instanceName", "state", "statusReason", "phase", "updatedAt"],
        "additionalProperties": False,
        "properties": {
            "instanceName": {"type": "string", "description": "the Evolution instance"},
            "state": {
                "type": "string",
                "enum": [str(s) for s in HookState],
                "description": "the hook's state, mapped from the phase (docs/status-api.md)",
            },
            "statusReason": {
                "type": "integer",
                "nullable": True,
                "description": "Evolution's reason code, as the instance's .status has it",
            },
            "phase": {"type": "string", "enum": [str(p) for p in Phase], "description": "the WhatsAppInstance's phase"},
            "updatedAt": {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "the last phase transition (RFC 3339, UTC); null before the first",
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "instances": {
                "type": "array",
                "items": {"type": "string"},
                "description": "with 409: the WhatsAppInstances (namespace/name) that name the driver",
            },
        },
    },
    "WebhookEnvelope": {
        "type": "object",
        "description": "Evolution's webhook envelope; `connection.update` needs `data.state`. Other fields"
        " (destination, sender, apikey, ...) are taken as they come.",
        "required": ["event", "instance"],
        "properties": {
            "event": {"type": "string", "pattern": EVENT_PATTERN, "example": "connection.update"},
            "instance": {"type": "string", "minLength": 1, "maxLength": MAX_INSTANCE_NAME},
            "data": {"description": "the event's data; for connection.update an object with `state`"},
            "date_time": {"description": "when Evolution sent it (a string; part of the event's identity)"},
            "server_url": {"description": "Evolution's URL (a string)"},
        },
    },
    "WebhookTaken": {
        "type": "object",
        "description": "stored (`accepted`, `duplicate` when it was stored before), or `ignored` and not stored",
        "properties": {
            "accepted": {"type": "boolean"},
            "duplicate": {"type": "boolean"},
            "ignored": {"type": "string"},
        },
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "statusApiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the token of the Secret named by --status-api-secret (docs/status-api.md)",
    },
    "evolutionJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "HS256 signed with the EvolutionServer's webhook secret, as Evolution signs a `jwt_key` webhook",
    },
    "webhookSecret": {"type": "apiKey", "in": "header", "name": WEBHOOK_SECRET_HEADER},
}


def _status_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "getDriverWhatsappStatus",
            "summary": "A driver's WhatsApp link, from the operator's memory",
            "security": [{"statusApiToken": []}],
            "parameters": [
                {
                    "name": "driverId",
                    "in": "path",
                    "required": True,
                    "description": "the WhatsAppInstance's spec.driverId, percent-encoded",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                }
            ],
            "responses": {
                "200": _json("DriverStatus", "the driver's status", Cache_Control=True),
                "401": _json("Error", "no bearer token, or a wrong one", Cache_Control=True, WWW_Authenticate=True),
                "404": _json("Error", "no WhatsAppInstance has this driverId", Cache_Control=True),
                "409": _json("Error", "two or more WhatsAppInstances have this driverId", Cache_Control=True),
                "503": _json(
                    "Error",
                    "not configured (no Retry-After), the token cannot be read yet, or this replica is a standby",
                    Cache_Control=True,
                    Retry_After=False,
                ),
            },
        }
    }


def _openapi_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {JSON: {"schema": {"type": "object"}}},
                    "headers": dict([_header("Cache-Control", True)]),
                }
            },
        }
    }


def _webhook_operation(operation_id: str, with_event: bool) -> dict[str, Any]:
    parameters = [
        {
            "name": "event",
            "in": "path",
            "required": True,
            "description": "the event with dots as dashes (connection-update), as Evolution appends it by events",
            "schema": {"type": "string", "minLength": 1},
        }
    ]
    return {
        "post": {
            "operationId": operation_id,
            "summary": "An Evolution webhook, stored in the operator's inbox before it is acknowledged",
            "security": [{"evolutionJwt": []}, {"webhookSecret": []}],
            **({"parameters": parameters} if with_event else {}),
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("schemas", "WebhookEnvelope")}},
            },
            "responses": {
                "200": _json("WebhookTaken", "stored, or ignored (an event the operator does not act on)"),
                "400": _json("Error", "not a webhook the operator can take (Evolution does not retry it)"),
                "401": _json("Error", "no valid credentials"),
                "413": _json("Error", f"the body exceeds {receiver.MAX_BODY_BYTES} bytes"),
                "503": _json(
                    "Error", "Postgres cannot store it now, or no webhook secret is known yet", Retry_After=True
                ),
            },
        }
    }


def document(*, webhooks: bool) -> dict[str, Any]:
    """`webhooks`: the server has the webhook receiver (the operator has a database)."""
    paths = {
        status_api.STATUS_PATH: _status_path(),
        status_api.OPENAPI_PATH: _openapi_path(),
    }
    if webhooks:
        paths[receiver.PATH] = _webhook_operation("postEvolutionWebhook", with_event=False)
        paths[receiver.PATH + "/{event}"] = _webhook_operation("postEvolutionWebhookByEvent", with_event=True)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "whatsapp-operator",
            "version": VERSION,
            "description": "The operator's HTTP server: the status API (docs/status-api.md) and Evolution's "
            "webhooks (docs/webhooks.md).",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "headers": HEADERS, "securitySchemes": SECURITY_SCHEMES},
    }
