"""The few JSON-schema checks Evolution runs on request bodies, worded the way its 400 answers word them.

Evolution validates with the npm `jsonschema` package and reports, per error, the schema's `description`
if it has one, else the error's stack text minus the first `instance.` (so top-level `required` errors
keep it: `instance requires property "text"`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whatsapp_operator.devkit.simulator.webhooks import EVENT_NAMES


@dataclass(frozen=True, slots=True)
class Rule:
    type: str | None = None
    description: str | None = None
    pattern: str | None = None
    item_enum: tuple[str, ...] | None = None
    properties: Mapping[str, Rule] = field(default_factory=dict)
    required: tuple[str, ...] = ()


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
}


def validate(value: Any, rule: Rule, path: str = "instance") -> list[str]:
    """All messages for `value`, in the order Evolution lists them (type, properties, required)."""
    if rule.type and not _TYPES[rule.type](value):
        return [_message(rule, path, f"is not of a type(s) {rule.type}")]
    messages: list[str] = []
    if rule.pattern and isinstance(value, str) and not re.search(rule.pattern, value):
        messages.append(_message(rule, path, f"does not match pattern {json.dumps(rule.pattern)}"))
    if rule.item_enum and isinstance(value, list):
        allowed = ",".join(rule.item_enum)
        messages += [
            _message(rule, f"{path}[{i}]", f"is not one of enum values: {allowed}")
            for i, item in enumerate(value)
            if item not in rule.item_enum
        ]
    if isinstance(value, Mapping):
        for name, sub in rule.properties.items():
            if name in value:
                messages += validate(value[name], sub, f"{path}.{name}")
        messages += [_message(rule, path, f'requires property "{name}"') for name in rule.required if name not in value]
    return messages


def _message(rule: Rule, path: str, text: str) -> str:
    return rule.description or f"{path} {text}".replace("instance.", "", 1)


_STRING, _BOOLEAN = Rule("string"), Rule("boolean")

CREATE = Rule(
    "object",
    properties={
        "instanceName": _STRING,
        "token": _STRING,
        "number": Rule("string", pattern=r"^\d+[\.@\w-]+"),
        "businessId": _STRING,
        "qrcode": _BOOLEAN,
        **dict.fromkeys(
            ("rejectCall", "groupsIgnore", "alwaysOnline", "readMessages", "readStatus", "syncFullHistory"), _BOOLEAN
        ),
        "msgCall": _STRING,
        "wavoipToken": _STRING,
    },
)

SEND_TEXT = Rule(
    "object",
    properties={
        "number": Rule("string", description="Invalid format"),
        "text": _STRING,
        "linkPreview": _BOOLEAN,
        "delay": Rule("integer", description="Enter a value in milliseconds"),
        "mentioned": Rule("array"),
    },
    required=("number", "text"),
)

WEBHOOK_SET = Rule(
    "object",
    properties={
        "webhook": Rule(
            "object",
            properties={
                "enabled": _BOOLEAN,
                "url": _STRING,
                "headers": Rule("object"),
                "byEvents": _BOOLEAN,
                "base64": _BOOLEAN,
                "events": Rule("array", item_enum=EVENT_NAMES),
            },
            required=("enabled", "url"),
        )
    },
    required=("webhook",),
)
