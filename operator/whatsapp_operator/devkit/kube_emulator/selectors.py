"""Label selectors, field selectors and the JSONPath subset of printer columns."""


from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from whatsapp_operator.devkit.kube_emulator.schema import api_error


def _selector_terms(selector: str) -> list[str]:
    return [term.strip() for term in re.split(r",(?![^()]*\))", selector) if term.strip()]


def label_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _selector_terms(selector):
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, operator, options = match[1], match[2], {v.strip() for v in match[3].split(",")}
            checks.append(lambda labels, k=key, o=options, neg=operator == "notin": (labels.get(k) in o) != neg)
        elif match := re.fullmatch(r"(!?)([^=!\s]+)", term):
            checks.append(lambda labels, k=match[2], neg=bool(match[1]): (k in labels) != neg)
        elif match := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", term):
            checks.append(lambda labels, k=match[1], v=match[3], neg=match[2] == "!=": (labels.get(k) == v) != neg)
        else:
            raise api_error(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_selector(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _selector_terms(selector):
        match = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", term)
        if match is None:
            raise api_error(400, "BadRequest", f"invalid field selector: {term!r}")

        def check(
            obj: Mapping[str, Any], path: str = match[1], value: str = match[3], neg: bool = match[2] == "!="
        ) -> bool:
            found: Any = obj
            for part in path.split("."):
                found = found.get(part) if isinstance(found, Mapping) else None
            return (str(found if found is not None else "") == value) != neg

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


# ---------------------------------------------------------------------------------------------
# Printer columns: the JSONPath subset CRDs use (`.a.b`, `[0]`, `[?(@.type=="Ready")]`).

_JSONPATH_STEP = re.compile(
    r'\.(?P<field>[A-Za-z0-9_-]+)|\[(?P<index>\d+)\]|\[\?\(@\.(?P<key>[A-Za-z0-9_-]+)=="(?P<value>[^"]*)"\)\]'
)


def jsonpath_steps(path: str) -> list[re.Match[str]]:
    steps = list(_JSONPATH_STEP.finditer(path))
    if "".join(step[0] for step in steps) != path:
        raise ValueError(f"unsupported JSONPath: {path!r}")
    return steps


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Every value `path` selects in `obj`, as kubectl evaluates a printer column."""
    values = [obj]
    for step in jsonpath_steps(path):
        if step["field"] is not None:
            values = [v[step["field"]] for v in values if isinstance(v, dict) and step["field"] in v]
        elif step["index"] is not None:
            index = int(step["index"])
            values = [v[index] for v in values if isinstance(v, list) and index < len(v)]
        else:
            values = [
                item
                for v in values
                if isinstance(v, list)
                for item in v
                if isinstance(item, dict) and str(item.get(step["key"])) == step["value"]
            ]
    return values


# ---------------------------------------------------------------------------------------------
# What the emulator serves and records.
